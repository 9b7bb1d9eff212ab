"""A 2xx means committed: ``tracetune serve`` killed with SIGKILL right after answering still has the run and
the feedback when it restarts on the same home (SQLite, synchronous=FULL) or database (PostgreSQL)."""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import _need_postgres, drop_postgres_database, make_postgres_database
from tests.fixtures import multipart_body
from tests.server.support import T0, Served, free_port, iso, new_run


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


def test_sdk_ingest_through_repeated_sigkills_loses_and_duplicates_nothing(
    tmp_path: Path, database_url: str | None
) -> None:
    """The real SDK traces while the server is SIGKILLed and restarted twice. Every run whose request was
    acknowledged (a hook on the SDK's own HTTP session records them) is stored, once."""
    import requests
    from langsmith import Client

    from tracetune.ingest.encoding import decode_body

    project = f"kill9-{uuid.uuid4().hex[:8]}"
    acked: set[str] = set()

    def record(response: requests.Response, *args: object, **kwargs: object) -> None:
        request = response.request
        if response.status_code == 202 and request.path_url.endswith("/runs/multipart"):
            sent_body = request.body  # the SDK streams its compressed batches from a BytesIO
            raw = sent_body.getvalue() if hasattr(sent_body, "getvalue") else sent_body
            body = decode_body(raw if isinstance(raw, bytes) else b"", request.headers.get("Content-Encoding"), 1 << 30)
            acked.update(m.decode() for m in re.findall(rb'name="post\.([0-9a-f-]{36})"', body))

    session = requests.Session()
    session.hooks["response"].append(record)
    port = free_port()
    server = Served(tmp_path, database_url, port=port)
    client = Client(api_url=f"http://127.0.0.1:{port}/api/v1", api_key="unused", session=session)
    sent: list[str] = []
    rng = random.Random(7)
    stop = threading.Event()

    def produce() -> None:  # an app tracing steadily, whatever happens to the server
        i = 0
        while not stop.is_set():
            rid = uuid.uuid4()
            start = T0 + timedelta(microseconds=i)
            client.create_run(
                f"run-{i}", {"i": i, "pad": "x" * 2000}, "chain", id=rid, trace_id=rid,
                dotted_order=start.strftime("%Y%m%dT%H%M%S%fZ") + str(rid), start_time=start,
                end_time=start + timedelta(milliseconds=3), outputs={"ok": True}, project_name=project,
            )  # fmt: skip
            sent.append(str(rid))
            i += 1
            time.sleep(0.002)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        for _ in range(2):
            time.sleep(rng.uniform(0.3, 0.8))
            server.kill()  # mid-ingest: what was in flight is lost unless it was acknowledged
            server = Served(tmp_path, database_url, port=port)
        time.sleep(0.3)
        stop.set()
        producer.join(timeout=30)
        client.flush()
        stored: list[str] = []
        cursor = None
        while True:
            page = server.http.post(
                "/api/v1/runs/query", json={"session": [_project_id(server, project)], "limit": 100, "cursor": cursor}
            ).json()
            stored += [r["id"] for r in page["runs"]]
            cursor = page["cursors"]["next"]
            if not cursor:
                break
    finally:
        stop.set()
        server.stop()
    assert acked, "no request was acknowledged"
    assert len(stored) == len(set(stored)), "a run is stored twice"
    missing = acked - set(stored)
    assert not missing, f"{len(missing)} acknowledged runs were lost"
    assert set(stored) <= set(sent)
    print(f"kill -9 x2: sent {len(sent)}, acknowledged {len(acked)}, stored {len(stored)}, lost 0, duplicated 0")


def _project_id(server: Served, name: str) -> str:
    [found] = server.http.get("/api/v1/sessions", params={"name": name}).json()
    return found["id"]  # type: ignore[no-any-return]
