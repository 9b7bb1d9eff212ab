"""The demo's questions: deterministic, every operation and phrasing asked, held-out pairs never traced."""

from __future__ import annotations

import pytest

from tracetune.demo.questions import OPERATIONS, PHRASINGS, calculate, make_questions


def test_questions_are_deterministic_and_held_out_pairs_are_new():
    traced, heldout = make_questions(48, 24, n_failing=4, seed=0)
    assert (traced, heldout) == make_questions(48, 24, n_failing=4, seed=0)
    assert make_questions(48, 24, n_failing=4, seed=1) != (traced, heldout)
    assert len(traced) == 48 and len(heldout) == 24
    traced_pairs = {(q.num1, q.num2, q.operation) for q in traced}
    assert not traced_pairs & {(q.num1, q.num2, q.operation) for q in heldout}
    assert {q.operation for q in heldout} == set(OPERATIONS)
    asked = {q.text.replace(str(q.num1), "{a}", 1).replace(str(q.num2), "{b}", 1) for q in traced}
    assert set(PHRASINGS["+"]) <= asked  # 11 additions go through all 6 phrasings


def test_failing_questions_divide_by_zero_and_are_spread():
    traced, _ = make_questions(40, 20, n_failing=4, seed=0)
    failing = [i for i, q in enumerate(traced) if q.num2 == 0]
    assert len(failing) == 4 and all(traced[i].operation == "/" for i in failing)
    assert failing == [8, 16, 24, 32]
    with pytest.raises(ZeroDivisionError):
        _ = traced[failing[0]].answer


def test_every_other_question_has_its_right_call():
    traced, heldout = make_questions(40, 20, n_failing=4, seed=3)
    for q in [*traced, *heldout]:
        if q.num2 == 0:
            continue
        assert q.call == {"num1": q.num1, "num2": q.num2, "operation": q.operation}
        assert q.answer == calculate(q.num1, q.num2, q.operation)
        assert str(q.num1) in q.text and str(q.num2) in q.text
        if q.operation == "/":
            assert q.num1 % q.num2 == 0  # divisions come out even


def test_calculate():
    assert calculate(6, 3, "+") == 9 and calculate(6, 3, "-") == 3
    assert calculate(6, 3, "*") == 18 and calculate(6, 3, "/") == 2
    with pytest.raises(ValueError, match="unknown operation"):
        calculate(1, 2, "^")
