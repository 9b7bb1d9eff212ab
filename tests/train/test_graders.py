"""Graders (reinforcement fine-tuning's rewards): each type's reward, templates, the multi formula, what is refused
before a grader runs (naming the field) and what fails one sample while it runs — a Python grader that loops,
reaches for the network, reads the store, starts a process — each in its sandbox, the server untouched."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tracetune.errors import InvalidInput
from tracetune.train.graders import run_grader, validate_grader

ITEM = {"answer": "42", "call": {"num1": 45, "num2": 17}, "tags": ["a", "b"]}


def check(**grader):
    return validate_grader({"name": "g", **grader})


def reward(grader, sample: str, item=ITEM) -> float:
    result = run_grader(check(**grader), sample, item)
    assert not result.errors, result.errors
    return result.reward


@pytest.mark.parametrize(
    ("operation", "sample", "expected"),
    [("eq", "42", 1.0), ("eq", " 42", 0.0), ("ne", "41", 1.0), ("like", "It is 42.", 1.0), ("like", "It is 4 2", 0.0),
     ("ilike", "ANSWER 42", 1.0)],
)  # fmt: skip
def test_string_check(operation, sample, expected):
    grader = {"type": "string_check", "input": "{{sample.output_text}}", "reference": "{{item.answer}}"}
    assert reward({**grader, "operation": operation}, sample) == expected


def test_templates_reach_into_the_item_and_the_samples_json():
    grader = {"type": "string_check", "operation": "eq",
              "input": "{{ sample.output_json.num1 }}-{{sample.output_json.num2}}",
              "reference": "{{item.call.num1}}-{{item.call.num2}}"}  # fmt: skip
    assert reward(grader, '{"num1": 45, "num2": 17}') == 1.0
    assert reward(grader, '{"num1": 17, "num2": 45}') == 0.0
    listed = {
        "type": "string_check",
        "operation": "eq",
        "input": "{{sample.output_text}}",
        "reference": "{{item.tags.1}}",
    }
    assert reward(listed, "b") == 1.0


def test_fuzzy_match_is_a_similarity_between_0_and_1():
    grader = {"type": "text_similarity", "evaluation_metric": "fuzzy_match", "input": "{{sample.output_text}}",
              "reference": "the answer is forty-two"}  # fmt: skip
    assert reward(grader, "the answer is forty-two") == 1.0
    close, far = reward(grader, "the answer is forty two"), reward(grader, "no idea")
    assert 0.9 < close < 1.0 and far < 0.4


def test_multi_combines_named_graders_with_a_formula():
    grader = {
        "type": "multi",
        "graders": {
            "exact": {"name": "exact", "type": "string_check", "operation": "eq", "input": "{{sample.output_text}}",
                      "reference": "{{item.answer}}"},
            "close": {"name": "close", "type": "text_similarity", "evaluation_metric": "fuzzy_match",
                      "input": "{{sample.output_text}}", "reference": "{{item.answer}}"},
        },
        "calculate_output": "0.5 * exact + 0.5 * max(close, 0)",
    }  # fmt: skip
    result = run_grader(check(**grader), "42", ITEM)
    assert result.reward == 1.0 and result.sub_rewards == {"exact": 1.0, "close": 1.0}
    half = run_grader(check(**grader), "4", ITEM)
    assert half.sub_rewards["exact"] == 0.0 and 0.3 < half.reward < 0.5


@pytest.mark.parametrize(
    ("metric", "given", "reference", "expected"),
    [
        ("bleu", "42", "42", 1.0),  # a short exact answer: n-grams up to the reference's length
        ("bleu", "The cat sat on the mat", "the cat sat on the mat", 1.0),  # words lower-cased
        ("bleu", "the cat is on the mat", "the cat sat on the mat", (0.25406, 0.25407)),  # NLTK's, smoothing 1
        ("bleu", "", "the cat", 0.0),
        ("gleu", "the cat is on the mat", "the cat sat on the mat", 0.5),
        ("rouge_1", "the cat is on the mat", "the cat sat on the mat", (0.8333, 0.8334)),
        ("rouge_2", "the cat is on the mat", "the cat sat on the mat", 0.6),
        ("rouge_4", "the cat is on the mat", "the cat sat on the mat", 0.0),
        ("rouge_l", "on the mat the cat", "the cat sat on the mat", (0.5454, 0.5455)),  # LCS "on the mat": 3/5, 3/6
    ],
)
def test_text_similarity_metrics(metric, given, reference, expected):
    grader = {"type": "text_similarity", "evaluation_metric": metric, "input": "{{sample.output_text}}",
              "reference": "{{item.reference}}"}  # fmt: skip
    got = run_grader(check(**grader), given, {"reference": reference}).reward
    if isinstance(expected, tuple):
        assert expected[0] <= got <= expected[1], got
    else:
        assert got == pytest.approx(expected), got


def test_python_grader_runs_grade_with_sample_and_item():
    source = (
        "import json\n"
        "def grade(sample, item):\n"
        "    call = sample['output_json'] or {}\n"
        "    return 1.0 if call == item['call'] else 0.25\n"
    )
    grader = {"type": "python", "source": source}
    assert reward(grader, '{"num1": 45, "num2": 17}') == 1.0
    assert reward(grader, '{"num1": 17, "num2": 45}') == 0.25


@pytest.mark.parametrize(
    ("grader", "field", "words"),
    [
        ({"type": "nope"}, "grader.type", "unknown grader type"),
        ({"type": "score_model", "input": [{"role": "user", "content": "x"}]}, "grader.model", "must name the model"),
        ({"type": "score_model", "input": [], "model": "x"}, "grader.input", "non-empty list of chat messages"),
        ({"type": "score_model", "model": "x", "input": [{"role": "user", "content": "ok"},
          {"role": "user", "content": "{{ env.HOME }}"}]}, "grader.input[1].content", "must name item.<field>"),
        ({"type": "score_model", "model": "x", "input": [{"role": "user", "content": [{"text": "{{sample.x}}"}]}]},
         "grader.input[0].content[0]", "a sample has"),
        ({"type": "score_model", "model": "x", "input": [{"role": "robot", "content": "x"}]}, "grader.input[0].role",
         "needs a role"),
        ({"type": "score_model", "model": "x", "input": [{"role": "user", "content": "x"}], "range": [1, 0]},
         "grader.range", "low < high"),
        ({"type": "score_model", "model": "x", "input": [{"role": "user", "content": "x"}],
          "sampling_params": {"top_k": 3}}, "grader.sampling_params.top_k", "unknown sampling parameter"),
        ({"type": "label_model", "model": "x", "input": [{"role": "user", "content": "x"}], "labels": ["a", "b"],
          "passing_labels": ["c"]}, "grader.passing_labels", "some of the labels"),
        ({"type": "string_check", "input": "{{sample.output_text}}", "reference": "x", "operation": "regex"},
         "grader.operation", "operation must be one of"),
        ({"type": "string_check", "input": "{{ secrets.key }}", "reference": "x", "operation": "eq"},
         "grader.input", "must name item.<field>"),
        ({"type": "string_check", "input": "{{sample.text}}", "reference": "x", "operation": "eq"},
         "grader.input", "a sample has output_text, output_json, output_tools"),
        ({"type": "string_check", "input": 3, "reference": "x", "operation": "eq"}, "grader.input", "a template"),
        ({"type": "text_similarity", "input": "a", "reference": "b", "evaluation_metric": "meteor"},
         "grader.evaluation_metric", "not supported by tracetune; use one of fuzzy_match, bleu"),
        ({"type": "python", "source": "def grade(sample, item) return 1"}, "grader.source", "does not compile: line 1"),
        ({"type": "python", "source": "def score(sample, item):\n    return 1"}, "grader.source", "defines no grade"),
        ({"type": "multi", "graders": {"a": {"name": "a", "type": "string_check", "input": "x", "reference": "x",
          "operation": "eq"}}, "calculate_output": "a + b"}, "grader.calculate_output", "names 'b'"),
        ({"type": "multi", "graders": {"a": {"name": "a", "type": "string_check", "input": "x", "reference": "x",
          "operation": "eq"}}, "calculate_output": "__import__('os')"}, "grader.calculate_output", "may use"),
        ({"type": "multi", "graders": {"a": {"name": "a", "type": "python", "source": "x = 1"}},
          "calculate_output": "a"}, "grader.graders.a.source", "defines no grade"),
    ],
)  # fmt: skip
def test_a_bad_grader_is_refused_naming_its_field(grader, field, words):
    with pytest.raises(InvalidInput) as exc:
        check(**grader)
    assert exc.value.field == field and words in exc.value.message, exc.value.message


def test_a_grader_needs_a_name_and_an_object():
    with pytest.raises(InvalidInput) as unnamed:
        validate_grader({"type": "string_check", "input": "a", "reference": "a", "operation": "eq"})
    assert unnamed.value.field == "grader.name"
    with pytest.raises(InvalidInput) as not_object:
        validate_grader("string_check")
    assert not_object.value.field == "grader"


def test_a_missing_item_key_fails_the_sample_not_the_call():
    grader = check(type="string_check", operation="eq", input="{{sample.output_text}}", reference="{{item.nope}}")
    result = run_grader(grader, "42", ITEM)
    assert result.reward == 0.0 and result.errors["invalid_variable_error"] and "nope" in result.errors["details"]
    not_json = check(type="string_check", operation="eq", input="{{sample.output_json.a}}", reference="x")
    assert run_grader(not_json, "plain text", ITEM).errors["invalid_variable_error"]


@pytest.mark.parametrize(
    ("body", "flag", "words"),
    [
        ("    while True:\n        pass", "unresponsive_reward_error", "ran past its"),
        ("    import urllib.request\n    return urllib.request.urlopen('http://127.0.0.1:9/').read()",
         "python_grader_runtime_error", "may not use socket"),
        ("    return len(open(item['path']).read())", "python_grader_runtime_error", "may not open"),
        ("    import subprocess\n    return subprocess.run(['true']).returncode", "python_grader_runtime_error",
         "may not use subprocess"),
        ("    open('/tmp/tt-grader-escape', 'w').write('x')\n    return 1", "python_grader_runtime_error",
         "may not open"),
        ("    return 1 / 0", "python_grader_runtime_error", "ZeroDivisionError: division by zero (grader line 3)"),
        ("    return bytearray(8 << 30)", "python_grader_runtime_error", "MemoryError"),
    ],
)  # fmt: skip
def test_a_python_grader_that_breaks_the_rules_fails_its_sample(tmp_path, body, flag, words):
    secret = tmp_path / "tracetune.db"
    secret.write_text("the store")
    source = f"def grade(sample, item):\n    x = 1\n{body}\n"
    started = time.monotonic()
    result = run_grader(check(type="python", source=source), "42", {**ITEM, "path": str(secret)})
    assert result.reward == 0.0 and result.errors.get(flag), result.errors
    detail = result.errors.get("python_grader_runtime_error_details") or result.errors.get("details")
    assert words in detail, detail
    assert time.monotonic() - started < 15
    assert not Path("/tmp/tt-grader-escape").exists()
