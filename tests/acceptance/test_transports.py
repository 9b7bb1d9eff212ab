"""Acceptance 1: LangChain chains traced by the unmodified SDK land completely, in every transport mode.

apps/traced_chains.py runs four chains (``bind(functions=…)`` + PydanticOutputFunctionsParser + lambda;
``bind_tools`` + PydanticToolsParser + lambda; one whose lambda raises; one streamed) in a subprocess whose
environment alone points LangSmith at the live server. Modes (conftest.MODES): SDK default (multipart+zstd),
plain multipart, ``POST /runs/batch``, ``POST /runs``+``PATCH``, and the legacy LANGCHAIN_* variable names.
"""

from __future__ import annotations

import json

import pytest

from .conftest import MODES
from .helpers import (
    CITIES,
    EXPECTED_TREES,
    KNOWN_CLIENT_WARNINGS,
    SYSTEM_PROMPT,
    lc_kwargs,
    named,
    only_generation_message,
    stamp,
    trace_of,
)

pytestmark = pytest.mark.filterwarnings(*KNOWN_CLIENT_WARNINGS)


@pytest.fixture(params=list(MODES))
def mode(request) -> str:
    return request.param


def _ingest_requests(result: dict) -> list[tuple[str, str, int, str | None]]:
    return [
        (r["method"], r["path"].removeprefix("/api/v1"), r["status"], r["content_encoding"])
        for r in result["requests"]
        if not r["path"].endswith("/info")
    ]


def test_the_sdk_used_the_transport_of_the_mode(traced, mode):
    """The requests the SDK made (seen by a response hook on its session) are those of the mode, all 2xx."""
    result = traced.result(mode)
    requests = _ingest_requests(result)
    assert requests, "the SDK sent nothing"
    assert all(200 <= status < 300 for _, _, status, _ in requests), requests
    kinds = {(method, "/runs/{id}" if path.startswith("/runs/0") else path, enc) for method, path, _, enc in requests}
    if mode in ("sdk_default", "langchain_env_names"):
        # zstd once the SDK's background thread has read /info; ops queued before that moment go as plain
        # multipart (a race inside the SDK, wire-protocols §1.2). Feedback with trace_id travels inside the
        # multipart body (server version >= 0.8.10), so there is no POST /feedback.
        assert ("POST", "/runs/multipart", "zstd") in kinds
        assert kinds <= {("POST", "/runs/multipart", "zstd"), ("POST", "/runs/multipart", None)}
    elif mode == "plain_multipart":
        assert kinds == {("POST", "/runs/multipart", None)}
    elif mode == "batch":
        assert kinds == {("POST", "/runs/batch", None), ("POST", "/feedback", None)}
        assert sum(1 for r in requests if r[1] == "/feedback") == 2
    else:
        assert kinds == {("POST", "/runs", None), ("PATCH", "/runs/{id}", None), ("POST", "/feedback", None)}
        runs = traced.runs(mode)
        assert sum(1 for r in requests if r[:2] == ("POST", "/runs")) == len(runs)
        patched = {path.removeprefix("/runs/") for method, path, _, _ in requests if method == "PATCH"}
        assert patched == {str(r.id) for r in runs}


def test_every_run_of_every_trace_is_recorded_with_its_links(traced, mode, client):
    """Exact run names/types per trace; parent links, trace ids, dotted orders and the project are right."""
    result = traced.result(mode)
    runs = traced.runs(mode)
    project = client.read_project(project_name=traced.project(mode))
    assert len(runs) == sum(len(tree) for tree in EXPECTED_TREES.values())
    assert {str(r.session_id) for r in runs} == {str(project.id)}
    for chain, expected in EXPECTED_TREES.items():
        root_id = result["roots"][chain]
        trace = trace_of(runs, root_id)
        assert sorted((r.name, r.run_type) for r in trace) == sorted(expected), chain
        by_id = {str(r.id): r for r in trace}
        root = by_id[root_id]
        assert root.parent_run_id is None and root.parent_run_ids == []
        assert root.dotted_order == f"{stamp(root)}{root.id}"
        for run in trace:
            assert str(run.trace_id) == root_id
            assert run.end_time is not None and run.end_time >= run.start_time
            if run is root:
                continue
            parent = by_id[str(run.parent_run_id)]  # the parent is in the same trace
            assert run.dotted_order.startswith(parent.dotted_order + ".")
            assert run.dotted_order == f"{parent.dotted_order}.{stamp(run)}{run.id}"
            ancestors = [str(p) for p in run.parent_run_ids]
            assert ancestors[-1] == str(parent.id) and ancestors[0] == root_id
            assert [str(p) for p in parent.parent_run_ids] + [str(parent.id)] == ancestors
        depth = {r.name: len(r.parent_run_ids) for r in trace}
        assert depth[root.name] == 0 and max(depth.values()) == (2 if chain == "tools" else 1)
        assert set(root.tags) >= {"acceptance"}


