"""Token usage wherever the client put it (captured LangChain payloads, the SDK's usage_metadata, OpenAI's
usage), and the token-detail and cost fields LangSmith fills from it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures import load
from tracetune.ingest.records import run_record
from tracetune.ingest.usage import find_usage, model_name, usage_fields


def _captured_llm_run() -> dict[str, Any]:
    for request in load("ls_batch.json")["requests"]:
        for run in request["json"].get("post", []):
            if run.get("run_type") == "llm" and run.get("outputs"):
                return run  # type: ignore[no-any-return]
    raise AssertionError("the capture has an ended LLM run")


def test_a_captured_langchain_run() -> None:
    run = _captured_llm_run()
    usage = find_usage(run["outputs"], run["extra"])
    assert usage is not None
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (12, 7, 19)
    assert model_name(run["outputs"], run["extra"]) == "gpt-4o-mini"
    fields = usage_fields(run["outputs"], run["extra"])
    assert fields == dict.fromkeys(fields)  # no details, no costs reported, no price table
    priced = usage_fields(run["outputs"], run["extra"], {"gpt-4o-mini": (0.15, 0.6)})
    assert priced["prompt_cost"] == pytest.approx(12 * 0.15 / 1e6)
    assert priced["completion_cost"] == pytest.approx(7 * 0.6 / 1e6)
    assert priced["total_cost"] == pytest.approx((12 * 0.15 + 7 * 0.6) / 1e6)
    assert usage_fields(run["outputs"], run["extra"], {"other-model": (1.0, 1.0)})["total_cost"] is None
    rec = run_record(run, "post", "post[0]")
    assert (rec["prompt_tokens"], rec["completion_tokens"], rec["total_tokens"]) == (12, 7, 19)


def test_reported_costs_and_details_win_over_the_price_table() -> None:
    usage = {
        "input_tokens": 100,
        "output_tokens": 20,
        "total_tokens": 120,
        "input_token_details": {"cache_read": 60, "audio": 0},
        "output_token_details": {"reasoning": 5},
        "input_cost": 0.001,
        "output_cost": 0.002,
        "input_cost_details": {"cache_read": 0.0003},
    }
    extra = {"metadata": {"usage_metadata": usage, "ls_model_name": "m"}}
    fields = usage_fields({"answer": "x"}, extra, {"m": (1000.0, 1000.0)})
    assert fields == {
        "prompt_token_details": {"cache_read": 60, "audio": 0},
        "completion_token_details": {"reasoning": 5},
        "prompt_cost": 0.001,
        "completion_cost": 0.002,
        "total_cost": pytest.approx(0.003),
        "prompt_cost_details": {"cache_read": 0.0003},
        "completion_cost_details": None,
    }


def test_openai_usage_details_map_to_langsmith_names() -> None:
    outputs = {
        "usage": {
            "prompt_tokens": 50,
            "completion_tokens": 10,
            "total_tokens": 60,
            "prompt_tokens_details": {"cached_tokens": 32},
            "completion_tokens_details": {"reasoning_tokens": 4},
        },
        "model": "gpt-4o-mini",
    }
    fields = usage_fields(outputs, {"invocation_params": {"model": "gpt-4o-mini"}}, {"gpt-4o-mini": (1.0, 2.0)})
    assert fields["prompt_token_details"] == {"cache_read": 32}
    assert fields["completion_token_details"] == {"reasoning": 4}
    assert fields["total_cost"] == pytest.approx((50 * 1.0 + 10 * 2.0) / 1e6)


@pytest.mark.parametrize("outputs", [None, {}, {"usage": "lots"}, {"generations": [[]]}, {"generations": "x"}])
def test_no_usage_is_no_fields(outputs: Any) -> None:
    assert find_usage(outputs, None) is None
    assert usage_fields(outputs, {"metadata": "x"}, {"m": (1.0, 1.0)})["total_cost"] is None
