"""RFT lines (``tracetune.chat.reinforcement``): a prompt held to the chat rules, never ending with the answer; the
other keys are the grader's item."""

from __future__ import annotations

from tracetune.chat.reinforcement import reinforcement_prompt, validate_reinforcement_record
from tracetune.chat.validate import validate_lines

TOOLS = [{"type": "function", "function": {"name": "Calculator", "parameters": {"type": "object", "properties": {}}}}]
LINE = {
    "messages": [{"role": "system", "content": "You are an accounting assistant."},
                 {"role": "user", "content": "Subtract 17 from 45."}],
    "tools": TOOLS,
    "reference_answer": {"num1": 45, "num2": 17, "operation": "-"},
}  # fmt: skip


def problems(record) -> list[tuple[str, str]]:
    return [(p.field, p.code) for p in validate_reinforcement_record(record, 3) if p.level == "error"]


def test_a_prompt_with_item_fields_is_valid_and_splits_into_prompt_and_item():
    assert problems(LINE) == []
    assert reinforcement_prompt(LINE) == {"messages": LINE["messages"], "tools": TOOLS}


def test_bad_lines_name_their_field():
    answered = {**LINE, "messages": [*LINE["messages"], {"role": "assistant", "content": "28"}]}
    assert problems(answered) == [("messages[2]", "prompt_ends_with_answer")]
    robot = {**LINE, "messages": [{"role": "robot", "content": "hi"}]}
    assert ("messages[0].role", "invalid_role") in problems(robot)
    assert problems({"reference_answer": 1}) == [("messages", "missing_messages")]
    assert problems({**LINE, "tools": []}) == [("tools", "invalid_tools")]
    assert problems([1]) == [("", "not_object")]


def test_a_file_of_rft_lines_reports_each_bad_line():
    import json

    lines = [json.dumps(LINE), json.dumps({**LINE, "messages": []}), "{"]
    report = validate_lines(lines, validator=validate_reinforcement_record)
    assert (report.lines, report.valid_lines) == (3, 1)
    assert [(p.line, p.code) for p in report.problems] == [(2, "empty_messages"), (3, "invalid_json")]
