"""Evaluation gates: whether a candidate model may replace the current one, as an expression over their metrics.

A gate is a Python-like expression over the metric names of :data:`tracetune.evaluate.replay.METRICS`
(``accuracy``, ``tool_name_accuracy``, ``tool_args_exact``, ``valid_json_rate``, ``text_exact``, ``text_fuzzy``,
``latency_p50_s``): a name is the **candidate's** value; ``current.<metric>`` is the current model's; a bare
``current`` stands for the current model's value of the metric the comparison starts with. Comparisons
(``< <= > >= == !=``, chained too), ``and``, ``or``, ``not``, parentheses, ``+ - * /`` and numbers; nothing else::

    tool_args_exact >= 0.9 and tool_args_exact >= current + 0.02
    latency_p50_s <= 1.2 * current

:func:`parse_gate` checks an expression before anything runs (an unknown metric, a call, an attribute of anything
but ``current``, a bare ``current`` outside a comparison that starts with a metric → :class:`InvalidInput` naming
``field``). :meth:`Gate.decide` gives the decision and, per comparison, what was compared — the reason a user
reads. A metric that does not apply to the data (``None``: no tool calls to score) fails the comparisons that use
it, and says so.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from tracetune.errors import InvalidInput
from tracetune.evaluate.replay import METRICS

METRIC_NAMES = tuple(name for name, _ in METRICS)
_COMPARE: dict[type, tuple[str, Callable[[Any, Any], bool]]] = {
    ast.Lt: ("<", operator.lt), ast.LtE: ("<=", operator.le), ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge), ast.Eq: ("==", operator.eq), ast.NotEq: ("!=", operator.ne),
}  # fmt: skip
_ARITHMETIC: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}  # fmt: skip


class _NotApplicable(Exception):
    def __init__(self, what: str) -> None:
        self.what = what


@dataclass
class GateDecision:
    passed: bool
    checks: list[str] = field(default_factory=list)  # "tool_args_exact 0.95 >= 0.9: yes", one per comparison

    def reason(self) -> str:
        return "; ".join(self.checks)


@dataclass
class Gate:
    expression: str
    tree: ast.Expression

    @property
    def first_metric(self) -> str:
        """The metric the gate names first (what a chart of the gate's history shows)."""
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Name) and node.id in METRIC_NAMES:
                return node.id
            if isinstance(node, ast.Attribute) and node.attr in METRIC_NAMES:
                return node.attr
        return "accuracy"

    @property
    def uses_current(self) -> bool:
        """Whether the gate compares against the current model (which must then be evaluated too)."""
        return any(isinstance(n, ast.Name) and n.id == "current" for n in ast.walk(self.tree))

    def decide(self, candidate: Mapping[str, Any], current: Mapping[str, Any] | None = None) -> GateDecision:
        """The decision for ``candidate``'s metrics (a summary of :func:`tracetune.evaluate.replay.evaluate`)
        against ``current``'s."""
        decision = GateDecision(False)
        decision.passed = bool(self._bool(self.tree.body, candidate, current or {}, decision))
        return decision

    def _bool(self, node: ast.AST, cand: Mapping[str, Any], cur: Mapping[str, Any], out: GateDecision) -> bool:
        if isinstance(node, ast.BoolOp):
            values = [self._bool(v, cand, cur, out) for v in node.values]  # every check is reported
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return not self._bool(node.operand, cand, cur, out)
        assert isinstance(node, ast.Compare)
        subject = node.left.id if isinstance(node.left, ast.Name) and node.left.id != "current" else None
        text = ast.unparse(node)
        try:
            left = self._value(node.left, cand, cur, subject)
            shown = [f"{text}:"]
            ok = True
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                right = self._value(right_node, cand, cur, subject)
                symbol, compare = _COMPARE[type(op)]
                shown.append(f"{_fmt(left)} {symbol} {_fmt(right)}")
                ok = ok and compare(left, right)
                left = right
        except _NotApplicable as exc:
            out.checks.append(f"{text}: no ({exc.what} does not apply to this data)")
            return False
        except ZeroDivisionError:
            out.checks.append(f"{text}: no (division by zero)")
            return False
        out.checks.append(f"{' '.join(shown)}: {'yes' if ok else 'no'}")
        return ok

    def _value(self, node: ast.AST, cand: Mapping[str, Any], cur: Mapping[str, Any], subject: str | None) -> float:
        if isinstance(node, ast.Constant):
            return float(cast(float, node.value))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -self._value(node.operand, cand, cur, subject)
        if isinstance(node, ast.BinOp):
            return _ARITHMETIC[type(node.op)](
                self._value(node.left, cand, cur, subject), self._value(node.right, cand, cur, subject)
            )
        if isinstance(node, ast.Attribute):  # current.<metric>
            return _metric(cur, node.attr, f"current.{node.attr}")
        assert isinstance(node, ast.Name)
        if node.id == "current":
            assert subject is not None
            return _metric(cur, subject, f"current {subject}")
        return _metric(cand, node.id, node.id)


def _metric(summary: Mapping[str, Any], name: str, what: str) -> float:
    value = summary.get(name)
    if value is None:
        raise _NotApplicable(what)
    return float(value)


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def parse_gate(expression: str, field: str = "gate") -> Gate:
    """``expression`` checked (see the module docstring); :class:`InvalidInput` naming ``field`` when it is not a
    gate."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidInput("a gate is an expression over the metrics, e.g. 'tool_args_exact >= 0.9'", field=field)
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise InvalidInput(f"the gate does not parse at column {exc.offset}: {exc.msg}", field=field) from None
    _check_bool(tree.body, field)
    return Gate(expression.strip(), tree)


def _check_bool(node: ast.AST, field: str) -> None:
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check_bool(value, field)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _check_bool(node.operand, field)
    elif isinstance(node, ast.Compare):
        if not all(type(op) in _COMPARE for op in node.ops):
            raise InvalidInput(f"{ast.unparse(node)!r}: compare with < <= > >= == !=", field=field)
        subject = node.left.id if isinstance(node.left, ast.Name) and node.left.id != "current" else None
        for part in (node.left, *node.comparators):
            _check_value(part, field, subject)
    else:
        raise InvalidInput(
            f"{ast.unparse(node)!r} is not a comparison: a gate is comparisons joined by and / or / not", field=field
        )


def _check_value(node: ast.AST, field: str, subject: str | None) -> None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        _check_value(node.operand, field, subject)
    elif isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        _check_value(node.left, field, subject)
        _check_value(node.right, field, subject)
    elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "current":
        _check_metric(node.attr, field)
    elif isinstance(node, ast.Name) and node.id == "current":
        if subject is None:
            raise InvalidInput(
                "a bare 'current' needs a comparison that starts with a metric (or write current.<metric>)",
                field=field,
            )
    elif isinstance(node, ast.Name):
        _check_metric(node.id, field)
    else:
        raise InvalidInput(
            f"{ast.unparse(node)!r}: a gate may use metric names, current, numbers and + - * / only", field=field
        )


def _check_metric(name: str, field: str) -> None:
    if name not in METRIC_NAMES:
        raise InvalidInput(f"unknown metric {name!r}; the metrics are {', '.join(METRIC_NAMES)}", field=field)
