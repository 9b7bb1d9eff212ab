"""Acceptance: project management and run stats through the unmodified newest SDK — ``update_project``
(rename, describe, metadata, close), ``delete_project`` (its runs, their tags, metadata and feedback go in one
transaction; a later run to the name makes a new project) and ``get_run_stats`` over the traced project."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest
from langsmith.utils import LangSmithConflictError, LangSmithNotFoundError
from sqlalchemy import func, select

from tests.server.support import child_of, new_run
from tracetune.store.schema import feedback, run_metadata, run_tags, runs

from .helpers import KNOWN_CLIENT_WARNINGS, by_trace

pytestmark = pytest.mark.filterwarnings(*KNOWN_CLIENT_WARNINGS)

MODE = "sdk_default"


def test_update_project_renames_describes_and_closes(client):
    name = f"proj-{uuid.uuid4().hex[:8]}"
    project = client.create_project(name, description="first")
    closed = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    updated = client.update_project(
        project.id, name=name + "-v2", description="second", metadata={"team": "ml"}, end_time=closed
    )
    assert (updated.id, updated.name, updated.description) == (project.id, name + "-v2", "second")
    assert updated.end_time == closed and updated.metadata == {"team": "ml"}
    again = client.read_project(project_name=name + "-v2")
    assert again.id == project.id and again.end_time == closed
    client.update_project(project.id, description="third")  # the SDK sends null for the rest: unchanged
    assert client.read_project(project_id=project.id).name == name + "-v2"
    other = client.create_project(f"proj-{uuid.uuid4().hex[:8]}")
    with pytest.raises(LangSmithConflictError):
        client.update_project(other.id, name=name + "-v2")
    with pytest.raises(LangSmithNotFoundError):
        client.update_project(uuid.uuid4(), description="nobody")


def count(store, table, column, values) -> int:
    with store.db.read() as conn:
        return conn.execute(select(func.count()).select_from(table).where(table.c[column].in_(values))).scalar_one()


def test_delete_project_takes_everything_in_it(client, live_server):
    name = f"doomed-{uuid.uuid4().hex[:8]}"
    root = new_run(name, tags=["t1"], extra={"metadata": {"user": "u1"}})
    child = child_of(root, tags=["t2"])
    api = httpx.Client(base_url=live_server.langsmith_url)
    assert api.post("/runs/batch", json={"post": [root, child]}).status_code == 202
    client.create_feedback(root["id"], key="user_score", score=1, trace_id=root["id"])
    client.flush()  # the SDK sends feedback with its tracing batches
    project = client.read_project(project_name=name)
    ids = [uuid.UUID(root["id"]), uuid.UUID(child["id"])]
    store = live_server.store
    assert count(store, runs, "id", ids) == 2 and count(store, run_tags, "run_id", ids) == 2
    assert count(store, run_metadata, "run_id", ids) >= 1 and count(store, feedback, "run_id", ids) == 1

    client.delete_project(project_name=name)

    with pytest.raises(LangSmithNotFoundError):
        client.read_project(project_name=name)
    for table, column in ((runs, "id"), (run_tags, "run_id"), (run_metadata, "run_id"), (feedback, "run_id")):
        assert count(store, table, column, ids) == 0, table.name
    # the name is free again: a new run makes a new project
    assert api.post("/runs", json=new_run(name)).status_code == 202
    reborn = client.read_project(project_name=name)
    assert reborn.id != project.id and len(list(client.list_runs(project_name=name))) == 1
    with pytest.raises(LangSmithNotFoundError):
        client.delete_project(project_id=str(project.id))


def test_run_stats_sum_up_the_selection(traced, client):
    traced.result(MODE)
    every = traced.runs(MODE)
    stats = client.get_run_stats(project_names=[traced.project(MODE)])
    assert stats["run_count"] == len(every)
    errors = [r for r in every if r.error]
    assert stats["error_rate"] == pytest.approx(len(errors) / len(every))
    assert stats["total_tokens"] == sum(r.total_tokens or 0 for r in every)
    latencies = sorted((r.end_time - r.start_time).total_seconds() for r in every if r.end_time)
    assert latencies[0] <= stats["latency_p50"] <= stats["latency_p99"] <= latencies[-1] + 1e-6
    assert stats["feedback_stats"]["user_score"] == {"n": 2, "avg": 0.5}
    llm = client.get_run_stats(project_names=[traced.project(MODE)], run_type="llm", is_root=False)
    assert llm["run_count"] == sum(len([r for r in t if r.run_type == "llm"]) for t in by_trace(every).values())
    assert "feedback_stats" in llm and llm["feedback_stats"] == {}  # the feedback is on roots
