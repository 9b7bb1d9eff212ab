"""Typed domain errors. Domain code raises these; each API surface maps them to its own error shape once."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import ValidationError
from pydantic_core.core_schema import ErrorType

MAX_MESSAGE_CHARS = 2000  # what an error body may hold at most (values are cut before that, see ``shown``)
MAX_FIELD_CHARS = 200  # a field named after user input (a multipart part's name) is cut too
_PYDANTIC_TYPES = frozenset(get_args(ErrorType))  # pydantic's own error types (a validator's custom ones are not)


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error names a bad value without echoing 100 KB of it."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


class TracetuneError(Exception):
    """Base of every error that is the caller's fault or a known condition (never a bug)."""

    status_code = 400

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        line: int | None = None,
        position: int | None = None,
        code: str | None = None,
    ) -> None:
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[:MAX_MESSAGE_CHARS] + f"… (cut at {MAX_MESSAGE_CHARS} characters)"
        if field is not None and len(field) > MAX_FIELD_CHARS:
            field = field[:MAX_FIELD_CHARS] + "…"
        super().__init__(message)
        self.message = message
        self.field = field
        self.line = line
        self.position = position
        self.code = code

    def __str__(self) -> str:
        where = []
        if self.field:
            where.append(f"field {self.field!r}")
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.position is not None:
            where.append(f"position {self.position}")
        return f"{self.message} ({', '.join(where)})" if where else self.message


class InvalidInput(TracetuneError):
    status_code = 400


class PayloadTooLarge(TracetuneError):
    status_code = 413


class Unauthorized(TracetuneError):
    status_code = 401


class Forbidden(TracetuneError):
    status_code = 403


class NotFound(TracetuneError):
    status_code = 404


class Conflict(TracetuneError):
    status_code = 409


class Unprocessable(TracetuneError):
    """A well-formed value the API does not accept (what LangSmith answers 422 for, e.g. an unknown run type)."""

    status_code = 422


class UnsupportedMediaType(TracetuneError):
    status_code = 415


class NotSupported(TracetuneError):
    """A request parameter tracetune does not implement (what LangSmith answers 501 for where it lacks a feature,
    e.g. semantic search): the message names it and says what to use instead."""

    status_code = 501


class Unavailable(TracetuneError):
    """A capability this installation lacks (a missing optional package): the message says what to install."""

    status_code = 503


def invalid_input(exc: ValidationError) -> InvalidInput:
    """A pydantic :class:`~pydantic.ValidationError` of a request body as the :class:`InvalidInput` the API
    answers: the first problem, its location as the field (``method.supervised.hyperparameters.batch_size``).
    The code is the error's own where a validator chose one (``PydanticCustomError("unsupported_method", …)``),
    ``missing_required_parameter`` for a missing field and ``invalid_value`` for pydantic's built-in checks."""
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or "body"
    kind = first["type"]
    code = "missing_required_parameter" if kind == "missing" else "invalid_value" if kind in _PYDANTIC_TYPES else kind
    message = f"{field} is required" if kind == "missing" else f"{field}: {first['msg']}"
    return InvalidInput(message, field=field, code=code)
