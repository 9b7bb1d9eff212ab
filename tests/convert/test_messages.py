"""``message_from_any``: every recorded message form → the exact OpenAI chat message, or the exact refusal.

Messages come from the captured runs (``fixtures/``). Forms no capture holds are made by the real LangChain
serializer (``dumpd``, ``messages_to_dict``, ``model_dump``: what the tracer and apps write), or, where said,
derived from a captured message by one edit.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.load import dumpd
from langchain_core.messages import AIMessage, ChatMessage, HumanMessage, RemoveMessage, messages_to_dict

from tests.convert import run
from tracetune.convert.messages import ConversionError, message_from_any

ARGS = '{"location": "Paris", "unit": "celsius"}'
CALL = {"id": "call_abc123", "type": "function", "function": {"name": "get_weather", "arguments": ARGS}}


def lc_in(name: str, label: str, i: int) -> Any:
    """The i-th input message of a captured LangChain run (nested form)."""
    return run(name, label)["inputs"]["messages"][0][i]


def lc_out(name: str, label: str) -> Any:
    return run(name, label)["outputs"]["generations"][0][0]["message"]


def parser_input(label: str) -> Any:
    return run("ls_zstd", label)["inputs"]["input"]


def with_openai_calls(msg: dict[str, Any], calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Derived: a captured plain AI dict that also carries ``additional_kwargs.tool_calls`` (older langchain-openai)."""
    return {**msg, "additional_kwargs": {**msg["additional_kwargs"], "tool_calls": calls}}


def raw_answer(name: str, label: str) -> Any:
    return run(name, label)["outputs"]["choices"][0]["message"]


def with_arguments(msg: dict[str, Any], arguments: str) -> dict[str, Any]:
    """Derived: a captured OpenAI answer whose tool call arguments are replaced."""
    call = msg["tool_calls"][0]
    return {**msg, "tool_calls": [{**call, "function": {**call["function"], "arguments": arguments}}]}


CASES = [
    # LangChain lc-serialized (captured)
    (
        "lc SystemMessage",
        lambda: lc_in("ls_zstd", "plain", 0),
        {"role": "system", "content": "You are a helpful weather bot."},
    ),
    (
        "lc HumanMessage",
        lambda: lc_in("ls_zstd", "plain", 1),
        {"role": "user", "content": "What is the weather in Paris?"},
    ),
    (
        "lc AIMessage text",
        lambda: lc_out("ls_zstd", "plain"),
        {"role": "assistant", "content": "Hello from the fake model."},
    ),
    (
        "lc AIMessage kwargs.tool_calls",
        lambda: lc_out("ls_zstd", "tools"),
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
    ),
    (
        "lc AIMessage function_call",
        lambda: lc_out("ls_zstd", "functions"),
        {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": ARGS}},
    ),
    (
        "lc AIMessageChunk text",
        lambda: lc_out("ls_zstd", "stream"),
        {"role": "assistant", "content": "Hello from the fake model."},
    ),
    (
        "lc AIMessageChunk tool_calls + tool_call_chunks",
        lambda: lc_out("ls_wrap", "stream_tool_call"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc123",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                }
            ],
        },
    ),
    (
        "lc AIMessage in inputs",
        lambda: lc_in("ls_agent", "tools_2", 1),
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
    ),
    (
        "lc ToolMessage",
        lambda: lc_in("ls_agent", "tools_2", 2),
        {"role": "tool", "content": "18C and sunny", "tool_call_id": "call_abc123"},
    ),
    (
        "lc FunctionMessage",
        lambda: lc_in("ls_agent", "functions_2", 2),
        {"role": "function", "content": "18C and sunny", "name": "get_weather"},
    ),
    (
        "lc HumanMessage text + image_url parts",
        lambda: lc_in("extra", "image", 0),
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        },
    ),
    # LangChain lc-serialized, made by dumpd (no capture holds these classes / fields)
    (
        "lc ChatMessage role",
        lambda: dumpd(ChatMessage(role="developer", content="Be brief.")),
        {"role": "developer", "content": "Be brief."},
    ),
    (
        "lc HumanMessage name",
        lambda: dumpd(HumanMessage("hi", name="alice")),
        {"role": "user", "content": "hi", "name": "alice"},
    ),
    (
        "lc AIMessage Anthropic text + tool_use parts",
        lambda: dumpd(
            AIMessage(
                content=[
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}},
                ],
                tool_calls=[{"name": "get_weather", "args": {"location": "Paris"}, "id": "toolu_1"}],
            )
        ),
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                }
            ],
        },
    ),
    (
        "lc image block base64",
        lambda: dumpd(HumanMessage(content=[{"type": "image", "base64": "iVBORw0KGgo=", "mime_type": "image/png"}])),
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}],
        },
    ),
    (
        "lc AIMessage non-ASCII args",
        lambda: dumpd(AIMessage(content="", tool_calls=[{"name": "f", "args": {"city": "Zürich"}, "id": "c1"}])),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"city": "Zürich"}'}}
            ],
        },
    ),
    # LangChain plain dicts (captured: a prompt's output, parsers' inputs)
    (
        "plain system",
        lambda: run("ls_zstd", "prompt_tools")["outputs"]["output"]["messages"][0],
        {"role": "system", "content": "You are a helpful weather bot."},
    ),
    (
        "plain human",
        lambda: run("ls_zstd", "prompt_tools")["outputs"]["output"]["messages"][1],
        {"role": "user", "content": "What is the weather in Paris?"},
    ),
    (
        "plain ai tool_calls",
        lambda: parser_input("parser_tools"),
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
    ),
    (
        "plain ai function_call",
        lambda: parser_input("parser_functions"),
        {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": ARGS}},
    ),
    (
        "plain AIMessageChunk",
        lambda: parser_input("parser_stream"),
        {"role": "assistant", "content": "Hello from the fake model."},
    ),
    (
        "plain ai: same call in tool_calls and additional_kwargs → once, OpenAI text kept",
        lambda: with_openai_calls(
            parser_input("parser_tools"),
            [{**CALL, "function": {"name": "get_weather", "arguments": '{"location":"Paris","unit":"celsius"}'}}],
        ),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {**CALL, "function": {"name": "get_weather", "arguments": '{"location":"Paris","unit":"celsius"}'}}
            ],
        },
    ),
    (
        "plain ai: different calls in tool_calls and additional_kwargs → both",
        lambda: with_openai_calls(parser_input("parser_tools"), [{**CALL, "id": "call_other"}]),
        {"role": "assistant", "content": None, "tool_calls": [{**CALL, "id": "call_other"}, CALL]},
    ),
    ("messages_to_dict form", lambda: messages_to_dict([HumanMessage("hi")])[0], {"role": "user", "content": "hi"}),
    ("BaseMessage object", lambda: HumanMessage("hi"), {"role": "user", "content": "hi"}),
    # OpenAI role dicts (captured wrap_openai requests and responses)
    (
        "openai user",
        lambda: run("ls_wrap", "raw_tools")["inputs"]["messages"][0],
        {"role": "user", "content": "Weather in Paris?"},
    ),
    (
        "openai system",
        lambda: run("extra", "wrap_agent_1")["inputs"]["messages"][0],
        {"role": "system", "content": "You are a weather bot."},
    ),
    (
        "openai answer with tool_calls, nulls",
        lambda: raw_answer("ls_wrap", "raw_tools"),
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
    ),
    (
        "openai answer with function_call",
        lambda: raw_answer("extra", "wrap_functions"),
        {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": ARGS}},
    ),
    (
        "openai assistant without content key",
        lambda: run("extra", "wrap_agent_2")["inputs"]["messages"][2],
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
    ),
    (
        "openai tool",
        lambda: run("extra", "wrap_agent_2")["inputs"]["messages"][3],
        {"role": "tool", "content": "18C and sunny", "tool_call_id": "call_abc123"},
    ),
    (
        "openai streamed answer",
        lambda: raw_answer("extra", "wrap_stream"),
        {"role": "assistant", "content": "Hello from the fake model."},
    ),
]


