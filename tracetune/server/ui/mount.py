"""Mounting the web UI on the app: its pages, ``/static``, and HTML error pages for UI paths."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from tracetune.errors import TracetuneError, Unauthorized
from tracetune.server.ui import automations, datasets, jobs, models, queues, runs
from tracetune.server.ui.pages import UI_DIR, LoginRequired, is_ui, render, router, see_other


def mount_ui(app: FastAPI) -> None:
    """Serve the UI from ``app``: its pages, ``/static`` and HTML error pages for UI paths (the APIs keep theirs).
    Call after the API routers are included (the UI's paths never overlap theirs)."""
    app.mount("/static", StaticFiles(directory=str(UI_DIR / "static")), name="static")
    app.include_router(router)
    for module in (runs, queues, datasets, jobs, models, automations):
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

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(TracetuneError, domain_error)
