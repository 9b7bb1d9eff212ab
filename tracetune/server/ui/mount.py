"""Mounting the web UI on the app: its pages, ``/static``, and HTML error pages for UI paths."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from tracetune.errors import InvalidInput, NotFound, TracetuneError, Unauthorized
from tracetune.server.errors import validation_message
from tracetune.server.ui import automations, dataset_records, datasets, jobs, models, playground, queues, runs
from tracetune.server.ui.pages import UI_DIR, LoginRequired, is_ui, render, router, see_other


def mount_ui(app: FastAPI) -> None:
    """Serve the UI from ``app``: its pages, ``/static`` and HTML error pages for UI paths (the APIs keep theirs).
    Call after the API routers are included (the UI's paths never overlap theirs)."""
    app.mount("/static", StaticFiles(directory=str(UI_DIR / "static")), name="static")
    app.include_router(router)
    for module in (runs, queues, datasets, dataset_records, jobs, models, playground, automations):
        app.include_router(module.router)
    api_handler: Any = app.exception_handlers[TracetuneError]

    async def login_required(request: Request, exc: Exception) -> Response:
        target = f"/login?next={quote(str(request.url.path) + ('?' + request.url.query if request.url.query else ''))}"
        response = see_other(target)
        response.headers["HX-Redirect"] = target  # an htmx request follows with a full page load
        return response

    async def domain_error(request: Request, exc: Exception) -> Response:
        if not is_ui(request):
            return await api_handler(request, exc)
        assert isinstance(exc, TracetuneError)
        if isinstance(exc, Unauthorized):
            return await login_required(request, exc)
        return render(request, "error.html", status_code=exc.status_code, error=exc)

    api_validation: Any = app.exception_handlers[RequestValidationError]
    api_http: Any = app.exception_handlers[StarletteHTTPException]

    async def bad_request(request: Request, exc: Exception) -> Response:
        """A malformed path or query (``/projects/not-a-uuid``): the error page, not the API's JSON."""
        if not is_ui(request):
            return await api_validation(request, exc)
        assert isinstance(exc, RequestValidationError)
        in_path = any((e.get("loc") or ("",))[0] == "path" for e in exc.errors())
        error = NotFound if in_path else InvalidInput
        return await domain_error(request, error(validation_message(exc)))

    async def no_page(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if not is_ui(request) or exc.status_code != 404:
            return await api_http(request, exc)
        return await domain_error(request, NotFound(f"no page at {request.url.path}"))

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(TracetuneError, domain_error)
    app.add_exception_handler(RequestValidationError, bad_request)
    app.add_exception_handler(StarletteHTTPException, no_page)