def test_inputs_outputs_and_invocation_params_are_complete(traced, mode):
    """Chain, prompt, LLM (function_call / tool_calls in outputs, functions / tools in invocation_params),
    parser and lambda runs carry what the SDK sent, and the root output is what the app got."""
    result = traced.result(mode)
    runs = traced.runs(mode)

    functions = trace_of(runs, result["roots"]["functions"])
    root = named(functions, "functions-chain")
    assert root.inputs == {"city": "Paris"}
    assert root.outputs == result["results"]["functions"] == {"report": "Paris in celsius"}
    assert root.extra["metadata"]["variant"] == "functions" and root.extra["metadata"]["user"] == "u1"
    assert set(root.tags) == {"acceptance", "chain:functions"}
    prompt = named(functions, "ChatPromptTemplate")
    assert [(m["type"], m["content"]) for m in prompt.outputs["output"]["messages"]] == [
        ("system", SYSTEM_PROMPT),
        ("human", "What is the weather in Paris?"),
    ]
    llm = named(functions, "ChatOpenAI")
    assert [(m["id"][-1], lc_kwargs(m)["content"]) for m in llm.inputs["messages"]] == [
        ("SystemMessage", SYSTEM_PROMPT),
        ("HumanMessage", "What is the weather in Paris?"),
    ]
    generation, message = only_generation_message(llm)
    assert generation["generation_info"]["finish_reason"] == "function_call"
    call = message["additional_kwargs"]["function_call"]
    assert call["name"] == "GetWeather"
    assert json.loads(call["arguments"]) == {"location": "Paris", "unit": "celsius"}
    params = llm.extra["invocation_params"]
    assert [f["name"] for f in params["functions"]] == ["GetWeather"]
    assert set(params["functions"][0]["parameters"]["properties"]) == {"location", "unit"}
    assert params["function_call"] == {"name": "GetWeather"}
    assert params["model"] == "gpt-4o-mini" and params["_type"] == "openai-chat"
    assert llm.extra["metadata"]["ls_provider"] == "openai"
    assert llm.serialized is None  # not in list_runs' default select; GET /runs/{id} has it
    assert (llm.prompt_tokens, llm.completion_tokens, llm.total_tokens) == (12, 7, 19)
    assert "seq:step:2" in llm.tags and "chain:functions" in llm.tags  # inherited tags
    parser = named(functions, "PydanticOutputFunctionsParser")
    assert parser.inputs["input"]["additional_kwargs"]["function_call"]["name"] == "GetWeather"
    assert parser.outputs == {"output": {"location": "Paris", "unit": "celsius"}}
    lam = named(functions, "RunnableLambda")
    assert lam.inputs == {"input": {"location": "Paris", "unit": "celsius"}}
    assert lam.outputs == {"report": "Paris in celsius"}

    tools = trace_of(runs, result["roots"]["tools"])
    assert named(tools, "tools-chain").outputs == result["results"]["tools"] == {"report": "Rome in celsius"}
    nested = named(tools, "format_report")
    assert nested.parent_run_id == named(tools, "report").id
    assert nested.inputs == {"location": "Rome", "unit": "celsius"}
    assert nested.outputs == {"output": "Rome in celsius"}
    llm = named(tools, "ChatOpenAI")
    generation, message = only_generation_message(llm)
    assert generation["generation_info"]["finish_reason"] == "tool_calls"
    assert [(c["name"], c["args"], c["type"]) for c in message["tool_calls"]] == [
        ("GetWeather", {"location": "Rome", "unit": "celsius"}, "tool_call")
    ]
    assert message["tool_calls"][0]["id"].startswith("call_standin")
    params = llm.extra["invocation_params"]
    assert [t["function"]["name"] for t in params["tools"]] == ["GetWeather"]
    assert params["tool_choice"] == {"type": "function", "function": {"name": "GetWeather"}}
    assert named(tools, "PydanticToolsParser").outputs == {"output": {"location": "Rome", "unit": "celsius"}}


