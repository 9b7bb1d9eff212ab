"""The wire shapes of ``POST /v1/chat/completions``: the request, validated once, and the answer's typed dicts.

:class:`ChatCompletionRequest` is the one shape a chat request takes from the route to the engine: pydantic checks
types and ranges (a 400 naming the field, e.g. ``temperature``), then :meth:`~ChatCompletionRequest._in_context`
checks what needs the whole request — messages and tool definitions with the fine-tuning validator
(:mod:`tracetune.chat.validate`: what can be trained on can be served, and the other way round), ``logprobs``,
``stream_options`` — raising :class:`~tracetune.errors.InvalidInput` naming the parameter (``param`` in the OpenAI
error), e.g. ``messages[2].tool_call_id`` or ``tools[0].function.parameters``. Unknown fields are accepted (real
SDKs send more). Pure: no torch, no I/O.

The answer is built as the TypedDicts below (checked by mypy, not at run time); the tests hold it to the openai
package's own ``ChatCompletion`` / ``ChatCompletionChunk`` types.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from tracetune.chat.types import FunctionCall, ToolCall
from tracetune.chat.validate import validate_record
from tracetune.errors import InvalidInput

MAX_CHOICES = 16  # n
MAX_STOP = 4  # stop strings, as OpenAI
# Validator codes that concern a training record, not a request (a request ends before the assistant's reply).
_NOT_FOR_REQUESTS = frozenset({"no_assistant_message", "empty_assistant_message", "tools_and_functions"})


class ChatStreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool | None = None


class ChatCompletionRequest(BaseModel):
    """The body of ``POST /v1/chat/completions``."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[dict[str, Any]] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = Field(default=None, min_length=1)
    tool_choice: Any = Field(default=None, description='"none" | "auto" | "required" | {"type": "function", …}')
    functions: list[dict[str, Any]] | None = Field(default=None, min_length=1)
    function_call: Any = Field(default=None, description='"none" | "auto" | {"name": …}')
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2, allow_inf_nan=False)
    top_p: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    max_tokens: int | None = Field(default=None, ge=1, le=2**31)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=2**31)
    stop: list[str] | None = Field(default=None, description=f"a string or up to {MAX_STOP} strings")
    n: int | None = Field(default=None, ge=1, le=MAX_CHOICES)
    stream: bool | None = None
    stream_options: ChatStreamOptions | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    user: str | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_strings(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        if value is not None and not (isinstance(value, list) and all(isinstance(s, str) for s in value)):
            raise PydanticCustomError("invalid_type", "stop must be a string or a list of strings")
        if value is not None and len(value) > MAX_STOP:
            raise PydanticCustomError("invalid_value", f"stop takes at most {MAX_STOP} strings")
        return value

    @model_validator(mode="after")
    def _in_context(self) -> ChatCompletionRequest:
        check_messages(self.messages, self.tools, self.functions)
        if self.logprobs is True or self.top_logprobs not in (None, 0):
            field = "logprobs" if self.logprobs is True else "top_logprobs"
            raise InvalidInput("logprobs are not supported by this server", field=field, code="unsupported_parameter")
        if self.stream_options is not None and not self.stream:
            raise InvalidInput("stream_options is only allowed with stream: true", field="stream_options")
        return self

    # -- what the serving class reads ---------------------------------------------------------------------------

    @property
    def choices(self) -> int:
        return self.n or 1

    @property
    def completion_limit(self) -> int | None:
        """``max_completion_tokens`` (what current clients send) wins over the older ``max_tokens``; None: up to the
        end of the context."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

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


# -- the answer ----------------------------------------------------------------------------------------------------

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


class AssistantMessage(TypedDict):
    role: Literal["assistant"]
    content: str | None
    refusal: None
    tool_calls: NotRequired[list[ToolCall]]
    function_call: NotRequired[FunctionCall]


class Choice(TypedDict):
    index: int
    message: AssistantMessage
    logprobs: None
    finish_reason: str


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(TypedDict):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[Choice]
    usage: Usage


class ChunkChoice(TypedDict):
    index: int
    delta: dict[str, Any]  # see tracetune.serve.chat_stream
    logprobs: None
    finish_reason: str | None


class ChatCompletionChunk(TypedDict):
    """One ``data:`` event of a streamed answer (the last may have no choices and carry ``usage``)."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChunkChoice]
    usage: NotRequired[Usage]
