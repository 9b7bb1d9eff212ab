"""With API keys configured the UI asks for a key (kept in an HttpOnly cookie) and shows only its workspace."""

from __future__ import annotations

import uuid

from tests.ui.support import llm_trace
from tracetune.server.ui.pages import COOKIE


def test_pages_redirect_to_login_until_a_valid_key_is_given(ui):
    key, _ = ui.store.workspaces.create_key("team-a")
    for path in ("/", "/datasets", "/jobs", "/models", "/playground", f"/runs/{uuid.uuid4()}"):
        response = ui.client.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next=/"), path
    htmx = ui.client.get("/jobs", headers={"HX-Request": "true"})
    assert htmx.headers["HX-Redirect"] == "/login?next=/jobs"
    assert "API key" in ui.page("/login?next=/jobs")
    api = ui.client.get("/api/v1/sessions")
    assert api.status_code == 401 and api.json()["detail"].startswith("this server requires an API key")

    wrong = ui.client.post("/login", data={"key": "tt_nope", "next": "/jobs"})
    assert wrong.status_code == 401 and "invalid or revoked API key" in wrong.text
    assert COOKIE not in wrong.cookies

    ok = ui.client.post("/login", data={"key": key, "next": "/jobs"})
    assert ok.status_code == 303 and ok.headers["location"] == "/jobs"
    cookie = ok.headers["set-cookie"]
    assert f"{COOKIE}={key}" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    ui.client.cookies.set(COOKIE, key)
    assert "workspace <b>team-a</b>" in ui.page("/jobs")

    out = ui.client.post("/logout")
    assert out.status_code == 303 and f'{COOKIE}=""' in out.headers["set-cookie"]


def test_a_key_sees_only_its_workspace(ui):
    key_a, _ = ui.store.workspaces.create_key("team-a")
    key_b, _ = ui.store.workspaces.create_key("team-b")
    team_a = ui.store.workspaces.get("team-a")
    runs = llm_trace("secret-project")
    ui.app.state.tt.ingest.batch(team_a.id, {"post": runs})
    project_id = ui.store.projects.list(team_a.id, name="secret-project")[0]["id"]

    ui.client.cookies.set(COOKIE, key_a)
    assert "secret-project" in ui.page("/")
    assert "ChatOpenAI" in ui.page(f"/runs/{runs[1]['id']}")

    assert ui.client.get("/api/v1/sessions").status_code == 401  # the APIs never take the UI's cookie
    api = ui.client.get("/api/v1/sessions", headers={"x-api-key": key_a})
    assert [p["name"] for p in api.json()] == ["secret-project"]  # the APIs resolve keys as before
    assert ui.client.get("/v1/models", headers={"Authorization": f"Bearer {key_b}"}).status_code == 200
    assert ui.client.get("/api/v1/sessions", headers={"x-api-key": "tt_bad"}).status_code == 401

    ui.client.cookies.set(COOKIE, key_b)
    assert "secret-project" not in ui.page("/") and 'id="no-projects"' in ui.page("/")
    assert "not found" in ui.page(f"/runs/{runs[1]['id']}", status=404)
    assert "not found" in ui.page(f"/projects/{project_id}", status=404)
    rated = ui.client.post(f"/runs/{runs[1]['id']}/feedback", data={"kind": "up"})
    assert rated.status_code == 404 and not ui.store.feedback.list(team_a.id)


def test_login_never_redirects_off_the_server(ui):
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:alert(1)"):
        response = ui.client.post("/login", data={"key": "", "next": target})
        assert response.status_code == 303 and response.headers["location"] == "/", target  # open server
    assert 'value="/"' in ui.page("/login?next=https://evil.example/")


def test_the_ui_does_not_shadow_the_apis(ui):
    assert ui.client.get("/healthz").json()["status"] == "ok"
    assert ui.client.get("/api/v1/info").status_code == 200
    assert ui.client.get("/v1/models").json()["object"] == "list"
    assert ui.client.get("/v1/nope").json()["error"]["code"] == "unknown_url"
    assert ui.client.get("/static/htmx.min.js").text.startswith("var htmx=")
    assert ui.client.get("/nope").status_code == 404
