"""The web UI at ``/``: server-rendered Jinja2 pages plus htmx (vendored, no build step), from this process.

Why templates + htmx, not a JavaScript bundle: every page is one Python route calling the same service the API
route calls, so the UI cannot drift from the API; autoescaping makes every value from a trace text, never markup
(the XSS defence: nothing from a run is ever marked ``|safe``); installing needs no Node toolchain; and every
form works without JavaScript too (htmx only swaps fragments: ``hx-select`` picks them out of the full page).

Authentication: when API keys exist, a page without a valid key in the ``tracetune_key`` cookie (HttpOnly,
SameSite=Lax) redirects to ``/login``; the key's workspace scopes everything the page reads and writes,
exactly as the key does on the APIs (:func:`tracetune.server.deps.workspace_for_key`).

This module holds what every page shares (templates, rendering, the login); the pages are ``runs``, ``queues``,
``datasets``, ``jobs`` and ``models`` beside it, mounted by ``mount.py``.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from tracetune import __version__
from tracetune.errors import Unauthorized
from tracetune.server.deps import state, workspace_for_key
from tracetune.server.ui.views import selection_filter
from tracetune.store.workspaces import Workspace

UI_DIR = Path(__file__).resolve().parent  # templates/ and static/
COOKIE = "tracetune_key"
COOKIE_MAX_AGE_S = 30 * 24 * 3600
API_PREFIXES = ("/api/", "/v1/", "/tt/", "/otel/", "/healthz", "/static/")

# A second line of defence behind autoescaping: only this server's own script files run (no inline script, no
# event-handler attribute), nothing is fetched from elsewhere, and no other site may frame the UI.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False)


# -- templates -------------------------------------------------------------------------------------------------


def _fmt_time(value: Any) -> str:
    """A time (ISO text, epoch seconds, or a datetime) as ``YYYY-MM-DD HH:MM:SS`` UTC; empty when unknown."""
    if value is None or value == "":
        return ""
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return str(value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"))


def _fmt_usd(value: Any) -> str:
    """A cost for people: ``$1.25``; a smaller one to two significant digits: ``$0.006``, ``$6.0e-06``."""
    if value is None:
        return ""
    amount = float(value)
    if amount == 0 or amount >= 0.01:
        return f"${amount:.2f}"
    return f"${amount:.2g}" if amount >= 1e-4 else f"${amount:.1e}"


def _fmt_seconds(value: Any) -> str:
    """A duration for people: ``400 ms``, ``2.35 s``, ``20 min 5 s``, ``1 h 3 min``."""
    if value is None:
        return ""
    seconds = float(value)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def _fmt_number(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if abs(value) >= 10**digits and abs(value) < 1e15:  # a big number reads whole, not as 1.2e+03
            return f"{value:.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def _pretty_json(value: Any) -> str:
    """Indented JSON text (autoescaped when shown, like every other value)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=False)


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(UI_DIR / "templates")),
        autoescape=select_autoescape(enabled_extensions=("html",), default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        time=_fmt_time, seconds=_fmt_seconds, number=_fmt_number, pretty=_pretty_json, urlq=quote, usd=_fmt_usd
    )
    env.globals["version"] = __version__
    env.globals["selection_filter"] = selection_filter
    return env


ENV = _env()


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The page ``template`` (autoescaped) with the caller's workspace and the navigation in its context."""
    context.setdefault("ws", getattr(request.state, "ui_workspace", None))
    context["auth_enabled"] = state(request).store.workspaces.auth_required()
    context["path"] = request.url.path
    html = ENV.get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=status_code, headers={"Content-Security-Policy": CSP})


def see_other(url: str) -> RedirectResponse:
    """Redirect after a form post (303: the browser follows with GET)."""
    return RedirectResponse(url, status_code=303)


# -- authentication --------------------------------------------------------------------------------------------


class LoginRequired(Exception):
    """A page needs a key and the request carries no valid one (answered with a redirect to ``/login``)."""


def ui_workspace(request: Request) -> Workspace:
    """The workspace of the key in the UI's cookie (the default workspace when the server runs open)."""
    try:
        ws = workspace_for_key(state(request), request.cookies.get(COOKIE))
    except Unauthorized:
        raise LoginRequired from None
    request.state.ui_workspace = ws
    return ws


def safe_next(target: str | None) -> str:
    """Only a local path may be a post-login destination (no open redirect to another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    """The icon, for clients that ask for it by its old name (pages link ``/static/favicon.svg``)."""
    return FileResponse(UI_DIR / "static" / "favicon.svg", media_type="image/svg+xml")


@router.get("/login")
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", next=safe_next(next), error=None)


@router.post("/login", response_model=None)
def login(request: Request, key: str = Form(""), next: str = Form("/")) -> Response:
    store = state(request).store
    try:
        ws = workspace_for_key(state(request), key.strip())
    except Unauthorized as exc:
        return render(request, "login.html", status_code=401, next=safe_next(next), error=exc.message)
    response = see_other(safe_next(next))
    if store.workspaces.auth_required():
        response.set_cookie(
            COOKIE,
            key.strip(),
            max_age=COOKIE_MAX_AGE_S,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
    request.state.ui_workspace = ws
    return response


@router.post("/logout")
def logout() -> RedirectResponse:
    response = see_other("/login")
    response.delete_cookie(COOKIE)
    return response


# -- mounting --------------------------------------------------------------------------------------------------


def is_ui(request: Request) -> bool:
    """Whether ``request`` is for a UI page (not an API, the health check or a static asset)."""
    path = request.url.path
    return path != "/v1" and not path.startswith(API_PREFIXES)
