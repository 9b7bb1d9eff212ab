"""record_from_session / dumps_record: each format's exact shape, from sessions as session_from_run builds them."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from tracetune.convert.records import FORMATS, SHAREGPT_OBSERVATION_JOINER, dumps_record, record_from_session
from tracetune.errors import InvalidInput

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a location",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}
WEATHER_FUNCTION = WEATHER_TOOL["function"]
ARGS = '{"location": "Paris", "unit": "celsius"}'
SOURCE = {"run_ids": ["r1"], "trace_id": "t1", "thread_id": "thread-42", "project_id": None}

# The two-turn tool loop of tests/convert/fixtures/extra.json "agent_2", as session_from_run returns it.
TOOLS_SESSION: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_abc123", "type": "function", "function": {"name": "get_weather", "arguments": ARGS}}
            ],
        },
        {"role": "tool", "content": "18C and sunny", "tool_call_id": "call_abc123"},
        {"role": "assistant", "content": "It is 18 degrees in Paris."},
    ],
    "source": SOURCE,
    "tools": [WEATHER_TOOL],
}
# The legacy functions loop of tests/convert/fixtures/ls_agent.json "functions_2".
FUNCTIONS_SESSION: dict[str, Any] = {
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": ARGS}},
        {"role": "function", "content": "18C and sunny", "name": "get_weather"},
        {"role": "assistant", "content": "It is 18 degrees in Paris."},
    ],
    "source": SOURCE,
    "functions": [WEATHER_FUNCTION],
}
PARALLEL_SESSION: dict[str, Any] = {
    "messages": [
        {"role": "user", "content": "Paris and Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                },
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "content": "18C", "tool_call_id": "c1"},
        {"role": "tool", "content": "25C", "tool_call_id": "c2"},
        {"role": "assistant", "content": "Paris 18C, Rome 25C."},
    ],
    "source": SOURCE,
    "tools": [WEATHER_TOOL],
    "parallel_tool_calls": True,
}
PLAIN_SESSION: dict[str, Any] = {
    "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!", "weight": 1}],
    "source": SOURCE,
}


@pytest.mark.parametrize(
    ("session", "expected"),
    [
        (PLAIN_SESSION, {"messages": PLAIN_SESSION["messages"]}),
        (TOOLS_SESSION, {"messages": TOOLS_SESSION["messages"], "tools": [WEATHER_TOOL]}),
        (FUNCTIONS_SESSION, {"messages": FUNCTIONS_SESSION["messages"], "functions": [WEATHER_FUNCTION]}),
        (
            PARALLEL_SESSION,
            {"messages": PARALLEL_SESSION["messages"], "tools": [WEATHER_TOOL], "parallel_tool_calls": True},
        ),
        # parallel_tool_calls means nothing without tools; tools win over functions
        ({**PLAIN_SESSION, "parallel_tool_calls": False}, {"messages": PLAIN_SESSION["messages"]}),
        (
            {**TOOLS_SESSION, "functions": [WEATHER_FUNCTION], "parallel_tool_calls": False},
            {"messages": TOOLS_SESSION["messages"], "tools": [WEATHER_TOOL], "parallel_tool_calls": False},
        ),
        ({**TOOLS_SESSION, "tools": []}, {"messages": TOOLS_SESSION["messages"]}),
    ],
    ids=["plain", "tools", "functions", "parallel", "parallel-without-tools", "tools-win", "empty-tools"],
)
def test_openai_record(session: dict[str, Any], expected: dict[str, Any]) -> None:
    assert record_from_session(session, "openai") == expected


def test_openai_is_the_default_and_no_format_carries_source() -> None:
    assert record_from_session(TOOLS_SESSION) == record_from_session(TOOLS_SESSION, "openai")
    for fmt in FORMATS:
        assert "source" not in record_from_session(TOOLS_SESSION, fmt)


def test_hf_tool_loop() -> None:
    assert record_from_session(TOOLS_SESSION, "hf") == {
        "messages": [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"location": "Paris", "unit": "celsius"}},
                        "id": "call_abc123",
                    }
                ],
            },
            {"role": "tool", "content": "18C and sunny", "tool_call_id": "call_abc123", "name": "get_weather"},
            {"role": "assistant", "content": "It is 18 degrees in Paris."},
        ],
        "tools": [WEATHER_TOOL],
    }


def test_hf_legacy_functions_become_tools() -> None:
    assert record_from_session(FUNCTIONS_SESSION, "hf") == {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"location": "Paris", "unit": "celsius"}},
                    }
                ],
            },
            {"role": "tool", "content": "18C and sunny", "name": "get_weather"},
            {"role": "assistant", "content": "It is 18 degrees in Paris."},
        ],
        "tools": [{"type": "function", "function": WEATHER_FUNCTION}],
    }


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"role": "developer", "content": "Be brief."}, {"role": "system", "content": "Be brief."}),
        ({"role": "user", "content": "Hi", "name": "ann"}, {"role": "user", "content": "Hi", "name": "ann"}),
        (
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "user", "content": "a\nb"},
        ),
        (
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "text", "text": "What is this?"}, {"type": "image", "url": "https://x/cat.png"}],
            },
        ),
        ({"role": "assistant", "content": "ok", "weight": 0}, {"role": "assistant", "content": "ok"}),
        (
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{broken"}}],
            },
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{broken"}}],
            },
        ),
        (
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}],
            },
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}],
            },
        ),
    ],
    ids=["developer", "name", "text-parts", "image-parts", "weight-dropped", "bad-args-kept", "non-object-args"],
)
def test_hf_message_rules(message: dict[str, Any], expected: dict[str, Any]) -> None:
    session = {"messages": [message], "source": SOURCE}
    assert record_from_session(session, "hf")["messages"] == [expected]


def test_sharegpt_tool_loop() -> None:
    assert record_from_session(TOOLS_SESSION, "sharegpt") == {
        "conversations": [
            {"from": "system", "value": "You are a weather bot."},
            {"from": "human", "value": "Weather in Paris?"},
            {
                "from": "function_call",
                "value": '{"name":"get_weather","arguments":{"location":"Paris","unit":"celsius"}}',
            },
            {"from": "observation", "value": "18C and sunny"},
            {"from": "gpt", "value": "It is 18 degrees in Paris."},
        ],
        "tools": json.dumps([WEATHER_FUNCTION], separators=(",", ":")),
    }


def test_sharegpt_parallel_calls_and_functions() -> None:
    parallel = record_from_session(PARALLEL_SESSION, "sharegpt")
    assert [turn["from"] for turn in parallel["conversations"]] == ["human", "function_call", "observation", "gpt"]
    assert json.loads(parallel["conversations"][1]["value"]) == [
        {"name": "get_weather", "arguments": {"location": "Paris"}},
        {"name": "get_weather", "arguments": {"location": "Rome"}},
    ]
    assert parallel["conversations"][2]["value"] == "18C" + SHAREGPT_OBSERVATION_JOINER + "25C"
    functions = record_from_session(FUNCTIONS_SESSION, "sharegpt")
    assert [turn["from"] for turn in functions["conversations"]] == ["human", "function_call", "observation", "gpt"]
    assert json.loads(functions["tools"]) == [WEATHER_FUNCTION]
    assert "tools" not in record_from_session(PLAIN_SESSION, "sharegpt")


def test_sharegpt_joins_leading_system_messages() -> None:
    session = {
        "messages": [
            {"role": "system", "content": "A"},
            {"role": "developer", "content": [{"type": "text", "text": "B"}]},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
        ],
        "source": SOURCE,
    }
    assert record_from_session(session, "sharegpt")["conversations"] == [
        {"from": "system", "value": "A\n\nB"},
        {"from": "human", "value": "Hi"},
        {"from": "gpt", "value": "Hello"},
    ]


@pytest.mark.parametrize(
    ("messages", "field"),
    [
        (
            [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}],
            "messages",
        ),
        ([{"role": "user", "content": "a"}], "messages"),
        ([{"role": "assistant", "content": "a"}], "messages"),
        (
            [
                {"role": "user", "content": "a"},
                {"role": "system", "content": "late"},
                {"role": "assistant", "content": "c"},
            ],
            "messages[1].role",
        ),
        (
            [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]},
                {"role": "assistant", "content": "c"},
            ],
            "messages[0].content[0]",
        ),
    ],
    ids=["two-users", "ends-with-user", "starts-with-assistant", "late-system", "image"],
)
def test_sharegpt_refuses_what_llamafactory_would_drop(messages: list[dict[str, Any]], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        record_from_session({"messages": messages, "source": SOURCE}, "sharegpt")
    assert err.value.field == field
    assert err.value.code == "sharegpt_unrepresentable"


@pytest.mark.parametrize("fmt", ["jsonl", "OpenAI", "", "alpaca"])
def test_unknown_format(fmt: str) -> None:
    with pytest.raises(InvalidInput) as err:
        record_from_session(PLAIN_SESSION, fmt)
    assert err.value.field == "format"
    assert "openai" in err.value.message


def test_session_without_messages_list() -> None:
    with pytest.raises(InvalidInput) as err:
        record_from_session({"source": SOURCE}, "openai")
    assert err.value.field == "messages"


@pytest.mark.parametrize("fmt", FORMATS)
def test_inputs_are_not_modified(fmt: str) -> None:
    for session in (TOOLS_SESSION, FUNCTIONS_SESSION, PARALLEL_SESSION, PLAIN_SESSION):
        before = copy.deepcopy(session)
        record_from_session(session, fmt)
        assert session == before


def test_dumps_record_is_one_utf8_line() -> None:
    record = {
        "messages": [{"role": "user", "content": "line one\nline two — café"}, {"role": "assistant", "content": "ok"}]
    }
    line = dumps_record(record)
    assert isinstance(line, bytes)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert "café".encode() in line  # UTF-8, not \u escapes
    assert json.loads(line) == record


@pytest.mark.parametrize(
    ("messages", "fmt"),
    [
        (5, "openai"),  # openai passes message dicts through untouched: validate.py judges them
        (5, "hf"),
        (["hi"], "hf"),
        ([{"role": "user", "content": "a"}, 7], "hf"),
        (5, "sharegpt"),
        (["hi"], "sharegpt"),
        ([{"role": "user", "content": "a"}, 7], "sharegpt"),
    ],
)
def test_malformed_sessions_raise_invalid_input(messages: Any, fmt: str) -> None:
    with pytest.raises(InvalidInput) as err:
        record_from_session({"messages": messages, "source": SOURCE}, fmt)
    assert err.value.field == "messages"


def test_any_session_shape_gives_a_record_or_invalid_input() -> None:
    rng = random.Random(7)
    bases = [TOOLS_SESSION, FUNCTIONS_SESSION, PARALLEL_SESSION, PLAIN_SESSION]
    outcomes = {"record": 0, "invalid": 0}
    for _ in range(1500):
        session = mutated(rng.choice(bases), rng)
        for fmt in FORMATS:
            try:
                dumps_record(record_from_session(session, fmt))
                outcomes["record"] += 1
            except InvalidInput:
                outcomes["invalid"] += 1
    assert outcomes["record"] and outcomes["invalid"]


def mutated(value: Any, rng: random.Random) -> Any:
    """``value`` with one randomly chosen node replaced by a value of another JSON type."""
    odd = [None, True, 0, 2.5, "", "x", [], ["x"], {}, {"type": ["x"]}, [{"role": {}}]]
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(list(value))
        return {**value, key: mutated(value[key], rng)}
    if isinstance(value, list) and value and rng.random() < 0.8:
        i = rng.randrange(len(value))
        return [*value[:i], mutated(value[i], rng), *value[i + 1 :]]
    return rng.choice(odd)
