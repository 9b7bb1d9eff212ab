"""Projects across processes: two stores on one database stand for two server replicas. A project deleted by
one is not written into by the other's cached name → id: the next run to that name makes a new project."""

from __future__ import annotations

import uuid

from tests.dataset_support import ingest
from tests.server.support import new_run
from tracetune.store import open_store


def test_a_replica_never_writes_into_a_project_another_deleted(store, db_url) -> None:
    replica = open_store(db_url, sqlite_synchronous="NORMAL")
    try:
        ws = store.workspaces.ensure("default").id
        ingest(replica, ws, [new_run(None)], "shared")  # the replica now caches "shared" → its id
        (first,) = replica.projects.list(ws, name="shared")
        assert store.projects.delete(ws, first["id"]) == 1  # deleted by the other replica
        late = new_run(None)
        ingest(replica, ws, [late], "shared")
        (second,) = store.projects.list(ws, name="shared", include_stats=True)
        assert second["id"] != first["id"] and second["run_count"] == 1
        assert replica.runs.get(ws, uuid.UUID(late["id"]))["project_id"] == second["id"]
    finally:
        replica.close()
