"""Graders, as OpenAI specifies them for reinforcement fine-tuning: a grader turns a model's sample (and the
dataset item it answers) into a reward in [0, 1].

Types (``grader.type``):

* ``string_check``: ``input`` against ``reference`` (both templates) with ``operation`` ``eq`` / ``ne`` (exact),
  ``like`` (``reference`` is contained in ``input``) or ``ilike`` (the same, ignoring case): 1 or 0;
* ``text_similarity``: ``evaluation_metric`` ``fuzzy_match`` — rapidfuzz's normalized Indel similarity of ``input``
  and ``reference`` (``fuzz.ratio`` / 100). The other metrics (``bleu``, ``rouge_*``, ``meteor``, ``gleu``,
  ``cosine``) are refused as not supported yet;
* ``python``: ``source`` defines ``grade(sample, item) -> float``, run in a sandboxed subprocess
  (:mod:`tracetune.train.grader_sandbox`: a time and memory limit, no network, no files outside the interpreter);
* ``multi``: ``graders`` (a mapping of name → grader) and ``calculate_output``, an arithmetic formula over their
  names (``+ - * /``, parentheses, numbers, ``min``, ``max``, ``abs``);
* ``score_model`` and ``label_model`` are refused as not supported yet.

Templates: ``{{item.<key>…}}`` (the dataset item: a line of the training file without its ``messages``) and
``{{sample.output_text}}`` / ``{{sample.output_json.<key>…}}`` (the sample's text, parsed as JSON) /
``{{sample.output_tools.<n>.function.arguments}}`` (the tool calls the sample made). Everything a
grader can get wrong *before* it runs (an unknown type, a missing field, a template naming another namespace, a
formula naming no grader, Python that does not compile or defines no ``grade``) is an :class:`InvalidInput` naming
the field (``grader.input``, ``grader.graders.b.source``…): :func:`validate_grader`. What goes wrong *while* it runs
(an item key that is not there, a Python grader that raises, loops past its time or reaches for the network) is a
reward of 0 with the error in :class:`GradeResult` ``errors``, as OpenAI reports it.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tracetune.errors import InvalidInput
from tracetune.train.grader_sandbox import RunError, check_source, run_python_grader

TYPES = ("string_check", "text_similarity", "python", "score_model", "label_model", "multi")
NOT_YET = {
    "score_model": "score_model graders are not supported by tracetune yet",
    "label_model": "label_model graders are not supported by tracetune yet",
}
STRING_OPERATIONS = ("eq", "ne", "like", "ilike")
METRICS = ("fuzzy_match",)
OTHER_METRICS = ("cosine", "bleu", "gleu", "meteor", "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l")
_TEMPLATE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_PATH = re.compile(r"^(item|sample)((?:\.[A-Za-z0-9_\-]+)*)$")
_SAMPLE_FIELDS = ("output_text", "output_json", "output_tools")
_FORMULA_FUNCTIONS: dict[str, Callable[..., float]] = {"min": min, "max": max, "abs": abs}
_FORMULA_OPERATORS: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


@dataclass
class GradeResult:
    """A grader's reward for one sample, its graders' rewards (``multi``) and what went wrong while it ran."""

    reward: float
    name: str
    type: str
    sub_rewards: dict[str, float] = field(default_factory=dict)
    errors: dict[str, Any] = field(default_factory=dict)  # OpenAI's metadata.errors flags that were raised
    execution_time: float = 0.0


def validate_grader(grader: Any, where: str = "grader") -> dict[str, Any]:
    """``grader`` checked before anything runs; the grader itself. Raises :class:`InvalidInput` naming the field
    (code ``invalid_value``; ``unsupported_grader`` for what tracetune cannot run yet)."""
    try:
        return _validated(grader, where)
    except InvalidInput as exc:
        exc.code = exc.code or "invalid_value"
        raise


def _validated(grader: Any, where: str) -> dict[str, Any]:
    if not isinstance(grader, Mapping):
        raise InvalidInput("a grader must be an object with a type", field=where)
    kind = grader.get("type")
    if kind not in TYPES:
        raise InvalidInput(f"unknown grader type {kind!r}; expected one of {', '.join(TYPES)}", field=f"{where}.type")
    if kind in NOT_YET:
        raise InvalidInput(NOT_YET[kind], field=f"{where}.type", code="unsupported_grader")
    name = grader.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput("a grader needs a name", field=f"{where}.name")
    if kind == "string_check":
        for key in ("input", "reference"):
            _template(grader, key, where)
        if grader.get("operation") not in STRING_OPERATIONS:
            raise InvalidInput(f"operation must be one of {', '.join(STRING_OPERATIONS)}", field=f"{where}.operation")
    elif kind == "text_similarity":
        for key in ("input", "reference"):
            _template(grader, key, where)
        metric = grader.get("evaluation_metric")
        if metric in OTHER_METRICS:
            raise InvalidInput(
                f"evaluation_metric {metric!r} is not supported by tracetune yet; use fuzzy_match",
                field=f"{where}.evaluation_metric",
                code="unsupported_grader",
            )
        if metric not in METRICS:
            raise InvalidInput(
                f"evaluation_metric must be one of {', '.join(METRICS + OTHER_METRICS)}",
                field=f"{where}.evaluation_metric",
            )
    elif kind == "python":
        source = grader.get("source")
        if not isinstance(source, str) or not source.strip():
            raise InvalidInput("source must be Python code defining grade(sample, item)", field=f"{where}.source")
        problem = check_source(source)
        if problem:
            raise InvalidInput(problem, field=f"{where}.source")
    elif kind == "multi":
        graders = grader.get("graders")
        if not isinstance(graders, Mapping) or not graders:
            raise InvalidInput("graders must be an object of named graders", field=f"{where}.graders")
        for key, inner in graders.items():
            if isinstance(inner, Mapping) and inner.get("type") == "multi":
                raise InvalidInput("a multi grader cannot hold another", field=f"{where}.graders.{key}.type")
            _validated(inner, f"{where}.graders.{key}")
        formula = grader.get("calculate_output")
        if not isinstance(formula, str) or not formula.strip():
            raise InvalidInput(
                "calculate_output must be a formula over the graders' names", field=f"{where}.calculate_output"
            )
        _formula(formula, set(graders), f"{where}.calculate_output")
    return dict(grader)


def run_grader(
    grader: Mapping[str, Any], model_sample: str, item: Any = None, *, tools: list[dict[str, Any]] | None = None
) -> GradeResult:
    """The reward of ``model_sample`` (its text; ``tools``: the tool calls the answer made, OpenAI-shaped) for
    ``item`` (validate the grader first: :func:`validate_grader`)."""
    started = time.perf_counter()
    result = GradeResult(0.0, str(grader.get("name", "")), str(grader.get("type", "")))
    sample = {"output_text": model_sample, "output_json": _json_or_none(model_sample), "output_tools": tools or []}
    context = {"item": item if item is not None else {}, "sample": sample}
    try:
        if grader["type"] == "multi":
            for key, inner in grader["graders"].items():
                result.sub_rewards[key] = _reward(inner, context)
            value = _formula(grader["calculate_output"], set(result.sub_rewards), "grader.calculate_output")(
                result.sub_rewards
            )
            result.reward = _clamp(value)
        else:
            result.reward = _reward(grader, context)
    except RunError as exc:
        result.reward = 0.0
        result.errors[exc.flag] = True
        if exc.detail_key:
            result.errors[exc.detail_key] = exc.message
        else:
            result.errors["details"] = exc.message
    result.execution_time = round(time.perf_counter() - started, 4)
    return result


def _reward(grader: Mapping[str, Any], context: dict[str, Any]) -> float:
    kind = grader["type"]
    if kind == "string_check":
        given, reference = _render(grader["input"], context), _render(grader["reference"], context)
        operation = grader["operation"]
        if operation == "eq":
            return float(given == reference)
        if operation == "ne":
            return float(given != reference)
        if operation == "like":
            return float(reference in given)
        return float(reference.lower() in given.lower())
    if kind == "text_similarity":
        from rapidfuzz import fuzz

        return float(fuzz.ratio(_render(grader["input"], context), _render(grader["reference"], context))) / 100.0
    if kind == "python":
        return _clamp(run_python_grader(grader["source"], context["sample"], context["item"]))
    raise RunError("other_error", f"grader type {kind!r} cannot run here")


def _template(grader: Mapping[str, Any], key: str, where: str) -> None:
    value = grader.get(key)
    if not isinstance(value, str):
        raise InvalidInput(f"{key} must be a string (a template)", field=f"{where}.{key}")
    for match in _TEMPLATE.finditer(value):
        path = _PATH.match(match.group(1))
        if path is None:
            raise InvalidInput(
                f"template {match.group(0)!r} must name item.<field> or sample.<{' | '.join(_SAMPLE_FIELDS)}>",
                field=f"{where}.{key}",
            )
        parts = path.group(2).split(".")[1:]
        if path.group(1) == "sample" and (not parts or parts[0] not in _SAMPLE_FIELDS):
            raise InvalidInput(
                f"template {match.group(0)!r}: a sample has {', '.join(_SAMPLE_FIELDS)}", field=f"{where}.{key}"
            )


def _render(template: str, context: dict[str, Any]) -> str:
    def value(match: re.Match[str]) -> str:
        namespace, *parts = match.group(1).split(".")
        current: Any = context[namespace]
        for part in parts:
            if isinstance(current, Mapping) and part in current:
                current = current[part]
            elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
                current = current[int(part)]
            else:
                raise RunError("invalid_variable_error", f"{match.group(0)}: no {part!r} in {namespace}")
        return current if isinstance(current, str) else json.dumps(current, ensure_ascii=False)

    return _TEMPLATE.sub(value, template)


def _formula(text: str, names: set[str], where: str) -> Callable[[Mapping[str, float]], float]:
    """``calculate_output`` parsed once: a function of the graders' rewards. Only arithmetic is allowed."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise InvalidInput(f"calculate_output {text!r} is not a formula", field=where) from None

    def check(node: ast.AST) -> None:
        if isinstance(node, ast.Expression):
            check(node.body)
        elif isinstance(node, ast.BinOp) and type(node.op) in _FORMULA_OPERATORS:
            check(node.left)
            check(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            check(node.operand)
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool)
        ):
            pass
        elif isinstance(node, ast.Name):
            if node.id not in names:
                raise InvalidInput(
                    f"calculate_output names {node.id!r}, which is none of the graders ({', '.join(sorted(names))})",
                    field=where,
                )
        elif (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FORMULA_FUNCTIONS
            and node.args and not node.keywords
        ):  # fmt: skip
            for arg in node.args:
                check(arg)
        else:
            raise InvalidInput(
                f"calculate_output may use the graders' names, numbers, + - * / and min, max, abs; not "
                f"{ast.unparse(node)!r}",
                field=where,
            )

    check(tree)

    def evaluate(node: ast.AST, rewards: Mapping[str, float]) -> float:
        if isinstance(node, ast.Expression):
            return evaluate(node.body, rewards)
        if isinstance(node, ast.BinOp):
            left, right = evaluate(node.left, rewards), evaluate(node.right, rewards)
            if isinstance(node.op, ast.Div) and right == 0:
                raise RunError("formula_parse_error", f"calculate_output {text!r} divides by zero")
            return _FORMULA_OPERATORS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp):
            value = evaluate(node.operand, rewards)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Constant):
            return float(node.value)  # type: ignore[arg-type]  # a number: checked when parsed
        if isinstance(node, ast.Name):
            return float(rewards[node.id])
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        return float(_FORMULA_FUNCTIONS[node.func.id](*(evaluate(a, rewards) for a in node.args)))

    return lambda rewards: evaluate(tree, rewards)


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _clamp(value: float) -> float:
    if not math.isfinite(value):
        raise RunError("other_error", f"the grader gave {value}, not a number in [0, 1]")
    return min(1.0, max(0.0, float(value)))