@pytest.mark.parametrize(("make", "expected"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_message_forms(make: Any, expected: dict[str, Any]) -> None:
    assert message_from_any(make()) == expected


REFUSALS = [
    ("unknown role", lambda: {"role": "critic", "content": "x"}, "unknown_role", "'critic'"),
    ("unknown LangChain type", lambda: {"type": "remove", "content": ""}, "unknown_role", "'remove'"),
    ("lc RemoveMessage", lambda: dumpd(RemoveMessage(id="m1")), "unknown_role", "RemoveMessage"),
    (
        "lc without kwargs",
        lambda: {"lc": 1, "type": "secret", "id": ["OPENAI_API_KEY"]},
        "malformed_message",
        "constructor",
    ),
    ("not an object", lambda: "hi", "malformed_message", "str"),
    ("no role/type/lc", lambda: {"content": "hi"}, "malformed_message", "role"),
    ("user without content", lambda: {"role": "user"}, "missing_content", "content"),
    ("assistant with nothing", lambda: {"role": "assistant", "content": None}, "missing_content", "content"),
    ("tool without tool_call_id", lambda: {"role": "tool", "content": "18C"}, "malformed_message", "tool_call_id"),
    ("function without name", lambda: {"role": "function", "content": "18C"}, "malformed_message", "name"),
    (
        "captured invalid_tool_calls",
        lambda: lc_out("ls_wrap", "invalid_tool_call"),
        "invalid_arguments",
        "invalid_tool_calls",
    ),
    (
        "openai arguments not JSON (derived)",
        lambda: with_arguments(raw_answer("ls_wrap", "raw_tools"), "{location: Paris"),
        "invalid_arguments",
        "tool_calls[0].function.arguments",
    ),
    (
        "openai arguments JSON but not an object (derived)",
        lambda: with_arguments(raw_answer("ls_wrap", "raw_tools"), "[1, 2]"),
        "invalid_arguments",
        "tool_calls[0].function.arguments",
    ),
    (
        "function_call arguments not JSON (derived)",
        lambda: {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "nope"}},
        "invalid_arguments",
        "function_call.arguments",
    ),
    (
        "tool call without id",
        lambda: {"role": "assistant", "tool_calls": [{"type": "function", "function": CALL["function"]}]},
        "malformed_message",
        "tool_calls[0]",
    ),
    (
        "audio part",
        lambda: dumpd(HumanMessage(content=[{"type": "audio", "base64": "AAA", "mime_type": "audio/wav"}])),
        "unsupported_content",
        "'audio'",
    ),
    ("content neither text nor parts", lambda: {"role": "user", "content": 42}, "malformed_message", "int"),
]


@pytest.mark.parametrize(("make", "reason", "names"), [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS])
def test_refusals(make: Any, reason: str, names: str) -> None:
    with pytest.raises(ConversionError) as info:
        message_from_any(make())
    assert info.value.reason == reason
    assert names in info.value.detail


def test_conversion_error_is_a_value_error_with_reason_and_detail() -> None:
    err = ConversionError("unknown_role", "role 'x'")
    assert isinstance(err, ValueError)
    assert (err.reason, err.detail, str(err)) == ("unknown_role", "role 'x'", "unknown_role: role 'x'")
