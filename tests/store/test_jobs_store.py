"""The job store on both dialects: claiming (oldest first, never twice, stale jobs taken over), holds, cancel,
event and checkpoint pages. No training here (tests/server/test_fine_tuning_api.py runs real jobs)."""

from __future__ import annotations

import threading
import time

import pytest

from tracetune.errors import InvalidInput, NotFound
from tracetune.store.jobs import event_id, new_id


def make_job(store, ws, **overrides):
    row = {
        "id": new_id("ftjob"), "workspace_id": ws.id, "model": "tiny", "training_file": "file-x",
        "validation_file": None, "suffix": None, "seed": 1, "output_model": "ft:tiny:w::12345678",
        "method": {"type": "supervised", "supervised": {"hyperparameters": {}}}, "hyperparameters": {},
        "user_metadata": None, **overrides,
    }  # fmt: skip
    return store.jobs.create(row, ["Created"])


@pytest.fixture
def ws(store):
    return store.workspaces.ensure("w")


def test_claims_take_the_oldest_waiting_job_once(store, ws):
    first, second = make_job(store, ws), make_job(store, ws)
    assert store.jobs.claim("a", stale_after=30)["id"] == first["id"]
    assert store.jobs.claim("b", stale_after=30)["id"] == second["id"]
    assert store.jobs.claim("c", stale_after=30) is None
    held = store.jobs.row(first["id"])
    assert held["worker_id"] == "a" and held["heartbeat_at"] is not None


def test_concurrent_claims_never_share_a_job(store, ws):
    ids = {make_job(store, ws)["id"] for _ in range(6)}
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while (job := store.jobs.claim(name, stale_after=30)) is not None:
            with lock:
                claimed.append(job["id"])

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)  # each exactly once


def test_a_running_job_whose_worker_went_silent_is_taken_over(store, ws):
    job = make_job(store, ws)
    store.jobs.claim("a", stale_after=30)
    assert store.jobs.transition(job["id"], "a", "running")
    assert store.jobs.claim("b", stale_after=30) is None  # a is alive
    time.sleep(0.3)
    taken = store.jobs.claim("b", stale_after=0.2)
    assert taken["id"] == job["id"] and taken["status"] == "running" and taken["worker_id"] == "b"
    assert not store.jobs.heartbeat(job["id"], "a")  # a finds out it lost the job
    assert not store.jobs.transition(job["id"], "a", "succeeded")
    assert store.jobs.heartbeat(job["id"], "b")


def test_cancel_ends_the_job_and_the_workers_hold(store, ws):
    job = make_job(store, ws)
    store.jobs.claim("a", stale_after=30)
    store.jobs.transition(job["id"], "a", "running")
    cancelled = store.jobs.cancel(ws.id, job["id"])
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"] is not None
    assert not store.jobs.heartbeat(job["id"], "a")
    assert not store.jobs.transition(job["id"], "a", "succeeded", fine_tuned_model="x")
    assert store.jobs.row(job["id"])["fine_tuned_model"] is None
    with pytest.raises(InvalidInput, match="already been cancelled"):
        store.jobs.cancel(ws.id, job["id"])
    waiting = make_job(store, ws)
    assert store.jobs.cancel(ws.id, waiting["id"])["status"] == "cancelled"
    assert store.jobs.claim("a", stale_after=30) is None


def test_terminal_transition_releases_and_stamps(store, ws):
    job = make_job(store, ws)
    store.jobs.claim("a", stale_after=30)
    assert store.jobs.transition(job["id"], "a", "failed", error={"code": "x", "message": "m", "param": None})
    row = store.jobs.row(job["id"])
    assert row["status"] == "failed" and row["worker_id"] is None and row["finished_at"] is not None
    assert row["error"] == {"code": "x", "message": "m", "param": None}


def test_events_are_paged_newest_first(store, ws):
    job = make_job(store, ws)
    store.jobs.add_events(job["id"], [{"message": f"e{i}"} for i in range(5)])
    store.jobs.add_events(job["id"], [{"message": "step", "type": "metrics", "data": {"step": 1, "train_loss": 2.5}}])
    page, more = store.jobs.events(ws.id, job["id"], limit=4)
    assert [e["message"] for e in page] == ["step", "e4", "e3", "e2"] and more
    assert page[0]["type"] == "metrics" and page[0]["data"] == {"step": 1, "train_loss": 2.5}
    rest, more = store.jobs.events(ws.id, job["id"], after=event_id(page[-1]["seq"]), limit=4)
    assert [e["message"] for e in rest] == ["e1", "e0", "Created"] and not more
    with pytest.raises(InvalidInput):
        store.jobs.events(ws.id, job["id"], after="nope")


def test_checkpoints_are_paged_by_step_and_recorded_once(store, ws):
    job = make_job(store, ws)
    for step in (10, 20, 30, 20):
        store.jobs.add_checkpoint(
            {"job_id": job["id"], "step_number": step, "metrics": {"step": step},
             "fine_tuned_model_checkpoint": f"m:ckpt-step-{step}", "path": f"jobs/x/step-{step}"}
        )  # fmt: skip
    page, more = store.jobs.checkpoints(ws.id, job["id"], limit=2)
    assert [c["step_number"] for c in page] == [30, 20] and more
    rest, more = store.jobs.checkpoints(ws.id, job["id"], after=page[-1]["id"], limit=2)
    assert [c["step_number"] for c in rest] == [10] and not more
    assert store.jobs.latest_checkpoint(job["id"])["step_number"] == 30


def test_lists_are_scoped_paged_and_filtered_by_metadata(store, ws):
    other = store.workspaces.ensure("other")
    mine = [make_job(store, ws, user_metadata={"team": "a" if i % 2 else "b"}) for i in range(5)]
    make_job(store, other)
    page, more = store.jobs.list(ws.id, limit=2)
    assert [j["id"] for j in page] == [mine[4]["id"], mine[3]["id"]] and more
    page2, _ = store.jobs.list(ws.id, after=page[-1]["id"], limit=10)
    assert [j["id"] for j in page2] == [m["id"] for m in reversed(mine[:3])]
    team_a, _ = store.jobs.list(ws.id, metadata={"team": "a"})
    assert [j["id"] for j in team_a] == [mine[3]["id"], mine[1]["id"]]
    with pytest.raises(NotFound):
        store.jobs.get(other.id, mine[0]["id"])