# OpenAI's metadata.errors flags (every one is reported, false unless it was raised)
ERROR_FLAGS = (
    "formula_parse_error", "invalid_variable_error", "model_grader_parse_error", "model_grader_refusal_error",
    "model_grader_server_error", "other_error", "python_grader_runtime_error", "python_grader_server_error",
    "sample_parse_error", "truncated_observation_error", "unresponsive_reward_error",
)  # fmt: skip


def run_request(body: Any) -> GradeResult:
    """``POST /v1/fine_tuning/alpha/graders/run``: ``{"grader", "model_sample", "item"?}`` checked, then graded."""
    if not isinstance(body, Mapping):
        raise InvalidInput("the body must be a JSON object", field="body")
    grader = validate_grader(body.get("grader"))
    sample = body.get("model_sample")
    if not isinstance(sample, str):
        raise InvalidInput("model_sample must be a string: the model's answer to grade", field="model_sample")
    item = body.get("item")
    if item is not None and not isinstance(item, Mapping):
        raise InvalidInput("item must be an object: the dataset item the sample answers", field="item")
    return run_grader(grader, sample, item)


def run_response(result: GradeResult) -> dict[str, Any]:
    """The answer of ``graders/run``, shaped as OpenAI's ``GraderRunResponse``."""
    errors: dict[str, Any] = {flag: bool(result.errors.get(flag)) for flag in ERROR_FLAGS}
    errors["model_grader_server_error_details"] = None
    errors["python_grader_runtime_error_details"] = result.errors.get("python_grader_runtime_error_details")
    errors["python_grader_server_error_type"] = None
    details = result.errors.get("details")
    if details:  # a fault with no details field of its own in OpenAI's shape
        errors["details"] = details
    return {
        "reward": result.reward,
        "metadata": {
            "name": result.name, "type": result.type, "errors": errors, "execution_time": result.execution_time,
            "scores": dict(result.sub_rewards) if result.sub_rewards else {result.name: result.reward},
            "token_usage": None, "sampled_model_name": None,
        },
        "sub_rewards": dict(result.sub_rewards),
        "model_grader_token_usage_per_model": {},
    }  # fmt: skip


def validate_request(body: Any) -> dict[str, Any]:
    """``POST /v1/fine_tuning/alpha/graders/validate``: ``{"grader"}`` checked; ``{"grader": …}`` back."""
    if not isinstance(body, Mapping):
        raise InvalidInput("the body must be a JSON object", field="body")
    return {"grader": validate_grader(body.get("grader"))}
