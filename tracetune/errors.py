"""Typed domain errors. Domain code raises these; each API surface maps them to its own error shape once."""

from __future__ import annotations


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
