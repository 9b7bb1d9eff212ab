"""Evaluation gates: parsed and checked before anything runs, decided over two summaries with every comparison
reported."""

from __future__ import annotations

import pytest

from tracetune.errors import InvalidInput
from tracetune.evaluate.gates import parse_gate

CURRENT = {"tool_args_exact": 0.90, "latency_p50_s": 1.0, "text_exact": None}


@pytest.mark.parametrize(
    ("gate", "candidate", "passed"),
    [
        ("tool_args_exact >= 0.9 and tool_args_exact >= current + 0.02", {"tool_args_exact": 0.95}, True),
        ("tool_args_exact >= 0.9 and tool_args_exact >= current + 0.02", {"tool_args_exact": 0.91}, False),
        ("latency_p50_s <= 1.2 * current", {"latency_p50_s": 1.1}, True),
        ("latency_p50_s <= 1.2 * current", {"latency_p50_s": 1.3}, False),
        ("tool_args_exact > current.tool_args_exact or not latency_p50_s > 2", {"tool_args_exact": 0.5,
                                                                                 "latency_p50_s": 1.0}, True),
        ("0.8 <= tool_args_exact <= 0.92", {"tool_args_exact": 0.95}, False),
        ("text_exact >= 0", {"text_exact": None}, False),  # does not apply: fails, and says so
        ("text_exact >= current", {"text_exact": 1.0}, False),  # the current model's does not apply
    ],
)  # fmt: skip
def test_decisions(gate, candidate, passed) -> None:
    decision = parse_gate(gate).decide(candidate, CURRENT)
    assert decision.passed is passed, decision.checks


def test_every_comparison_is_reported_with_its_values() -> None:
    decision = parse_gate("tool_args_exact >= 0.9 and tool_args_exact >= current + 0.02").decide(
        {"tool_args_exact": 0.91}, CURRENT
    )
    assert decision.checks == [
        "tool_args_exact >= 0.9: 0.91 >= 0.9: yes",
        "tool_args_exact >= current + 0.02: 0.91 >= 0.92: no",
    ]
    na = parse_gate("text_exact >= 0.5").decide({"text_exact": None})
    assert na.checks == ["text_exact >= 0.5: no (text_exact does not apply to this data)"]
    assert parse_gate("tool_args_exact >= current").uses_current
    assert not parse_gate("tool_args_exact >= 0.5").uses_current


def test_the_first_metric_a_gate_names_is_what_its_history_charts() -> None:
    assert parse_gate("latency_p50_s <= 1.2 * current and accuracy >= 0.9").first_metric == "latency_p50_s"
    assert parse_gate("current.text_fuzzy <= text_fuzzy").first_metric == "text_fuzzy"
    assert parse_gate("1 <= 2").first_metric == "accuracy"


@pytest.mark.parametrize(
    ("gate", "words"),
    [
        ("", "a gate is an expression"),
        ("tool_args_exact >=", "does not parse"),
        ("speed > 1", "unknown metric 'speed'"),
        ("current.speed > 1", "unknown metric 'speed'"),
        ("tool_args_exact", "is not a comparison"),
        ("tool_args_exact in [1]", "compare with"),
        ("0.5 < current", "a bare 'current' needs a comparison that starts with a metric"),
        ("tool_args_exact > __import__('os').sep", "may use metric names"),
        ("tool_args_exact > True", "may use metric names"),
        ("tool_args_exact > 'x'", "may use metric names"),
    ],
)
def test_a_bad_gate_is_refused_naming_the_field(gate, words) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_gate(gate, field="gate")
    assert exc.value.field == "gate" and words in exc.value.message, exc.value.message
