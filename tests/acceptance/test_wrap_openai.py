"""Acceptance 5: runs traced by ``langsmith.wrappers.wrap_openai`` (no LangChain) land with the raw OpenAI
request as inputs and the raw response as outputs (apps/wrapped_openai.py: a tool call and a stream)."""

from __future__ import annotations

import json

import pytest

from .helpers import KNOWN_CLIENT_WARNINGS

pytestmark = pytest.mark.filterwarnings(*KNOWN_CLIENT_WARNINGS)


def test_wrap_openai_runs_keep_the_raw_request_and_response(traced):
    result = traced.result("wrap_openai")
    runs = {r.extra["metadata"]["call"]: r for r in traced.runs("wrap_openai")}
    assert sorted(runs) == ["stream", "tools"]
    for run in runs.values():
        assert (run.name, run.run_type, run.status, run.parent_run_id) == ("ChatOpenAI", "llm", "success", None)
        assert run.extra["metadata"]["ls_provider"] == "openai"
        assert run.extra["metadata"]["ls_model_name"] == "gpt-4o-mini"

    tools = runs["tools"]
    assert tools.inputs["messages"] == [{"role": "user", "content": "What is the weather in Paris?"}]
    assert tools.inputs["model"] == "gpt-4o-mini"
    assert [t["function"]["name"] for t in tools.inputs["tools"]] == ["get_weather"]
    assert tools.inputs["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    response = result["tools"]
    assert tools.outputs["id"] == response["id"]
    choice = tools.outputs["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call == response["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"location": "Paris"}
    assert tools.outputs["usage_metadata"]["total_tokens"] == response["usage"]["total_tokens"]
    assert tools.total_tokens == response["usage"]["total_tokens"]

    stream = runs["stream"]
    assert stream.inputs["messages"] == [{"role": "user", "content": "Say hello to Lima"}]
    assert stream.inputs["stream"] is True
    assert stream.outputs["choices"][0]["message"]["content"] == result["stream_text"] == "Echo: Say hello to Lima"
    assert stream.first_token_time is not None
