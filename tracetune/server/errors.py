"""Error mapping, once per surface: domain errors and validation errors become ``{"detail": …}`` (LangSmith, the
UI's APIs) or OpenAI's ``{"error": {…}}`` under ``/v1``; a missing optional package is a 503; a 500 never leaks a
traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tracetune.capabilities import unavailable
from tracetune.errors import TracetuneError
from tracetune.store.engine import is_retryable

log = logging.getLogger("tracetune.server")


def _langsmith_detail(exc: TracetuneError) -> str:
    return str(exc)


def validation_message(exc: RequestValidationError) -> str:
    problems = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":  # loc is ("body", <character offset>)
            where = err.get("loc", ())[-1]
            reason = (err.get("ctx") or {}).get("error") or err.get("msg")
            problems.append(f"malformed JSON at position {where}: {reason} (field 'body', position {where})")
            continue
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        problems.append(f"{loc or 'body'}: {err.get('msg')}")
    return "; ".join(problems)


OPENAI_PREFIX = "/v1"

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
}


def is_openai(request: Request) -> bool:
    """Whether ``request`` is on the OpenAI-compatible surface (which has its own error shape)."""
    path = request.url.path
    return path == OPENAI_PREFIX or path.startswith(OPENAI_PREFIX + "/")


def openai_error(
    status: int, message: str, *, param: str | None = None, code: str | None = None, headers: Any = None
) -> Response:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_param(exc: RequestValidationError) -> tuple[str | None, str | None]:
    """The field (``param``) and pydantic error type (``code``) of the first validation problem."""
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        if err.get("type") == "json_invalid":
            return "body", "invalid_json"
        return (".".join(loc) or None), err.get("type")
    return None, None


def install_error_handlers(app: FastAPI) -> None:
    """Domain errors → their status with the surface's error shape: ``{"error": {…}}`` under ``/v1`` (OpenAI),
    ``{"detail": message}`` everywhere else; a 500 never leaks a traceback."""

    @app.exception_handler(TracetuneError)
    async def _domain(request: Request, exc: TracetuneError) -> Response:
        if is_openai(request):
            return openai_error(exc.status_code, str(exc), param=exc.field, code=exc.code)
        return JSONResponse({"detail": _langsmith_detail(exc)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        if is_openai(request):
            param, code = _validation_param(exc)
            return openai_error(400, validation_message(exc), param=param, code=code)
        return JSONResponse({"detail": validation_message(exc)}, status_code=422)

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> Response:
        # The database refused a value the validation let through (e.g. NUL in a PostgreSQL text, an integer
        # out of range in a query): the caller's input, not a server fault.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        log.info("refused a value on %s %s: %s", request.method, request.url.path, reason)
        message = f"the database cannot store or compare a value of this request: {reason}"
        with_nul = sorted({k for k, v in request.query_params.multi_items() if "\x00" in v or "\x00" in k})
        if with_nul or "\x00" in request.url.path:
            where = ", ".join(f"'{k}'" for k in with_nul) or "the path"
            message = f"text may not contain NUL (\\u0000) characters (field {where})"
        if is_openai(request):
            return openai_error(400, message)
        return JSONResponse({"detail": message}, status_code=400)

    @app.exception_handler(OperationalError)
    async def _operational(request: Request, exc: OperationalError) -> Response:
        if not is_retryable(exc):
            return await _bug(request, exc)
        # Still losing the race after the store's own retries (``Database.write_retrying``): nothing was written.
        log.warning("gave up on %s %s after repeated deadlocks: %s", request.method, request.url.path, exc.orig)
        message = "the database was too busy with conflicting writes; nothing was stored, send the request again"
        headers = {"Retry-After": "1"}
        if is_openai(request):
            return openai_error(503, message, headers=headers)
        return JSONResponse({"detail": message}, status_code=503, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if is_openai(request):
            if exc.status_code == 404 and exc.detail == "Not Found":  # no route matched
                message = f"Invalid URL ({request.method} {request.url.path})"
                return openai_error(404, message, code="unknown_url", headers=exc.headers)
            return openai_error(exc.status_code, str(exc.detail), headers=exc.headers)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(ModuleNotFoundError)
    async def _missing(request: Request, exc: ModuleNotFoundError) -> Response:
        error = unavailable(exc)
        if error is None:
            return await _bug(request, exc)
        log.warning("%s %s: %s", request.method, request.url.path, error.message)
        return await _domain(request, error)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.url.path)
        message = "internal server error (see the server log)"
        if is_openai(request):
            return openai_error(500, message)
        return JSONResponse({"detail": message}, status_code=500)
