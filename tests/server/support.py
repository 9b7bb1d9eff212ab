"""Small helpers shared by the API tests: building runs and asserting the error shape."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

T0 = datetime(2026, 11, 21, 8, 0, 0, tzinfo=UTC)


def iso(dt: datetime) -> str:
    return dt.isoformat()


def new_run(project: str | None, *, start: datetime | None = None, **fields: Any) -> dict[str, Any]:
    """A root run as the SDK posts it (``fields`` override or add keys; ``None`` values are dropped)."""
    rid = str(uuid.uuid4())
    start = start or T0
    run: dict[str, Any] = {
        "id": rid,
        "trace_id": rid,
        "dotted_order": start.strftime("%Y%m%dT%H%M%S%fZ") + rid,
        "name": "chain",
        "run_type": "chain",
        "start_time": iso(start),
        "session_name": project,
        "inputs": {"question": "q"},
        "tags": [],
    }
    run.update(fields)
    return {k: v for k, v in run.items() if v is not None}


def child_of(parent: dict[str, Any], *, start: datetime | None = None, **fields: Any) -> dict[str, Any]:
    start = start or T0 + timedelta(milliseconds=1)
    run = new_run(parent.get("session_name"), start=start, **fields)
    run["trace_id"] = parent["trace_id"]
    run["parent_run_id"] = parent["id"]
    run["dotted_order"] = parent["dotted_order"] + "." + start.strftime("%Y%m%dT%H%M%S%fZ") + run["id"]
    run.update(fields)
    return run


def detail_of(response: httpx.Response, *statuses: int) -> str:
    """Assert the LangSmith error shape ``{"detail": "<message>"}`` with one of ``statuses``; the message."""
    assert response.status_code in statuses, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"detail"}, body
    assert isinstance(body["detail"], str) and body["detail"], body
    return body["detail"]  # type: ignore[no-any-return]


def get_run(api: httpx.Client, run_id: str) -> dict[str, Any]:
    r = api.get(f"/runs/{run_id}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def project_id(api: httpx.Client, name: str) -> str | None:
    r = api.get("/sessions", params={"name": name})
    assert r.status_code == 200, r.text
    found = r.json()
    assert len(found) <= 1
    return found[0]["id"] if found else None


def query_all(api: httpx.Client, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every run of a ``POST /runs/query`` selection, following cursors."""
    runs: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        r = api.post("/runs/query", json={**body, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        runs.extend(page["runs"])
        cursor = page["cursors"]["next"]
        if not cursor:
            return runs
    raise AssertionError("the cursor never ended")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """``python -m tracetune serve`` in a subprocess, on a free port."""

    def __init__(
        self, home: Path, database_url: str | None, env: dict[str, str] | None = None, port: int | None = None
    ) -> None:
        """``env`` adds to (or overrides) the environment, without the caller's TRACETUNE_* variables; ``port``
        (default: a free one) lets a restarted server take its predecessor's address."""
        self.port = port or free_port()
        cmd = [sys.executable, "-m", "tracetune", "serve", "--port", str(self.port), "--home", str(home)]
        if database_url:
            cmd += ["--database-url", database_url]
        environ = {k: v for k, v in os.environ.items() if not k.startswith("TRACETUNE_")} | (env or {})
        self.proc = subprocess.Popen(cmd, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10, verify=False)
        deadline = time.time() + 30
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"tracetune serve exited: {self.proc.stderr.read() if self.proc.stderr else ''}")
            try:
                if self.http.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.time() > deadline:
                self.stop()
                raise AssertionError("tracetune serve did not start in 30 s")
            time.sleep(0.05)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.http.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.http.close()