def test_the_failing_run_and_its_ancestors_carry_the_error(traced, mode):
    result = traced.result(mode)
    trace = trace_of(traced.runs(mode), result["roots"]["error"])
    assert result["results"]["error"] == "ValueError('weather station offline')"
    failed = {r.name for r in trace if r.error is not None}
    assert failed == {"error-chain", "explode"}
    for run in trace:
        if run.name in failed:
            assert run.status == "error"
            assert run.error.startswith("ValueError('weather station offline')")
            assert "Traceback" in run.error
            assert not run.outputs
        else:
            assert run.status == "success" and run.outputs, run.name
    assert named(trace, "explode").inputs == {"input": "Echo: What is the weather in Oslo?"}
    assert named(trace, "error-chain").inputs == {"city": "Oslo"}


def test_a_streamed_llm_run_is_recorded(traced, mode):
    result = traced.result(mode)
    trace = trace_of(traced.runs(mode), result["roots"]["stream"])
    assert named(trace, "stream-chain").outputs == {"output": result["results"]["stream"]}
    assert result["results"]["stream"] == "Echo: What is the weather in Lima?"
    llm = named(trace, "ChatOpenAI")
    generation, message = only_generation_message(llm)
    assert generation["type"] == "ChatGenerationChunk"
    assert generation["message"]["id"][-1] == "AIMessageChunk"
    assert message["content"] == "Echo: What is the weather in Lima?"
    assert [e["name"] for e in llm.events] == ["start", "new_token", "end"]
    assert llm.first_token_time is not None and llm.start_time <= llm.first_token_time <= llm.end_time


def test_feedback_given_by_the_app_is_kept(traced, mode, client):
    """``create_feedback(root, trace_id=…)`` inside the traced app (multipart part or POST /feedback)."""
    result = traced.result(mode)
    traced.runs(mode)  # the app has flushed
    for chain, score in (("functions", 1.0), ("tools", 0.0)):
        root_id = result["roots"][chain]
        items = list(client.list_feedback(run_ids=[root_id]))
        assert [(str(f.id), f.key, f.score, str(f.run_id)) for f in items] == [
            (result["feedback"][chain], "user_score", score, root_id)
        ]
        assert str(items[0].trace_id) == root_id


def test_read_run_loads_the_child_tree(traced, mode, client):
    result = traced.result(mode)
    traced.runs(mode)
    root = client.read_run(result["roots"]["functions"], load_child_runs=True)
    assert root.name == "functions-chain" and root.outputs == {"report": "Paris in celsius"}
    assert [c.name for c in root.child_runs] == [
        "ChatPromptTemplate",
        "ChatOpenAI",
        "PydanticOutputFunctionsParser",
        "RunnableLambda",
    ]
    assert all(c.parent_run_id == root.id and not c.child_runs for c in root.child_runs)
    llm = root.child_runs[1]
    _, message = only_generation_message(llm)
    assert message["additional_kwargs"]["function_call"]["name"] == "GetWeather"
    assert root.feedback_stats == {"user_score": {"n": 1, "avg": 1.0}}
    # GET /runs/{id} returns every field, the serialized model included.
    alone = client.read_run(llm.id)
    assert alone.serialized["id"][-1] == "ChatOpenAI"
    assert alone.serialized["kwargs"]["model_name"] == "gpt-4o-mini"
    assert alone.outputs == llm.outputs and alone.inputs == llm.inputs
    assert CITIES["functions"] in json.dumps(llm.inputs)

    tools = client.read_run(result["roots"]["tools"], load_child_runs=True)
    assert [c.name for c in tools.child_runs] == ["ChatPromptTemplate", "ChatOpenAI", "PydanticToolsParser", "report"]
    assert [(g.name, g.parent_run_id) for g in tools.child_runs[3].child_runs] == [
        ("format_report", tools.child_runs[3].id)
    ]
