"""``session_from_run``: every captured run kind → the exact ``ChatSession``, or the exact ``Skip``.

Chat runs are checked in the nested form the SDK sends, the flat form the store returns (``flat``), and as
``langsmith.schemas.Run`` objects; all three must give the same session. "Derived" cases apply one stated edit
to a captured run (a shape no capture holds, such as a malformed message).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from langsmith.schemas import Run

from tests.convert import captured, flat, run
from tracetune.convert.sessions import session_from_run, sessions_from_runs

ARGS = '{"location": "Paris", "unit": "celsius"}'
CALL = {"id": "call_abc123", "type": "function", "function": {"name": "get_weather", "arguments": ARGS}}
SYSTEM = {"role": "system", "content": "You are a helpful weather bot."}
ASK = {"role": "user", "content": "What is the weather in Paris?"}
HELLO = {"role": "assistant", "content": "Hello from the fake model."}
CALLS = {"role": "assistant", "content": None, "tool_calls": [CALL]}
FUNCTION_CALL = {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": ARGS}}
ANSWER = {"role": "assistant", "content": "It is 18 degrees in Paris."}
TOOL_RESULT = {"role": "tool", "content": "18C and sunny", "tool_call_id": "call_abc123"}
WEATHER = {  # the function offered in trace_chain.py
    "name": "get_weather",
    "description": "Get the current weather for a location",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["location"],
    },
}
WEATHER_SHORT = {  # the function offered in capture_extra.py
    "name": "get_weather",
    "description": "Get the current weather for a location",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
}
READ_PROJECT = "f35c3097-e7b1-4ab6-a5c6-be05cf91a824"


def expect(messages: list[Any], run_id: str, trace_id: str | None = None, **more: Any) -> dict[str, Any]:
    """The session expected: ``messages``, the tools/functions/parallel_tool_calls in ``more``, and its source
    (``trace_id`` defaults to the run id: a root run; ``thread_id`` / ``project_id`` default to None)."""
    src = {"run_ids": [run_id], "trace_id": trace_id or run_id, "thread_id": None, "project_id": None}
    src.update({k: more.pop(k) for k in ("thread_id", "project_id") if k in more})
    return {"messages": messages, **more, "source": src}


TOOLS = [{"type": "function", "function": WEATHER}]
TOOLS_SHORT = [{"type": "function", "function": WEATHER_SHORT}]
USER = {"role": "user", "content": "Weather in Paris?"}
SHORT_CALL = {**CALL, "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}}
IMAGE = [
    {"type": "text", "text": "What is in this picture?"},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
]
BOT = {"role": "system", "content": "You are a weather bot."}
ZSTD_PLAIN, ZSTD_PLAIN_TRACE = "01a1fd4e-fe76-709b-a454-39018d5fd50a", "01a1fd4e-fe12-7607-a250-34b55229be01"
ZSTD_FN, ZSTD_FN_TRACE = "01a1fd4e-fe94-7527-a0a0-0f60d1aaf18d", "01a1fd4e-fe92-73a6-83e5-f8c9a0d508a9"
ZSTD_TOOLS, ZSTD_TOOLS_TRACE = "01a1fd4e-fed1-739a-b00d-891042eb2320", "01a1fd4e-fed0-7033-b6a3-5c6a977bad65"
ZSTD_STREAM, ZSTD_STREAM_TRACE = "01a1fd4e-ff0c-71f5-a5cf-9cd1d95336f5", "01a1fd4e-ff0b-7248-9a6e-7e93e197dd88"
READ_PLAIN, READ_PLAIN_TRACE = "01a1fd4f-d58d-732b-b462-ae4f4fcea072", "01a1fd4f-d530-77e3-8c51-cb0a97ac7801"
READ_TOOLS, READ_TOOLS_TRACE = "01a1fd4f-d5ea-76d6-94fc-734f222eb730", "01a1fd4f-d5e6-7703-bc05-bb8d3a966223"
AGENT_1, AGENT_TRACE = "01a1fd96-7e33-764b-a69e-c1564d445979", "01a1fd96-7e25-746b-935d-be500d22a64f"
WRAP_AGENT_2, WRAP_AGENT_TRACE = "01a1fd96-8219-7660-913c-992ba27665ac", "01a1fd96-81ec-7403-9e1e-f1fa92213ce4"
ROME = {"role": "user", "content": "What is the weather in Rome?"}
FUNCTION_RESULT = {"role": "function", "content": "18C and sunny", "name": "get_weather"}
COMPLETION = [USER, {"role": "assistant", "content": "Paris: 18C and sunny."}]

SESSIONS = [
    ("LangChain plain", ("ls_zstd", "plain"), expect([SYSTEM, ASK, HELLO], ZSTD_PLAIN, ZSTD_PLAIN_TRACE)),
    (
        "LangChain functions (function_call dropped, functions kept)",
        ("ls_zstd", "functions"),
        expect([SYSTEM, ASK, FUNCTION_CALL], ZSTD_FN, ZSTD_FN_TRACE, functions=[WEATHER]),
    ),
    (
        "LangChain tools (kwargs.tool_calls; tool_choice dropped)",
        ("ls_zstd", "tools"),
        expect([SYSTEM, ASK, CALLS], ZSTD_TOOLS, ZSTD_TOOLS_TRACE, tools=TOOLS),
    ),
    (
        "LangChain streamed (ChatGenerationChunk / AIMessageChunk)",
        ("ls_zstd", "stream"),
        expect([SYSTEM, ROME, HELLO], ZSTD_STREAM, ZSTD_STREAM_TRACE),
    ),
    (
        "LangChain streamed tool call (AIMessageChunk.tool_calls)",
        ("ls_wrap", "stream_tool_call"),
        expect(
            [
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": None, "tool_calls": [SHORT_CALL]},
            ],
            "01a1fd50-3860-7712-b76e-4745da6e69d9",
            tools=TOOLS_SHORT,
        ),
    ),
    (
        "store answer, flat (GET /runs/<id>) with project",
        ("ls_read_flat", "plain"),
        expect([SYSTEM, ASK, HELLO], READ_PLAIN, READ_PLAIN_TRACE, project_id=READ_PROJECT),
    ),
    (
        "store answer, flat, tools",
        ("ls_read_flat", "tools"),
        expect([SYSTEM, ASK, CALLS], READ_TOOLS, READ_TOOLS_TRACE, tools=TOOLS, project_id=READ_PROJECT),
    ),
    (
        "LangChain tool loop, 2nd call (AIMessage + ToolMessage in inputs)",
        ("ls_agent", "tools_2"),
        expect([USER, CALLS, TOOL_RESULT, ANSWER], "01a1fd50-0c3f-77ba-8ca2-15db4d69c8e7", tools=TOOLS),
    ),
    (
        "LangChain function loop, 2nd call (FunctionMessage in inputs)",
        ("ls_agent", "functions_2"),
        expect(
            [USER, FUNCTION_CALL, FUNCTION_RESULT, ANSWER], "01a1fd50-0c80-74d4-b675-c2430e5282ee", functions=[WEATHER]
        ),
    ),
    (
        "LangChain call in a trace with thread_id metadata",
        ("extra", "agent_1"),
        expect([BOT, USER, CALLS], AGENT_1, AGENT_TRACE, tools=TOOLS_SHORT, thread_id="thread-42"),
    ),
    (
        "LangChain image message",
        ("extra", "image"),
        expect([{"role": "user", "content": IMAGE}, HELLO], "01a1fd96-7ed1-76d8-be6d-768a3e8d0b69"),
    ),
    (
        "completion-style llm (inputs.prompts)",
        ("extra", "completion"),
        expect(COMPLETION, "01a1fd96-7e89-7264-8017-9ba1baa7acbb"),
    ),
    (
        "wrap_openai tools (raw request/response)",
        ("ls_wrap", "raw_tools"),
        expect(
            [USER, CALLS],
            "01a1fd50-206d-77f8-aefb-8b9756e4f9e9",
            tools=[
                {
                    "type": "function",
                    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
                }
            ],
        ),
    ),
    (
        "wrap_openai functions",
        ("extra", "wrap_functions"),
        expect([USER, FUNCTION_CALL], "01a1fd96-81e8-7ada-8783-81f443f615f2", functions=[WEATHER_SHORT]),
    ),
    (
        "wrap_openai tool loop 2nd call, parallel_tool_calls",
        ("extra", "wrap_agent_2"),
        expect(
            [BOT, USER, CALLS, TOOL_RESULT, ANSWER],
            WRAP_AGENT_2,
            WRAP_AGENT_TRACE,
            tools=TOOLS_SHORT,
            parallel_tool_calls=False,
        ),
    ),
    (
        "wrap_openai stream=True",
        ("extra", "wrap_stream"),
        expect([{"role": "user", "content": "hi"}, HELLO], "01a1fd96-8249-770a-add2-fd9ba8b09809"),
    ),
]


@pytest.mark.parametrize("form", ["nested", "flat", "Run"])
@pytest.mark.parametrize(("where", "expected"), [c[1:] for c in SESSIONS], ids=[c[0] for c in SESSIONS])
def test_sessions(where: tuple[str, str], expected: dict[str, Any], form: str) -> None:
    r = run(*where)
    if form == "flat":
        r = flat(r)
    elif form == "Run":
        r = Run(**flat(r))
    assert session_from_run(r) == expected


def damaged(where: tuple[str, str], path: tuple[Any, ...], value: Any) -> Any:
    """Derived case: the captured run with the field at ``path`` set to ``value`` (``KeyError``: deleted)."""

    def make() -> dict[str, Any]:
        r = target = run(*where)
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return r

    return make


NESTED_TOOL_MSG = ("inputs", "messages", 0, 2)
RAW_CALL = ("outputs", "choices", 0, "message", "tool_calls", 0)
SKIPS = [
    ("chain run", lambda: run("ls_zstd", "error_chain"), "not_llm", "run_type: 'chain' is not 'llm'"),
    ("prompt run", lambda: run("ls_zstd", "prompt_tools"), "not_llm", "run_type: 'prompt' is not 'llm'"),
    ("failed llm run", lambda: run("extra", "llm_error"), "error", "error: OpenAIConnectionError('Connection error.')"),
    (
        "pending (post before patch)",
        lambda: run("ls_zstd", "pending"),
        "no_output",
        "outputs: empty (the run is pending or recorded no answer)",
    ),
    (
        "empty generations, no error (derived)",
        lambda: {**run("extra", "llm_error"), "error": None},
        "no_output",
        "outputs.generations[0]: empty",
    ),
    (
        "invalid_tool_calls (captured), nested",
        lambda: run("ls_wrap", "invalid_tool_call"),
        "invalid_arguments",
        "outputs.generations[0][0].message: invalid_tool_calls: call 'f' has arguments that are not JSON",
    ),
    (
        "invalid_tool_calls (captured), flat",
        lambda: flat(run("ls_wrap", "invalid_tool_call")),
        "invalid_arguments",
        "outputs.generations[0].message: invalid_tool_calls: call 'f' has arguments that are not JSON",
    ),
    (
        "non-JSON arguments in a raw answer (derived)",
        damaged(("ls_wrap", "raw_tools"), (*RAW_CALL, "function", "arguments"), "{oops"),
        "invalid_arguments",
        "outputs.choices[0].message: tool_calls[0].function.arguments is not valid JSON: '{oops'",
    ),
    (
        "unknown role in a raw request (derived)",
        damaged(("ls_wrap", "raw_tools"), ("inputs", "messages", 0, "role"), "critic"),
        "unknown_role",
        "inputs.messages[0]: role 'critic' is not an OpenAI chat role",
    ),
    (
        "tool message without tool_call_id (derived)",
        damaged(("ls_agent", "tools_2"), (*NESTED_TOOL_MSG, "kwargs", "tool_call_id"), KeyError),
        "malformed_message",
        "inputs.messages[0][2]: tool message without tool_call_id",
    ),
    (
        "unknown LangChain class (derived)",
        damaged(("ls_agent", "tools_2"), (*NESTED_TOOL_MSG, "id", 3), "RemoveMessage"),
        "unknown_role",
        "inputs.messages[0][2]: LangChain class 'RemoveMessage' is not a chat message",
    ),
    (
        "message without content (derived)",
        damaged(("ls_zstd", "plain"), ("inputs", "messages", 0, 1, "kwargs", "content"), KeyError),
        "missing_content",
        "inputs.messages[0][1]: user message has no content",
    ),
    (
        "two prompts batched in one run (derived)",
        damaged(("ls_zstd", "plain"), ("inputs", "messages"), [run("ls_zstd", "plain")["inputs"]["messages"][0]] * 2),
        "batched",
        "inputs.messages: 2 prompts in one run",
    ),
    (
        "@traceable llm run with its own inputs (derived)",
        lambda: {**run("extra", "wrap_stream"), "inputs": {"question": "hi"}},
        "unsupported_inputs",
        "inputs: no 'messages' or 'prompts' (keys: ['question'])",
    ),
    (
        "outputs without an answer (derived)",
        lambda: {**run("extra", "wrap_stream"), "outputs": {"output": "hi"}},
        "malformed_output",
        "outputs: no generations, choices or message (keys: ['output'])",
    ),
    (
        "answer is not the assistant's (derived)",
        lambda: {**run("extra", "wrap_stream"), "outputs": {"message": {"role": "user", "content": "hi"}}},
        "malformed_output",
        "outputs.message: a user message, not the assistant's",
    ),
]


@pytest.mark.parametrize(("make", "reason", "detail"), [c[1:] for c in SKIPS], ids=[c[0] for c in SKIPS])
def test_skips(make: Any, reason: str, detail: str) -> None:
    r = make()
    assert session_from_run(r) == {"reason": reason, "detail": detail, "run_id": r["id"]}


@pytest.mark.parametrize(
    ("metadata", "thread_field", "expected"),
    [
        ({"thread_id": "t-1"}, None, "t-1"),
        ({"session_id": "s-1"}, None, "s-1"),
        ({"conversation_id": "c-1"}, None, "c-1"),
        ({}, "t-2", "t-2"),
        ({}, None, None),
    ],
)
def test_thread_id_sources(metadata: dict[str, str], thread_field: str | None, expected: str | None) -> None:
    r = flat(run("ls_read_flat", "plain"))
    r["extra"]["metadata"] = metadata
    r["thread_id"] = thread_field
    assert session_from_run(r)["source"]["thread_id"] == expected  # type: ignore[typeddict-item]


def test_sessions_from_runs_streams() -> None:
    def runs() -> Any:
        yield run("ls_zstd", "plain")
        yield run("ls_zstd", "pending")
        raise AssertionError("read past what was asked for")

    first_two = list(itertools.islice(sessions_from_runs(runs()), 2))
    assert [s.get("reason") for s in first_two] == [None, "no_output"]


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Any:
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


@pytest.mark.parametrize(
    "where", [("ls_zstd", "tools"), ("ls_agent", "tools_2"), ("ls_wrap", "raw_tools"), ("extra", "completion")]
)
def test_never_raises_on_any_damaged_field(where: tuple[str, str]) -> None:
    """Every field of inputs/outputs/extra replaced in turn by a value of the wrong shape: a session or a Skip."""
    original = run(*where)
    for path in list(_paths({k: original[k] for k in ("inputs", "outputs", "extra")}))[1:]:
        for junk in (None, 7, "x", [], {}, [[]]):
            result = session_from_run(damaged(where, path, junk)())
            assert "messages" in result or result["reason"], (path, junk)


def test_all_captured_llm_runs_convert_or_skip_for_a_stated_reason() -> None:
    reasons = {}
    for name in ("ls_zstd", "ls_read_flat", "ls_agent", "ls_wrap", "extra"):
        for label, r in captured(name).items():
            result = session_from_run(r)
            reasons[f"{name}:{label}"] = result.get("reason", "ok")
    assert {k: v for k, v in reasons.items() if v != "ok"} == {
        "ls_zstd:pending": "no_output",
        "ls_zstd:error_chain": "not_llm",
        "ls_zstd:prompt_tools": "not_llm",
        "ls_zstd:parser_functions": "not_llm",
        "ls_zstd:parser_tools": "not_llm",
        "ls_zstd:parser_stream": "not_llm",
        "ls_wrap:invalid_tool_call": "invalid_arguments",
        "extra:agent_chain": "not_llm",
        "extra:llm_error": "error",
        "extra:wrap_agent_chain": "not_llm",
    }
