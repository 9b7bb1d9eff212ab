"""A 2xx means committed: ``tracetune serve`` killed with SIGKILL right after answering still has the run and
the feedback when it restarts on the same home (SQLite, synchronous=FULL) or database (PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _need_postgres, drop_postgres_database, make_postgres_database
from tests.fixtures import multipart_body
from tests.server.support import T0, Served, iso, new_run


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for the default SQLite file under the home; a fresh database for PostgreSQL."""
    if request.param == "sqlite":
        yield None
        return
    admin = _need_postgres()
    url, name = make_postgres_database(admin)
    try:
        yield url
    finally:
        drop_postgres_database(admin, name)


def test_acknowledged_writes_survive_sigkill(tmp_path: Path, database_url: str | None) -> None:
    project = f"durable-{uuid.uuid4().hex[:8]}"
    run = new_run(project, outputs={})
    rid = run["id"]
    end = iso(T0.replace(second=5))
    fid_part, fid_json = str(uuid.uuid4()), str(uuid.uuid4())
    parts = [
        (f"post.{rid}", {k: v for k, v in run.items() if k not in ("inputs", "outputs")}),
        (f"post.{rid}.inputs", {"question": "does it survive?"}),
        (f"patch.{rid}", {"id": rid, "end_time": end}),
        (f"patch.{rid}.outputs", {"answer": "yes"}),
        (f"feedback.{fid_part}", {"id": fid_part, "key": "durable", "score": 1, "run_id": rid}),
    ]
    body, ctype = multipart_body(parts)

    server = Served(tmp_path, database_url)
    try:
        r = server.http.post("/api/v1/runs/multipart", content=body, headers={"content-type": ctype})
        assert r.status_code == 202, r.text
        r = server.http.post("/api/v1/feedback", json={"id": fid_json, "key": "also", "score": 0, "run_id": rid})
        assert r.status_code == 200, r.text
    finally:
        server.kill()  # no shutdown, no flush: only what was committed before answering is left

    server = Served(tmp_path, database_url)
    try:
        got = server.http.get(f"/api/v1/runs/{rid}").json()
        assert got["inputs"] == {"question": "does it survive?"}
        assert got["outputs"] == {"answer": "yes"}
        assert (got["end_time"], got["status"]) == (end, "success")
        assert got["feedback_stats"] == {"also": {"n": 1, "avg": 0.0}, "durable": {"n": 1, "avg": 1.0}}
        listed = server.http.get("/api/v1/feedback", params={"run": rid}).json()
        assert sorted((f["id"], f["key"]) for f in listed) == sorted([(fid_part, "durable"), (fid_json, "also")])
        [found] = server.http.get("/api/v1/sessions", params={"name": project}).json()
        assert found["id"] == got["session_id"]
    finally:
        server.stop()
    if database_url is None:
        assert (tmp_path / "tracetune.db").exists()
