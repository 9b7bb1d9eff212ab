"""Scoring hand-made replies: the right call, a wrong argument, a wrong name, broken JSON, text answers."""

from __future__ import annotations

import json

import pytest

from tracetune.chat.scoring import Score, calls_of, differences, same_value, score_reply, summarize

EXPECTED = {
    "role": "assistant",
    "tool_calls": [
        {"id": "c1", "type": "function",
         "function": {"name": "Calculator", "arguments": json.dumps({"num1": 12, "num2": 7, "operation": "*"})}}
    ],
}  # fmt: skip


def reply_call(name: str, arguments: str) -> dict:
    call = {"id": "x", "type": "function", "function": {"name": name, "arguments": arguments}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def test_the_right_call_numbers_compared_as_numbers():
    score = score_reply(
        EXPECTED, reply_call("Calculator", '{"operation": "*", "num1": 12.0, "num2": 7}'), latency_s=0.5
    )
    assert score == Score("call", True, True, True, True, latency_s=0.5)


def test_a_wrong_argument():
    score = score_reply(EXPECTED, reply_call("Calculator", '{"num1": 12, "num2": 8, "operation": "*"}'))
    assert (score.correct, score.name_correct, score.args_exact, score.valid_json) == (False, True, False, True)
    as_text = score_reply(EXPECTED, reply_call("Calculator", '{"num1": "12", "num2": 7, "operation": "*"}'))
    assert as_text.args_exact is False  # "12" is not 12


def test_a_wrong_name():
    score = score_reply(EXPECTED, reply_call("calculator", '{"num1": 12, "num2": 7, "operation": "*"}'))
    assert (score.correct, score.name_correct, score.args_exact) == (False, False, False)


def test_broken_json_arguments_and_an_unparsed_block():
    broken = score_reply(EXPECTED, reply_call("Calculator", '{"num1": 12, "num2": 7,'))
    assert (broken.correct, broken.name_correct, broken.valid_json) == (False, True, False)
    left_in_text = score_reply(EXPECTED, {"role": "assistant", "content": '<tool_call>{"name": "Calculator", "argu'})
    assert (left_in_text.correct, left_in_text.name_correct, left_in_text.valid_json) == (False, False, False)


def test_no_call_at_all():
    score = score_reply(EXPECTED, {"role": "assistant", "content": "12 times 7 is 84."})
    assert (score.correct, score.name_correct, score.valid_json) == (False, False, None)


def test_legacy_function_call_on_either_side():
    expected = {"role": "assistant", "function_call": {"name": "f", "arguments": '{"a": [1, {"b": true}]}'}}
    assert score_reply(expected, reply_call("f", '{"a": [1.0, {"b": true}]}')).correct
    assert not score_reply(expected, reply_call("f", '{"a": [1, {"b": 1}]}')).correct  # true is not 1
    assert calls_of(expected) == [("f", {"a": [1, {"b": True}]})]


@pytest.mark.parametrize(
    ("said", "exact", "fuzzy"),
    [
        ("The answer is 84.", True, True),
        ("  The answer   is 84. ", True, True),
        ("the answer is 84", False, True),
        ("I cannot help with that.", False, False),
    ],
)
def test_text_answers(said, exact, fuzzy):
    score = score_reply({"role": "assistant", "content": "The answer is 84."}, {"role": "assistant", "content": said})
    assert (score.expected_kind, score.text_exact, score.text_fuzzy, score.correct) == ("text", exact, fuzzy, exact)


def test_a_call_where_text_was_expected_is_wrong():
    score = score_reply({"role": "assistant", "content": "84"}, reply_call("Calculator", "{}"))
    assert (score.correct, score.text_fuzzy, score.valid_json) == (False, False, True)


def test_same_value():
    assert same_value({"a": 1, "b": [2.0]}, {"b": [2], "a": 1.0})
    assert not same_value({"a": 1}, {"a": 1, "b": None})
    assert not same_value(True, 1) and not same_value(None, 0) and same_value("x", "x")


def test_summary_rates_count_only_where_a_metric_applies():
    scores = [
        score_reply(EXPECTED, reply_call("Calculator", '{"num1": 12, "num2": 7, "operation": "*"}'), latency_s=1.0),
        score_reply(EXPECTED, reply_call("Calculator", '{"num1": 1, "num2": 7, "operation": "*"}'), latency_s=3.0),
        score_reply(EXPECTED, {"role": "assistant", "content": "no"}, latency_s=2.0),
        score_reply({"role": "assistant", "content": "hi"}, {"role": "assistant", "content": "hi"}, latency_s=4.0),
    ]
    summary = summarize(scores)
    assert summary["examples"] == 4 and summary["accuracy"] == 0.5
    assert summary["tool_name_accuracy"] == round(2 / 3, 4) and summary["tool_args_exact"] == round(1 / 3, 4)
    assert summary["valid_json_rate"] == 1.0  # two calls made, both parse; the others made none
    assert summary["text_exact"] == 1.0 and summary["latency_p50_s"] == 3.0 and summary["latency_mean_s"] == 2.5
    assert summarize([])["accuracy"] is None


@pytest.mark.parametrize(
    ("reply", "said"),
    [
        (reply_call("Calculator", '{"operation": "*", "num1": 12.0, "num2": 7}'), []),
        (reply_call("Calculator", '{"operation": "+", "num1": 12, "num2": 7}'), ['operation: "+", not "*"']),
        (reply_call("Calculator", '{"num1": 7, "num2": 12, "operation": "*"}'), ["num1: 7, not 12", "num2: 12, not 7"]),
        (reply_call("Calculator", '{"num1": 12, "operation": "*", "x": 1}'), ["num2: missing", "x: not expected"]),
        (reply_call("Search", '{"q": "12 * 7"}'), ["called Search, not Calculator"]),
        (reply_call("Calculator", "{broken"), ["arguments {broken, not {'num1': 12, 'num2': 7, 'operation': '*'}"]),
        ({"role": "assistant", "content": "It is 84."}, ["no call; expected Calculator: It is 84."]),
    ],
)
def test_differences_name_each_argument_that_is_wrong(reply, said):
    assert differences(EXPECTED, reply) == said
    assert (said == []) == score_reply(EXPECTED, reply).correct


def test_differences_of_text_answers_name_the_words():
    expected = {"role": "assistant", "content": "The total is 84 dollars."}
    assert differences(expected, {"role": "assistant", "content": "The  total is 84 dollars. "}) == []
    assert differences(expected, {"role": "assistant", "content": "The total is 85 dollars."}) == ["'85', not '84'"]
    assert differences(expected, {"role": "assistant", "content": "The total is 84."}) == ["'84.', not '84 dollars.'"]
    assert differences(expected, reply_call("Calculator", "{}")) == ["called Calculator; expected text"]
