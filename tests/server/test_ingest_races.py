"""Concurrent writers of the same runs: what an SDK retry racing a newer batch looks like. Every request is
acknowledged (no 5xx: a deadlock between two upserts is resolved inside the server) and every run is stored once.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import httpx

from tests.server.support import T0, iso, new_run, query_all

N_RUNS = 200
N_CLIENTS = 4
ROUNDS = 20
END = iso(T0.replace(second=9))


def _batches(project: str) -> tuple[list[dict], list[dict]]:
    """The same ``N_RUNS`` run ids as posts and as patches (ended, with outputs)."""
    posts = [new_run(project, start=T0 + timedelta(microseconds=i), tags=["race"]) for i in range(N_RUNS)]
    for i, run in enumerate(posts):
        run["extra"] = {"metadata": {"i": i, "client": "race"}}
    patches = [
        {"id": run["id"], "trace_id": run["id"], "dotted_order": run["dotted_order"], "end_time": END}
        | {"outputs": {"n": i}, "extra": {"metadata": {"i": i, "done": True}}}
        for i, run in enumerate(posts)
    ]
    return posts, patches


def test_upserting_the_same_runs_in_opposite_orders_never_fails(live_server, project_name: str) -> None:
    posts, patches = _batches(project_name)
    statuses: Counter[int] = Counter()
    bodies: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(N_CLIENTS)

    def client(k: int) -> None:
        order = 1 if k % 2 == 0 else -1  # half the clients send the ids reversed
        body = {"post": posts[::order], "patch": patches[::order]} if k < 2 else {"patch": patches[::order]}
        with httpx.Client(base_url=live_server.langsmith_url, timeout=60, verify=False) as http:
            barrier.wait()
            for _ in range(ROUNDS):
                r = http.post("/runs/batch", json=body)
                with lock:
                    statuses[r.status_code] += 1
                    if r.status_code >= 300:
                        bodies.append(r.text[:300])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(N_CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert statuses == Counter({202: N_CLIENTS * ROUNDS}), (statuses, bodies[:3])
    with httpx.Client(base_url=live_server.langsmith_url, timeout=60, verify=False) as http:
        pid = http.get("/sessions", params={"name": project_name}).json()[0]["id"]
        stored = query_all(http, {"session": [pid], "limit": 100})
    assert Counter(r["id"] for r in stored) == Counter({p["id"]: 1 for p in posts})
    by_id = {r["id"]: r for r in stored}
    for i, run in enumerate(posts):
        got = by_id[run["id"]]
        assert got["outputs"] == {"n": i}
        assert got["status"] == "success"
        assert got["extra"]["metadata"]["done"] is True
        assert got["tags"] == ["race"]


def test_a_deadlock_is_retried_inside_one_request(store) -> None:
    """The write helper re-runs the whole transaction when the database picks it as a deadlock victim."""
    from sqlalchemy.exc import OperationalError

    calls = []

    class Victim(Exception):
        sqlstate = "40P01"

    def work(conn) -> str:
        calls.append(conn)
        if len(calls) < 3:
            raise OperationalError("UPDATE runs …", {}, Victim("deadlock detected"))
        return "done"

    assert store.db.write_retrying(work) == "done"
    assert len(calls) == 3
    # anything else is not retried
    calls.clear()

    def broken(conn) -> None:
        calls.append(conn)
        raise OperationalError("SELECT", {}, ValueError("no such table"))

    try:
        store.db.write_retrying(broken)
    except OperationalError:
        pass
    else:
        raise AssertionError("a non-retryable error was swallowed")
    assert len(calls) == 1
