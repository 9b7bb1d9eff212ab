"""Graders, as OpenAI specifies them for reinforcement fine-tuning: a grader turns a model's sample (and the
dataset item it answers) into a reward in [0, 1].

Types (``grader.type``):

* ``string_check``: ``input`` against ``reference`` (both templates) with ``operation`` ``eq`` / ``ne`` (exact),
  ``like`` (``reference`` is contained in ``input``) or ``ilike`` (the same, ignoring case): 1 or 0;
* ``text_similarity``: ``evaluation_metric`` ``fuzzy_match`` — rapidfuzz's normalized Indel similarity of ``input``
  and ``reference`` (``fuzz.ratio`` / 100); ``bleu`` / ``gleu`` — NLTK's sentence BLEU (n-grams up to 4, at most
  the reference's length in words, so a short exact answer scores 1; smoothing method 1) / sentence GLEU on
  lower-cased words; ``rouge_1`` … ``rouge_5``, ``rouge_l`` — Google's ``rouge-score`` F-measure. ``meteor``
  (needs the WordNet corpus, which tracetune cannot download) and ``cosine`` (needs an embedding model) are
  refused as not supported;
* ``python``: ``source`` defines ``grade(sample, item) -> float``, run in a sandboxed subprocess
  (:mod:`tracetune.train.grader_sandbox`: a time and memory limit, no network, no files outside the interpreter);
* ``multi``: ``graders`` (a mapping of name → grader) and ``calculate_output``, an arithmetic formula over their
  names (``+ - * /``, parentheses, numbers, ``min``, ``max``, ``abs``);
* ``score_model`` / ``label_model``: ``input`` (chat messages, their contents templates) is sent to a model,
  which answers a score in ``range`` (mapped onto [0, 1]) / one of ``labels`` (1 when it is one of
  ``passing_labels``): :mod:`tracetune.train.model_graders` (the endpoint: tracetune itself, or any
  OpenAI-compatible server).

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
from tracetune.train.model_graders import MODEL_TYPES, ModelEndpoint, grade_with_model, validate_model_grader

TYPES = ("string_check", "text_similarity", "python", "score_model", "label_model", "multi")
STRING_OPERATIONS = ("eq", "ne", "like", "ilike")
METRICS = ("fuzzy_match", "bleu", "gleu", "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l")
OTHER_METRICS = ("cosine", "meteor")
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
    sampled_model: str | None = None  # a model grader's: the model that answered, and the tokens it used
    token_usage: dict[str, int] = field(default_factory=dict)


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
                f"evaluation_metric {metric!r} is not supported by tracetune; use one of {', '.join(METRICS)}",
                field=f"{where}.evaluation_metric",
                code="unsupported_grader",
            )
        if metric not in METRICS:
            raise InvalidInput(
                f"evaluation_metric must be one of {', '.join(METRICS + OTHER_METRICS)}",
                field=f"{where}.evaluation_metric",
            )
    elif kind in MODEL_TYPES:
        validate_model_grader(grader, where, _check_template)
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
    grader: Mapping[str, Any],
    model_sample: str,
    item: Any = None,
    *,
    tools: list[dict[str, Any]] | None = None,
    endpoint: ModelEndpoint | None = None,
) -> GradeResult:
    """The reward of ``model_sample`` (its text; ``tools``: the tool calls the answer made, OpenAI-shaped) for
    ``item`` (validate the grader first: :func:`validate_grader`); model graders ask ``endpoint``."""
    started = time.perf_counter()
    result = GradeResult(0.0, str(grader.get("name", "")), str(grader.get("type", "")))
    sample = {"output_text": model_sample, "output_json": _json_or_none(model_sample), "output_tools": tools or []}
    context: dict[str, Any] = {"item": item if item is not None else {}, "sample": sample, "endpoint": endpoint}
    try:
        if grader["type"] == "multi":
            for key, inner in grader["graders"].items():
                result.sub_rewards[key] = _reward(inner, context, result)
            value = _formula(grader["calculate_output"], set(result.sub_rewards), "grader.calculate_output")(
                result.sub_rewards
            )
            result.reward = _clamp(value)
        else:
            result.reward = _reward(grader, context, result)
    except RunError as exc:
        result.reward = 0.0
        result.errors[exc.flag] = True
        if exc.detail_key:
            result.errors[exc.detail_key] = exc.message
        else:
            result.errors["details"] = exc.message
    result.execution_time = round(time.perf_counter() - started, 4)
    return result


def _reward(grader: Mapping[str, Any], context: dict[str, Any], result: GradeResult) -> float:
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
        given, reference = _render(grader["input"], context), _render(grader["reference"], context)
        return similarity(grader["evaluation_metric"], given, reference)
    if kind == "python":
        return _clamp(run_python_grader(grader["source"], context["sample"], context["item"]))
    if kind in MODEL_TYPES:
        graded = grade_with_model(grader, lambda text: _render(text, context), context["endpoint"])
        result.sampled_model = graded.model
        if graded.usage:
            for key, n in graded.usage.items():
                if isinstance(n, int):
                    result.token_usage[key] = result.token_usage.get(key, 0) + n
        return graded.reward
    raise RunError("other_error", f"grader type {kind!r} cannot run here")


def similarity(metric: str, given: str, reference: str) -> float:
    """``given`` against ``reference`` by a text_similarity ``metric`` (see the module docstring), in [0, 1]."""
    if metric == "fuzzy_match":
        from rapidfuzz import fuzz

        return float(fuzz.ratio(given, reference)) / 100.0
    if metric in ("bleu", "gleu"):
        words, reference_words = given.lower().split(), reference.lower().split()
        if not words or not reference_words:
            return float(words == reference_words)
        if metric == "gleu":
            from nltk.translate.gleu_score import sentence_gleu

            return float(sentence_gleu([reference_words], words))
        from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

        n = min(4, len(reference_words))
        score = sentence_bleu(
            [reference_words], words, weights=[1.0 / n] * n, smoothing_function=SmoothingFunction().method1
        )
        return float(score)
    from rouge_score import rouge_scorer

    kind = "rougeL" if metric == "rouge_l" else f"rouge{metric[-1]}"
    return float(rouge_scorer.RougeScorer([kind]).score(reference, given)[kind].fmeasure)


def _template(grader: Mapping[str, Any], key: str, where: str) -> None:
    value = grader.get(key)
    if not isinstance(value, str):
        raise InvalidInput(f"{key} must be a string (a template)", field=f"{where}.{key}")
    _check_template(value, f"{where}.{key}")


def _check_template(value: str, field: str) -> None:
    for match in _TEMPLATE.finditer(value):
        path = _PATH.match(match.group(1))
        if path is None:
            raise InvalidInput(
                f"template {match.group(0)!r} must name item.<field> or sample.<{' | '.join(_SAMPLE_FIELDS)}>",
                field=field,
            )
        parts = path.group(2).split(".")[1:]
        if path.group(1) == "sample" and (not parts or parts[0] not in _SAMPLE_FIELDS):
            raise InvalidInput(f"template {match.group(0)!r}: a sample has {', '.join(_SAMPLE_FIELDS)}", field=field)


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


def run_request(body: Any, endpoint: ModelEndpoint | None = None) -> GradeResult:
    """``POST /v1/fine_tuning/alpha/graders/run``: ``{"grader", "model_sample", "item"?}`` checked, then graded
    (model graders ask ``endpoint``)."""
    if not isinstance(body, Mapping):
        raise InvalidInput("the body must be a JSON object", field="body")
    grader = validate_grader(body.get("grader"))
    sample = body.get("model_sample")
    if not isinstance(sample, str):
        raise InvalidInput("model_sample must be a string: the model's answer to grade", field="model_sample")
    item = body.get("item")
    if item is not None and not isinstance(item, Mapping):
        raise InvalidInput("item must be an object: the dataset item the sample answers", field="item")
    return run_grader(grader, sample, item, endpoint=endpoint)


def run_response(result: GradeResult) -> dict[str, Any]:
    """The answer of ``graders/run``, shaped as OpenAI's ``GraderRunResponse``."""
    errors: dict[str, Any] = {flag: bool(result.errors.get(flag)) for flag in ERROR_FLAGS}
    errors["model_grader_server_error_details"] = result.errors.get("model_grader_server_error_details")
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
            "token_usage": result.token_usage.get("total_tokens"), "sampled_model_name": result.sampled_model,
        },
        "sub_rewards": dict(result.sub_rewards),
        "model_grader_token_usage_per_model": (
            {result.sampled_model: _usage(result.token_usage)} if result.sampled_model and result.token_usage else {}
        ),
    }  # fmt: skip


def _usage(usage: Mapping[str, int]) -> dict[str, int] | None:
    """OpenAI's grader token usage (``prompt_tokens``, ``completion_tokens``, ``total_tokens``,
    ``cached_tokens``) of a chat completion's ``usage``."""
    if not usage:
        return None
    return {
        "prompt_tokens": usage.get("prompt_tokens", 0), "completion_tokens": usage.get("completion_tokens", 0),
        "total_tokens": usage.get("total_tokens", 0), "cached_tokens": 0,
    }  # fmt: skip


def validate_request(body: Any) -> dict[str, Any]:
    """``POST /v1/fine_tuning/alpha/graders/validate``: ``{"grader"}`` checked; ``{"grader": …}`` back."""
    if not isinstance(body, Mapping):
        raise InvalidInput("the body must be a JSON object", field="body")
    return {"grader": validate_grader(body.get("grader"))}
