"""Pure functions: a run's token usage, wherever its client put it, in LangSmith's ``UsageMetadata`` form, and
the token-detail and cost fields LangSmith fills from it on read.

Sources, first found wins: ``extra.metadata.usage_metadata`` (the SDK's ``@traceable`` / wrappers),
``outputs.usage_metadata``, the first generation's message ``usage_metadata`` (LangChain chat models),
``outputs.llm_output.token_usage`` and ``outputs.usage`` (OpenAI's names). Costs come from the usage itself
(``input_cost``/``output_cost``/``total_cost`` and their details, as the SDK lets apps report them) or, when it
has none, from the configured price table (``TRACETUNE_MODEL_PRICES``: USD per million input and output tokens,
by model name as the run names it: ``extra.metadata.ls_model_name``, the invocation params' ``model``, or
``llm_output.model_name``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# (usage dict, its input key, output key, total key); OpenAI's names are mapped onto LangSmith's
_OPENAI_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")
_LANGSMITH_KEYS = ("input_tokens", "output_tokens", "total_tokens")


def _dict(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _first_message_usage(outputs: Mapping[str, Any]) -> Any:
    gens = outputs.get("generations")
    while isinstance(gens, list) and gens:  # [[gen]] (batched) or [gen] (flat)
        gens = gens[0]
    gen = _dict(gens)
    message = _dict(gen.get("message")) if gen else None
    if message is None:
        return None
    kwargs = _dict(message.get("kwargs")) or message  # a serialized LangChain message, or a plain one
    return kwargs.get("usage_metadata")


def _located(outputs: Any, extra: Any) -> tuple[Mapping[str, Any], tuple[str, str, str]] | None:
    """The first usage dict found (see the module docstring) and the names of its three counts."""
    ex = _dict(extra)
    meta = _dict(ex.get("metadata")) if ex is not None else None
    if meta is not None:
        found = _dict(meta.get("usage_metadata"))
        if found is not None and isinstance(found.get("total_tokens"), int):
            return found, _LANGSMITH_KEYS
    out = _dict(outputs)
    if out is None:
        return None
    for source, keys in _OUTPUT_SOURCES:  # looked up lazily, in order
        found = _dict(source(out))
        if found is not None and isinstance(found.get(keys[2]), int):
            return found, keys
    return None


def _token_usage(out: Mapping[str, Any]) -> Any:
    llm_output = _dict(out.get("llm_output"))
    return llm_output.get("token_usage") if llm_output is not None else None


_OUTPUT_SOURCES: tuple[tuple[Any, tuple[str, str, str]], ...] = (
    (lambda out: out.get("usage_metadata"), _LANGSMITH_KEYS),
    (_first_message_usage, _LANGSMITH_KEYS),
    (_token_usage, _OPENAI_KEYS),
    (lambda out: out.get("usage"), _OPENAI_KEYS),
)


def usage_counts(outputs: Any, extra: Any) -> tuple[Any, Any, int] | None:
    """(input, output, total) tokens of the run's usage, or None (ingest's token columns)."""
    located = _located(outputs, extra)
    if located is None:
        return None
    found, (i, o, t) = located
    return found.get(i), found.get(o), found[t]


def find_usage(outputs: Any, extra: Any) -> dict[str, Any] | None:
    """The run's usage as ``{"input_tokens", "output_tokens", "total_tokens", …details, …costs}`` (None if none)."""
    located = _located(outputs, extra)
    if located is None:
        return None
    found, (i, o, t) = located
    normal = dict(found)
    normal.update(input_tokens=found.get(i), output_tokens=found.get(o), total_tokens=found[t])
    if i == "prompt_tokens":  # OpenAI's details → LangSmith's (cached_tokens → cache_read)
        details = _dict(found.get("prompt_tokens_details"))
        if details and isinstance(details.get("cached_tokens"), int):
            normal.setdefault("input_token_details", {"cache_read": details["cached_tokens"]})
        details = _dict(found.get("completion_tokens_details"))
        if details and isinstance(details.get("reasoning_tokens"), int):
            normal.setdefault("output_token_details", {"reasoning": details["reasoning_tokens"]})
    return normal


def model_name(outputs: Any, extra: Any) -> str | None:
    """The model a run says it called (what a price table is keyed by)."""
    ex = _dict(extra) or {}
    meta = _dict(ex.get("metadata")) or {}
    params = _dict(ex.get("invocation_params")) or {}
    llm_output = _dict((_dict(outputs) or {}).get("llm_output")) or {}
    for value in (
        meta.get("ls_model_name"),
        params.get("model"),
        params.get("model_name"),
        llm_output.get("model_name"),
    ):
        if isinstance(value, str) and value:
            return value
    return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _details(value: Any, kind: Any) -> dict[str, Any] | None:
    found = _dict(value)
    if not found:
        return None
    kept = {k: v for k, v in found.items() if isinstance(v, kind) and not isinstance(v, bool)}
    return kept or None


def usage_fields(outputs: Any, extra: Any, prices: Mapping[str, tuple[float, float]] | None = None) -> dict[str, Any]:
    """The run object's ``prompt_token_details``, ``completion_token_details``, ``prompt_cost``,
    ``completion_cost``, ``total_cost``, ``prompt_cost_details``, ``completion_cost_details`` (None where unknown)."""
    usage = find_usage(outputs, extra) or {}
    fields: dict[str, Any] = {
        "prompt_token_details": _details(usage.get("input_token_details"), int),
        "completion_token_details": _details(usage.get("output_token_details"), int),
        "prompt_cost": _number(usage.get("input_cost")),
        "completion_cost": _number(usage.get("output_cost")),
        "total_cost": _number(usage.get("total_cost")),
        "prompt_cost_details": _details(usage.get("input_cost_details"), int | float),
        "completion_cost_details": _details(usage.get("output_cost_details"), int | float),
    }
    if fields["prompt_cost"] is None and fields["completion_cost"] is None and fields["total_cost"] is None:
        price = (prices or {}).get(model_name(outputs, extra) or "")
        tokens_in, tokens_out = usage.get("input_tokens"), usage.get("output_tokens")
        if price is not None and isinstance(tokens_in, int) and isinstance(tokens_out, int):
            fields["prompt_cost"] = tokens_in * price[0] / 1e6
            fields["completion_cost"] = tokens_out * price[1] / 1e6
    if fields["total_cost"] is None and (fields["prompt_cost"] is not None or fields["completion_cost"] is not None):
        fields["total_cost"] = (fields["prompt_cost"] or 0.0) + (fields["completion_cost"] or 0.0)
    return fields
