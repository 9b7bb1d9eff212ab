"""The bad-input corpus over every route family (LangSmith /api/v1, OpenAI /v1, tracetune /tt/v1, the web UI),
on both dialects: every route the app has, found from the app itself (so a new route is covered the day it
lands), gets malformed ids, bodies and query parameters. Never a 5xx; a 4xx has its surface's error shape."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

# Routes whose valid-looking requests start real work (a model answering) are still sent the corpus: every
# body below is refused before any work starts. Only the UI playground's form is skipped (it always answers).
SKIP = {("POST", "/playground")}
PATH_VALUES = ["not-a-uuid", "x" * 300, str(uuid.uuid4()), "%00"]
BODIES: list[dict[str, Any]] = [
    {},
    {"content": b"", "headers": {"content-type": "application/json"}},
    {"content": b"{", "headers": {"content-type": "application/json"}},
    {"content": b"null", "headers": {"content-type": "application/json"}},
    {"content": b"[1, 2]", "headers": {"content-type": "application/json"}},
    {"content": b"\xff\xfe\x00garbage", "headers": {"content-type": "application/json"}},
    {"json": {"id": "not-a-uuid", "name": "\x00", "limit": -1, "model": 5, "messages": "x", "key": None}},
    {"json": {"x" * 200: "y" * 100_000}},
    {"content": b"--b\r\nnope\r\n", "headers": {"content-type": "multipart/form-data; boundary=b"}},
    {"content": b"a=%00&limit=-1&key=", "headers": {"content-type": "application/x-www-form-urlencoded"}},
    {"content": b"{}", "headers": {"content-type": "application/json", "content-encoding": "br"}},
    {"content": b"\x28\xb5\x2f\xfd\x00", "headers": {"content-type": "application/json", "content-encoding": "zstd"}},
]
QUERIES: list[dict[str, str]] = [
    {"limit": "-1", "offset": "x"},
    {"limit": "abc", "after": "\x00", "name": "\x00", "run": "nope", "id": "nope", "filter": "eq(("},
    {"include_stats": "maybe", "cursor": "!!!", "format": "nope"},
]


def _routes(app: Any) -> list[tuple[str, str]]:
    """(method, path template) of every route: the OpenAPI schema's, and the UI's (not in the schema)."""
    found = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops}
    for route in app.routes:
        router = getattr(route, "original_router", None)
        for sub in getattr(router, "routes", ()):
            if not getattr(sub, "include_in_schema", True):
                found |= {(m, sub.path) for m in sub.methods if m != "HEAD"}
    return sorted(found - SKIP)


def _shape_ok(path: str, response: httpx.Response) -> bool:
    if path.startswith(("/api/", "/tt/")):
        body = response.json()
        return set(body) == {"detail"} and isinstance(body["detail"], str) and bool(body["detail"])
    if path.startswith("/v1/"):
        error = response.json()["error"]
        return bool(error["message"]) and {"message", "type", "param", "code"} <= set(error)
    return True  # the UI answers HTML pages


def test_no_route_answers_bad_input_with_a_5xx(live_server, capsys: pytest.CaptureFixture[str]) -> None:
    routes = _routes(live_server.app)
    families = {p.split("/")[1] if p.startswith(("/api", "/v1", "/tt")) else "ui" for _, p in routes}
    assert families == {"api", "v1", "tt", "ui"} and len(routes) >= 40, routes
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    with httpx.Client(base_url=live_server.url, timeout=30, verify=False, follow_redirects=False) as http:
        for method, template in routes:
            names = re.findall(r"{(\w+)}", template)
            for value in PATH_VALUES if names else [None]:
                path = template
                for name in names:
                    path = path.replace(f"{{{name}}}", str(value))
                cases = [(b, {}) for b in BODIES] if method in ("POST", "PATCH", "PUT") else [({}, q) for q in QUERIES]
                for body, query in cases:
                    r = http.request(method, path, params=query, **body)
                    statuses[r.status_code] += 1
                    where = f"{method} {path[:60]} {json.dumps(query)[:60]} {str(body)[:60]}"
                    if r.status_code >= 500:
                        failures.append(f"{where} → {r.status_code} {r.text[:200]}")
                    elif r.status_code >= 400 and not _shape_ok(template, r):
                        failures.append(f"{where} → {r.status_code} with the wrong error shape: {r.text[:200]}")
                    elif len(r.content) > 20_000 and r.status_code >= 400:
                        failures.append(f"{where} → an error body of {len(r.content)} bytes")
    total = sum(statuses.values())
    fours = sum(n for s, n in statuses.items() if 400 <= s < 500)
    fives = sum(n for s, n in statuses.items() if s >= 500)
    with capsys.disabled():
        print(f"\nbad-input corpus: {len(routes)} routes, {total} requests, {fours} x 4xx, {fives} x 5xx")
    assert not failures, "\n".join(failures[:20])
