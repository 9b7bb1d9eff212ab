"""validate_lines / validate_record: OpenAI chat fine-tuning rules, every problem at once, line + field paths."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from tracetune.chat.validate import Problem, validate_lines, validate_record
from tracetune.convert.records import dumps_record, record_from_session

from .test_records import mutated

FIXTURES = Path(__file__).parent / "fixtures"
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}}
USER = {"role": "user", "content": "Weather in Paris?"}
ANSWER = {"role": "assistant", "content": "Sunny."}
PLAIN = {"messages": [USER, ANSWER]}
TOOL_LOOP = {
    "messages": [
        {"role": "system", "content": "You are a weather bot."},
        USER,
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "content": "18C", "tool_call_id": "call_1"},
        {"role": "assistant", "content": "It is 18C."},
    ],
    "tools": [TOOL],
    "parallel_tool_calls": False,
}


def line(record: Any) -> str:
    return json.dumps(record)


def with_message(index: int, message: Any, base: dict[str, Any] = TOOL_LOOP) -> dict[str, Any]:
    messages = list(base["messages"])
    messages[index] = message
    return {**base, "messages": messages}


FINAL_CALL = {"messages": [USER, {"role": "assistant", "content": None, "tool_calls": [CALL]}], "tools": [TOOL]}


def with_call(**changes: Any) -> dict[str, Any]:
    """FINAL_CALL with its one tool call changed (``function=`` merges into the function object)."""
    function = {**CALL["function"], **changes.pop("function", {})}
    message = {"role": "assistant", "content": None, "tool_calls": [{**CALL, **changes, "function": function}]}
    return with_message(1, message, FINAL_CALL)


# ── valid records ─────────────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "record",
    [
        PLAIN,
        TOOL_LOOP,
        {"messages": [{"role": "developer", "content": "Be brief."}, USER, {**ANSWER, "weight": 0}, USER, ANSWER]},
        {"messages": [USER, {"role": "assistant", "content": None, "tool_calls": [CALL]}], "tools": [TOOL]},  # target
        {"messages": [USER, {"role": "assistant", "content": "", "tool_calls": [CALL]}], "tools": [TOOL]},
        {
            "messages": [
                USER,
                {"role": "assistant", "content": None, "function_call": CALL["function"]},
                {"role": "function", "name": "get_weather", "content": "18C"},
                ANSWER,
            ],
            "functions": [TOOL["function"]],
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}},
                    ],
                },
                ANSWER,
            ]
        },
        {"messages": [USER, {"role": "assistant", "content": [{"type": "text", "text": "Sunny."}]}]},
        {"messages": [USER, ANSWER], "tools": [{"type": "function", "function": {"name": "no_params-1"}}]},
    ],
    ids=[
        "plain",
        "tool-loop",
        "developer-weight",
        "final-call",
        "empty-content-call",
        "functions",
        "image",
        "parts",
        "no-params",
    ],
)
def test_valid_records_have_no_problems(record: dict[str, Any]) -> None:
    assert validate_record(record, 1) == []


# ── one planted problem each ──────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("record", "field", "code"),
    [
        ([PLAIN], "", "not_object"),
        ({**PLAIN, "metadata": {"a": 1}}, "metadata", "unknown_key"),
        ({}, "messages", "missing_messages"),
        ({"messages": {"role": "user"}}, "messages", "invalid_messages"),
        ({"messages": []}, "messages", "empty_messages"),
        ({"messages": [USER, ANSWER, "hi"]}, "messages[2]", "invalid_message"),
        ({"messages": [{"content": "x"}, ANSWER]}, "messages[0].role", "missing_role"),
        ({"messages": [{"role": "robot", "content": "x"}, ANSWER]}, "messages[0].role", "invalid_role"),
        ({"messages": [{"role": ["user"], "content": "x"}, ANSWER]}, "messages[0].role", "invalid_role"),
        (
            {"messages": [{"role": "user", "content": [{"type": ["text"]}]}, ANSWER]},
            "messages[0].content[0]",
            "invalid_content_part",
        ),
        ({"messages": [{"role": "user"}, ANSWER]}, "messages[0].content", "missing_content"),
        ({"messages": [{"role": "user", "content": None}, ANSWER]}, "messages[0].content", "invalid_content"),
        ({"messages": [{"role": "user", "content": 5}, ANSWER]}, "messages[0].content", "invalid_content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "video"}]}, ANSWER]},
            "messages[0].content[0]",
            "invalid_content_part",
        ),
        ({"messages": [{"role": "user", "content": ["hi"]}, ANSWER]}, "messages[0].content[0]", "invalid_content_part"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text"}]}, ANSWER]},
            "messages[0].content[0].text",
            "invalid_content_part",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "u"}]}, ANSWER]},
            "messages[0].content[0].image_url",
            "invalid_content_part",
        ),
        (
            {"messages": [USER, ANSWER, USER, {"role": "assistant", "content": None}]},
            "messages[3]",
            "empty_assistant_message",
        ),
        ({"messages": [USER, {**ANSWER, "weight": 2}]}, "messages[1].weight", "invalid_weight"),
        ({"messages": [USER, {**ANSWER, "weight": True}]}, "messages[1].weight", "invalid_weight"),
        ({"messages": [{**USER, "weight": 1}, ANSWER]}, "messages[0].weight", "invalid_weight"),
        ({"messages": [{**USER, "tool_calls": [CALL]}, ANSWER]}, "messages[0].tool_calls", "misplaced_tool_calls"),
        (
            with_message(1, {"role": "assistant", "content": "Checking.", "tool_calls": []}, PLAIN),
            "messages[1].tool_calls",
            "invalid_tool_calls",
        ),
        (
            with_message(1, {"role": "assistant", "content": "Checking.", "tool_calls": ["x"]}, PLAIN),
            "messages[1].tool_calls[0]",
            "invalid_tool_calls",
        ),
        (with_call(id=""), "messages[1].tool_calls[0].id", "missing_tool_call_id"),
        (with_call(type="code"), "messages[1].tool_calls[0].type", "invalid_tool_call_type"),
        (
            with_call(function={"name": "get weather"}),
            "messages[1].tool_calls[0].function.name",
            "invalid_function_name",
        ),
        (with_call(function={"name": "x" * 65}), "messages[1].tool_calls[0].function.name", "invalid_function_name"),
        (
            with_call(function={"arguments": {"location": "Paris"}}),
            "messages[1].tool_calls[0].function.arguments",
            "invalid_arguments",
        ),
        (
            with_call(function={"arguments": '["Paris"]'}),
            "messages[1].tool_calls[0].function.arguments",
            "invalid_arguments",
        ),
        (
            with_call(function={"arguments": '{"location": Paris}'}),
            "messages[1].tool_calls[0].function.arguments",
            "arguments_not_json",
        ),
        (
            with_call(function={"arguments": '{"a": NaN}'}),
            "messages[1].tool_calls[0].function.arguments",
            "arguments_not_json",
        ),
        (with_message(3, {"role": "tool", "content": "18C"}), "messages[3].tool_call_id", "missing_tool_call_id"),
        (
            with_message(3, {"role": "tool", "content": "18C", "tool_call_id": "call_2"}),
            "messages[3].tool_call_id",
            "orphan_tool_call_id",
        ),
        (
            {
                "messages": [
                    USER,
                    {"role": "assistant", "content": None, "tool_calls": [CALL, {**CALL}]},
                    {"role": "tool", "content": "18C", "tool_call_id": "call_1"},
                    ANSWER,
                ]
            },
            "messages[1].tool_calls[1].id",
            "duplicate_tool_call_id",
        ),
        (
            {
                "messages": [
                    USER,
                    {"role": "assistant", "content": None, "function_call": CALL["function"]},
                    {"role": "function", "content": "18C"},
                    ANSWER,
                ]
            },
            "messages[2].name",
            "missing_name",
        ),
        ({**PLAIN, "tools": []}, "tools", "invalid_tools"),
        ({**PLAIN, "tools": {"get_weather": TOOL}}, "tools", "invalid_tools"),
        ({**PLAIN, "tools": [{"type": "function"}]}, "tools[0].function", "invalid_tools"),
        ({**PLAIN, "tools": [{**TOOL, "type": "retrieval"}]}, "tools[0].type", "invalid_tool_type"),
        (
            {**PLAIN, "tools": [{"type": "function", "function": {"name": "get.weather"}}]},
            "tools[0].function.name",
            "invalid_function_name",
        ),
        ({**PLAIN, "tools": [TOOL, TOOL]}, "tools[1].function.name", "duplicate_tool_name"),
        (
            {**PLAIN, "tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
            "tools[0].function.parameters",
            "invalid_parameters",
        ),
        (
            {**PLAIN, "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]},
            "tools[0].function.parameters.type",
            "invalid_parameters",
        ),
        (
            {
                **PLAIN,
                "tools": [
                    {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": []}}}
                ],
            },
            "tools[0].function.parameters.properties",
            "invalid_parameters",
        ),
        (
            {
                **PLAIN,
                "tools": [
                    {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "required": "a"}}}
                ],
            },
            "tools[0].function.parameters.required",
            "invalid_parameters",
        ),
        ({**PLAIN, "functions": [{"name": "f g"}]}, "functions[0].name", "invalid_function_name"),
        (
            {**PLAIN, "functions": [{"name": "f", "parameters": {"properties": {}}}]},
            "functions[0].parameters.type",
            "invalid_parameters",
        ),
        ({**PLAIN, "tools": [TOOL], "functions": [TOOL["function"]]}, "functions", "tools_and_functions"),
        (
            {**PLAIN, "tools": [TOOL], "parallel_tool_calls": "yes"},
            "parallel_tool_calls",
            "invalid_parallel_tool_calls",
        ),
    ],
)
def test_each_rule(record: Any, field: str, code: str) -> None:
    problems = validate_record(record, 7)
    assert [(p.line, p.field, p.code) for p in problems if p.level == "error"] == [(7, field, code)], problems


@pytest.mark.parametrize(
    ("record", "field", "code"),
    [
        (
            {
                "messages": [
                    USER,
                    {"role": "assistant", "content": None, "tool_calls": [CALL, {**CALL, "id": "call_2"}]},
                    {"role": "tool", "content": "18C", "tool_call_id": "call_1"},
                    ANSWER,
                ]
            },
            "messages[1].tool_calls[1]",
            "unanswered_tool_call",
        ),
        (
            {**TOOL_LOOP, "tools": [{"type": "function", "function": {"name": "other"}}]},
            "messages[2].tool_calls[0].function.name",
            "undeclared_tool",
        ),
    ],
)
def test_warnings_are_problems_that_do_not_invalidate(record: dict[str, Any], field: str, code: str) -> None:
    problems = validate_record(record, 3)
    assert problems == [Problem(3, field, problems[0].message, code, "warning")]
    report = validate_lines([line(record)])
    assert report.valid_lines == 1 and report.ok and report.warnings == 1 and report.errors == 0


def test_every_problem_of_a_record_is_reported() -> None:
    record = {
        "messages": [
            {"role": "robot", "content": "x"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "", "type": "fn", "function": {"name": "a b", "arguments": "{"}}],
            },
            {"role": "tool", "content": "r", "tool_call_id": "nope"},
        ],
        "tools": [{"type": "function", "function": {"name": "ok", "parameters": {"type": "array"}}}],
        "extra": 1,
    }
    codes = [(p.field, p.code) for p in validate_record(record, 1)]
    assert codes == [
        ("extra", "unknown_key"),
        ("tools[0].function.parameters.type", "invalid_parameters"),
        ("messages[0].role", "invalid_role"),
        ("messages[1].tool_calls[0].id", "missing_tool_call_id"),
        ("messages[1].tool_calls[0].type", "invalid_tool_call_type"),
        ("messages[1].tool_calls[0].function.name", "invalid_function_name"),
        ("messages[1].tool_calls[0].function.arguments", "arguments_not_json"),
        ("messages[2].tool_call_id", "orphan_tool_call_id"),
    ]


# ── files ─────────────────────────────────────────────────────────────────────────────────────────────────


def test_five_planted_errors_all_reported_with_their_lines() -> None:
    bad_args = with_call(function={"arguments": "location=Paris"})
    lines = [
        line(PLAIN),
        line({"messages": [{"role": "human", "content": "hi"}, ANSWER]}),  # 2: bad role
        line(TOOL_LOOP),
        line(bad_args),  # 4: non-JSON arguments
        line(with_message(3, {"role": "tool", "content": "18C", "tool_call_id": "call_zzz"})),  # 5: orphan tool_call_id
        line(PLAIN),
        line({"messages": [{"role": "system", "content": "s"}, USER]}),  # 7: no assistant message
        line(TOOL_LOOP),
        line({**TOOL_LOOP, "tools": [{"type": "function", "function": {"name": "get weather!"}}]}),  # 9: bad tool name
        line(PLAIN),
    ]
    report = validate_lines(lines)
    errors = [(p.line, p.field, p.code) for p in report.problems if p.level == "error"]
    assert errors == [
        (2, "messages[0].role", "invalid_role"),
        (4, "messages[1].tool_calls[0].function.arguments", "arguments_not_json"),
        (5, "messages[3].tool_call_id", "orphan_tool_call_id"),
        (7, "messages", "no_assistant_message"),
        (9, "tools[0].function.name", "invalid_function_name"),
    ]
    assert report.lines == 10 and report.valid_lines == 5 and not report.ok
    text = report.format_text()
    for n in (2, 4, 5, 7, 9):
        assert f"line {n}: " in text
    assert "10 lines, 5 valid; 5 errors" in text and "orphan_tool_call_id: 1" in text


# wire-protocols §4, "tools: THE TOOL CALL IS LOST": convert_messages_for_finetuning's exact output.
LANGCHAIN_LOST_CALL_SINGLE = (
    '[{"role":"system","content":"You are a helpful weather bot."},'
    '{"role":"user","content":"What is the weather in Paris?"},{"role":"assistant","content":""}]'
)
LANGCHAIN_LOST_CALL_TWO_TURN = (
    '[{"role":"user","content":"What is the weather in Paris?"},{"role":"assistant","content":""},'
    '{"role":"tool","content":"18C and sunny","tool_call_id":"call_abc123"},'
    '{"role":"assistant","content":"It is 18 degrees in Paris."}]'
)


def test_langchain_lost_tool_call_lines_are_flagged() -> None:
    lines = [f'{{"messages": {LANGCHAIN_LOST_CALL_SINGLE}}}', f'{{"messages": {LANGCHAIN_LOST_CALL_TWO_TURN}}}']
    report = validate_lines(lines)
    assert [(p.line, p.field, p.code) for p in report.problems] == [
        (1, "messages[2]", "empty_assistant_message"),
        (1, "messages", "no_assistant_message"),
        (2, "messages[1]", "empty_assistant_message"),
        (2, "messages[2].tool_call_id", "orphan_tool_call_id"),
    ]
    assert report.valid_lines == 0
    # the legacy functions path survives LangChain's exporter and validates
    functions_ok = (
        '{"messages": [{"role":"user","content":"Weather?"},{"role":"assistant","content":null,"function_call":'
        '{"arguments":"{\\"location\\": \\"Paris\\", \\"unit\\": \\"celsius\\"}","name":"get_weather"}},'
        '{"role":"function","content":"18C and sunny","name":"get_weather"},'
        '{"role":"assistant","content":"It is 18 degrees in Paris."}]}'
    )
    assert validate_lines([functions_ok]).problems == []


def test_line_level_problems_and_inputs() -> None:
    report = validate_lines([b'{"messages": [', line(PLAIN).encode() + b"\n", "   \n", "[1, 2]", "", "\n"])
    assert [(p.line, p.field, p.code) for p in report.problems] == [
        (1, "", "invalid_json"),
        (3, "", "blank_line"),
        (4, "", "not_object"),
    ]
    assert "not valid JSON" in report.problems[0].message
    assert report.lines == 4 and report.valid_lines == 1  # trailing blank lines are not lines of data
    assert report.by_code == {"invalid_json": 1, "blank_line": 1, "not_object": 1}
    empty = validate_lines([])
    assert (empty.lines, empty.valid_lines, empty.problems, empty.ok) == (0, 0, [], True)


def test_format_text_limits_output() -> None:
    report = validate_lines(["{}"] * 5)
    text = report.format_text(max_problems=2)
    assert text.splitlines()[:3] == [
        "line 1: messages: missing [missing_messages]",
        "line 2: messages: missing [missing_messages]",
        "… and 3 more",
    ]
    assert "5 lines, 0 valid; 5 errors, 0 warnings" in text


def test_checks_hook_runs_on_structurally_valid_records_only() -> None:
    seen: list[tuple[int, int]] = []

    def too_long(record: dict[str, Any], n: int) -> list[Problem]:
        seen.append((n, len(record["messages"])))
        if len(record["messages"]) > 2:
            return [Problem(n, "messages", "longer than the model's context", "too_long")]
        return []

    report = validate_lines([line(PLAIN), line({"messages": []}), line(TOOL_LOOP)], checks=[too_long])
    assert seen == [(1, 2), (3, 5)]
    assert [(p.line, p.code) for p in report.problems] == [(2, "empty_messages"), (3, "too_long")]
    assert report.valid_lines == 1 and report.by_code == {"empty_messages": 1, "too_long": 1}


def test_records_built_from_captured_traces_validate_clean() -> None:
    sessions = pytest.importorskip("tracetune.convert.sessions")
    lines = []
    for name in ("ls_agent.json", "ls_read_flat.json", "ls_wrap.json", "ls_zstd.json", "extra.json"):
        path = FIXTURES / name
        if not path.exists():
            pytest.skip(f"fixture {name} missing")
        for run in json.loads(path.read_text())["runs"].values():
            session = sessions.session_from_run(run)
            if "messages" in session:
                lines.append(dumps_record(record_from_session(session, "openai")))
    assert len(lines) >= 15
    report = validate_lines(lines)
    assert report.problems == [], report.format_text()


def test_never_raises_on_any_json_shape() -> None:
    rng = random.Random(1234)
    bases = [PLAIN, TOOL_LOOP, FINAL_CALL, {**PLAIN, "functions": [TOOL["function"]]}]
    lines = [json.dumps(mutated(rng.choice(bases), rng)) for _ in range(3000)]
    report = validate_lines(lines)
    assert report.lines == 3000
    assert report.valid_lines < 3000 and report.problems
