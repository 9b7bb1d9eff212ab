"""Runs: upsert by id in any arrival order, side rows for tags and metadata, reads by id or statement."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Select, func, select

from tracetune.ingest.records import RUN_COLUMNS
from tracetune.store.engine import Database
from tracetune.store.jsonvalues import canonical_json
from tracetune.store.projects import ProjectStore
from tracetune.store.schema import run_metadata, run_tags, runs
from tracetune.store.sqlutil import upsert

DEFAULT_PROJECT = "default"
_UPDATABLE = (*RUN_COLUMNS, "project_id")


class RunStore:
    def __init__(self, db: Database, projects: ProjectStore) -> None:
        self.db = db
        self.projects = projects

    def apply(
        self,
        workspace_id: uuid.UUID,
        posts: list[dict[str, Any]],
        patches: list[dict[str, Any]],
        conn: Connection | None = None,
    ) -> int:
        """Write run records (one per id per list, see ``ingest.records.merge_records``) in one transaction.

        Posts fill only what the stored run lacks; patches override what they carry. Without ``conn`` the
        method opens its own write transaction and returns once it is committed.
        """
        if not posts and not patches:
            return 0
        if conn is None:
            with self.db.write() as own:
                return self.apply(workspace_id, posts, patches, own)
        names = {r.get("session_name") or DEFAULT_PROJECT for r in posts if r.get("session_id") is None}
        names |= {r["session_name"] for r in patches if r.get("session_name") and r.get("session_id") is None}
        project_ids = self.projects.ids_for_names(conn, workspace_id, names) if names else {}
        for records, fill in ((posts, True), (patches, False)):
            if not records:
                continue
            rows = [self._row(workspace_id, rec, project_ids, fill) for rec in records]
            conn.execute(self._upsert(conn, fill), rows)
            tag_rows = {
                (rec["id"], tag) for rec in records for tag in rec.get("tags") or ()
            }
            if tag_rows:
                conn.execute(
                    upsert(conn, run_tags).on_conflict_do_nothing(),
                    [{"workspace_id": workspace_id, "run_id": rid, "tag": tag} for rid, tag in tag_rows],
                )
            meta_rows = {}
            for rec in records:
                meta = (rec.get("extra") or {}).get("metadata")
                if isinstance(meta, dict):
                    for key, value in meta.items():
                        meta_rows[(rec["id"], str(key))] = canonical_json(value)
            if meta_rows:
                stmt = upsert(conn, run_metadata)
                if fill:
                    stmt = stmt.on_conflict_do_nothing()
                else:
                    stmt = stmt.on_conflict_do_update(
                        index_elements=["workspace_id", "run_id", "key"], set_={"value": stmt.excluded.value}
                    )
                conn.execute(
                    stmt,
                    [
                        {"workspace_id": workspace_id, "run_id": rid, "key": key, "value": value}
                        for (rid, key), value in meta_rows.items()
                    ],
                )
        return len(posts) + len(patches)

    @staticmethod
    def _row(
        workspace_id: uuid.UUID, rec: dict[str, Any], project_ids: dict[str, uuid.UUID], fill: bool
    ) -> dict[str, Any]:
        row = {col: rec.get(col) for col in RUN_COLUMNS}
        row["workspace_id"] = workspace_id
        row["id"] = rec["id"]
        if rec.get("session_id") is not None:
            row["project_id"] = rec["session_id"]
        elif rec.get("session_name") or fill:
            row["project_id"] = project_ids[rec.get("session_name") or DEFAULT_PROJECT]
        else:
            row["project_id"] = None
        if row["start_us"] is None:  # NOT NULL column: a post that gave no start time starts now
            row["start_us"] = int(time.time() * 1_000_000)
        return row

    @staticmethod
    def _upsert(conn: Any, fill: bool) -> Any:
        stmt = upsert(conn, runs)
        new = stmt.excluded
        set_ = {
            col: (func.coalesce(runs.c[col], new[col]) if fill else func.coalesce(new[col], runs.c[col]))
            for col in _UPDATABLE
        }
        return stmt.on_conflict_do_update(index_elements=["workspace_id", "id"], set_=set_)

    def get(self, workspace_id: uuid.UUID, run_id: uuid.UUID) -> dict[str, Any] | None:
        with self.db.read() as conn:
            row = conn.execute(select(runs).where(runs.c.workspace_id == workspace_id, runs.c.id == run_id)).first()
        return dict(row._mapping) if row else None

    def fetch(self, stmt: Select[Any]) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def child_ids(self, workspace_id: uuid.UUID, parent_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
        ids = list(parent_ids)
        if not ids:
            return {}
        q = (
            select(runs.c.parent_run_id, runs.c.id)
            .where(runs.c.workspace_id == workspace_id, runs.c.parent_run_id.in_(ids))
            .order_by(runs.c.start_us, runs.c.id)
        )
        out: dict[uuid.UUID, list[uuid.UUID]] = {}
        with self.db.read() as conn:
            for parent, child in conn.execute(q):
                out.setdefault(parent, []).append(child)
        return out
