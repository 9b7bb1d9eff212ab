"""An OpenAI chat completions request body → checked options. Pure (no torch, no I/O).

Every refusal is an :class:`~tracetune.errors.InvalidInput` naming the parameter (``param`` in the OpenAI
error), e.g. ``n``, ``max_completion_tokens``, ``messages[2].tool_call_id``, ``tools[0].function.parameters``.
Messages and tool definitions are checked with the fine-tuning validator (:mod:`tracetune.chat.validate`): what
can be trained on can be served, and the other way round.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tracetune.chat.validate import validate_record
from tracetune.errors import InvalidInput

MAX_CHOICES = 16  # n
MAX_STOP = 4  # stop strings, as OpenAI
# Validator codes that concern a training record, not a request (a request ends before the assistant's reply).
_NOT_FOR_REQUESTS = frozenset({"no_assistant_message", "empty_assistant_message", "tools_and_functions"})


@dataclass(frozen=True)
class ChatOptions:
    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    functions: list[dict[str, Any]] | None
    tool_choice: Any
    function_call: Any
    parallel_tool_calls: bool | None
    response_format: dict[str, Any] | None
    n: int
    max_tokens: int | None  # None: up to the end of the context
    temperature: float
    top_p: float
    seed: int | None
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool

    @property
    def legacy(self) -> bool:
        """Calls are answered as ``function_call`` (the request offered legacy ``functions``, no ``tools``)."""
        return bool(self.functions) and not self.tools

    @property
    def parse_calls(self) -> bool:
        """The reply may hold calls: tools are offered and not switched off."""
        if not (self.tools or self.functions):
            return False
        choice = self.tool_choice if self.tools else self.function_call
        return choice != "none"

    @property
    def parallel(self) -> bool:
        return self.parallel_tool_calls is not False and not self.legacy


def read_options(body: Mapping[str, Any]) -> ChatOptions:
    """Check a request body (a JSON object) and return its options."""
    if not isinstance(body, Mapping):
        raise InvalidInput("the body must be a JSON object", field="body")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidInput("model is required (a model id)", field="model", code="missing_required_parameter")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("messages must be a non-empty list", field="messages", code="invalid_value")
    tools = _optional_list(body, "tools")
    functions = _optional_list(body, "functions")
    check_messages(messages, tools, functions)
    max_tokens = _max_tokens(body)
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise InvalidInput("stop must be a string or a list of strings", field="stop", code="invalid_type")
    if stop is not None and len(stop) > MAX_STOP:
        raise InvalidInput(f"stop takes at most {MAX_STOP} strings", field="stop", code="invalid_value")
    if body.get("logprobs") is True or body.get("top_logprobs") not in (None, 0):
        field = "logprobs" if body.get("logprobs") is True else "top_logprobs"
        raise InvalidInput("logprobs are not supported by this server", field=field, code="unsupported_parameter")
    stream = _bool(body, "stream") or False
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, Mapping):
        raise InvalidInput("stream_options must be an object", field="stream_options", code="invalid_type")
    if stream_options is not None and not stream:
        raise InvalidInput("stream_options is only allowed with stream: true", field="stream_options")
    response_format = body.get("response_format")
    if response_format is not None and not isinstance(response_format, Mapping):
        raise InvalidInput("response_format must be an object", field="response_format", code="invalid_type")
    return ChatOptions(
        model=model,
        messages=messages,
        tools=tools,
        functions=functions,
        tool_choice=body.get("tool_choice"),
        function_call=body.get("function_call"),
        parallel_tool_calls=_bool(body, "parallel_tool_calls"),
        response_format=dict(response_format) if response_format is not None else None,
        n=_int(body, "n", 1, 1, MAX_CHOICES) or 1,
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0),
        seed=_int(body, "seed", None, -(2**63), 2**63 - 1),
        stop=tuple(stop or ()),
        stream=stream,
        include_usage=bool(stream_options and stream_options.get("include_usage")),
    )


def check_messages(messages: list[Any], tools: list[Any] | None = None, functions: list[Any] | None = None) -> None:
    """The first error the fine-tuning validator finds in these messages and tool definitions, raised."""
    record: dict[str, Any] = {"messages": messages}
    if tools is not None:
        record["tools"] = tools
    if functions is not None:
        record["functions"] = functions
    for problem in validate_record(record, 0):
        if problem.level == "error" and problem.code not in _NOT_FOR_REQUESTS:
            raise InvalidInput(problem.message, field=problem.field or "messages", code=problem.code)


def _optional_list(body: Mapping[str, Any], name: str) -> list[dict[str, Any]] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"{name} must be a non-empty list", field=name, code="invalid_value")
    return value


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    """``max_completion_tokens`` (what current clients send) wins over the older ``max_tokens``."""
    found = None
    for name in ("max_tokens", "max_completion_tokens"):
        value = _int(body, name, None, 1, 2**31)
        if value is not None:
            found = value
    return found


def _int(body: Mapping[str, Any], name: str, default: int | None, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be an integer", field=name, code="invalid_type")
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}, got {value}", field=name, code="invalid_value")
    return value


def _number(body: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"{name} must be a number", field=name, code="invalid_type")
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}, got {value}", field=name, code="invalid_value")
    return float(value)


def _bool(body: Mapping[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false", field=name, code="invalid_type")
    return value
