"""Feedback on runs (scores, values, comments, corrections). A run need not exist yet when feedback arrives."""

from __future__ import annotations

import builtins
import uuid
from typing import Any, cast

import orjson
from sqlalchemy import Text, delete, select, update
from sqlalchemy import cast as sql_cast

from tracetune.errors import Conflict, NotFound
from tracetune.store.engine import Database
from tracetune.store.rows import FeedbackRow
from tracetune.store.schema import feedback
from tracetune.store.sqlutil import as_utc, upsert, utcnow

UPDATABLE = ("score", "value", "comment", "correction", "extra", "feedback_source")


def _out(row: Any) -> FeedbackRow:
    out = dict(row._mapping)
    out["created_at"] = as_utc(out["created_at"])
    out["modified_at"] = as_utc(out["modified_at"])
    return cast(FeedbackRow, out)


class FeedbackStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, workspace_id: uuid.UUID, item: dict[str, Any], *, ignore_existing: bool = False) -> FeedbackRow:
        """Store one feedback record (keys as in ``feedback`` columns). 409 on a duplicate id unless ignored."""
        self.create_many(workspace_id, [item], ignore_existing=ignore_existing)
        return self.get(workspace_id, item["id"])

    def create_many(
        self,
        workspace_id: uuid.UUID,
        items: list[dict[str, Any]],
        *,
        ignore_existing: bool = False,
        conn: Any = None,
    ) -> None:
        if not items:
            return
        now = utcnow()
        rows = []
        for item in items:
            row = {c.name: item.get(c.name) for c in feedback.columns}
            row["workspace_id"] = workspace_id
            row["created_at"] = item.get("created_at") or now
            row["modified_at"] = item.get("modified_at") or now
            rows.append(row)
        rows.sort(key=lambda r: str(r["id"]))  # one lock order for every writer (see RunStore._steps)
        if conn is not None:
            self._insert(conn, workspace_id, rows, ignore_existing)
            return
        with self.db.write() as c:
            self._insert(c, workspace_id, rows, ignore_existing)

    @staticmethod
    def _insert(conn: Any, workspace_id: uuid.UUID, rows: list[dict[str, Any]], ignore_existing: bool) -> None:
        ids = [r["id"] for r in rows]
        taken = {
            r.id: r.workspace_id
            for r in conn.execute(select(feedback.c.id, feedback.c.workspace_id).where(feedback.c.id.in_(ids)))
        }
        if taken:
            other = [fid for fid, ws in taken.items() if ws != workspace_id]
            if other or not ignore_existing:
                raise Conflict(f"feedback {next(iter(taken))} already exists", field="id")
        fresh = [r for r in rows if r["id"] not in taken]
        if fresh:
            conn.execute(upsert(conn, feedback).on_conflict_do_nothing(), fresh)

    def get(self, workspace_id: uuid.UUID, feedback_id: uuid.UUID) -> FeedbackRow:
        with self.db.read() as conn:
            row = conn.execute(
                select(feedback).where(feedback.c.workspace_id == workspace_id, feedback.c.id == feedback_id)
            ).first()
        if row is None:
            raise NotFound(f"feedback {feedback_id} not found", field="feedback_id")
        return _out(row)

    def list(
        self,
        workspace_id: uuid.UUID,
        *,
        run_ids: list[uuid.UUID] | None = None,
        keys: list[str] | None = None,
        session_ids: list[uuid.UUID] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[FeedbackRow]:
        q = select(feedback).where(feedback.c.workspace_id == workspace_id)
        if run_ids:
            q = q.where(feedback.c.run_id.in_(run_ids))
        if keys:
            q = q.where(feedback.c.key.in_(keys))
        if session_ids:
            q = q.where(feedback.c.session_id.in_(session_ids))
        q = q.order_by(feedback.c.created_at, feedback.c.id).limit(limit).offset(offset)
        with self.db.read() as conn:
            return [_out(r) for r in conn.execute(q)]

    def update(self, workspace_id: uuid.UUID, feedback_id: uuid.UUID, changes: dict[str, Any]) -> FeedbackRow:
        values = {k: v for k, v in changes.items() if k in UPDATABLE}
        values["modified_at"] = utcnow()
        with self.db.write() as conn:
            result = conn.execute(
                update(feedback)
                .where(feedback.c.workspace_id == workspace_id, feedback.c.id == feedback_id)
                .values(**values)
            )
        if not result.rowcount:
            raise NotFound(f"feedback {feedback_id} not found", field="feedback_id")
        return self.get(workspace_id, feedback_id)

    def delete(self, workspace_id: uuid.UUID, feedback_id: uuid.UUID) -> None:
        with self.db.write() as conn:
            result = conn.execute(
                delete(feedback).where(feedback.c.workspace_id == workspace_id, feedback.c.id == feedback_id)
            )
        if not result.rowcount:
            raise NotFound(f"feedback {feedback_id} not found", field="feedback_id")

    def stats_for_runs(
        self, workspace_id: uuid.UUID, run_ids: builtins.list[uuid.UUID]
    ) -> dict[uuid.UUID, dict[str, Any]]:
        """``feedback_stats`` per run: ``{key: {"n": count, "avg": mean score}}``."""
        from sqlalchemy import func

        if not run_ids:
            return {}
        q = (
            select(
                feedback.c.run_id,
                feedback.c.key,
                func.count().label("n"),
                func.avg(feedback.c.score).label("avg"),
            )
            .where(feedback.c.workspace_id == workspace_id, feedback.c.run_id.in_(run_ids))
            .group_by(feedback.c.run_id, feedback.c.key)
        )
        out: dict[uuid.UUID, dict[str, Any]] = {}
        with self.db.read() as conn:
            for row in conn.execute(q):
                out.setdefault(row.run_id, {})[row.key] = {
                    "n": row.n,
                    "avg": float(row.avg) if row.avg is not None else None,
                }
        return out

    @staticmethod
    def latest_corrections(conn: Any, workspace_id: uuid.UUID, run_ids: builtins.list[uuid.UUID]) -> dict[str, Any]:
        """The newest correction of each of ``run_ids`` that has one (one query). Read as JSON text and decoded
        here: SQLite gives a JSON column numeric affinity, so a bare number comes back as a number, not JSON text."""
        q = (
            select(feedback.c.run_id, sql_cast(feedback.c.correction, Text))
            .where(
                feedback.c.workspace_id == workspace_id,
                feedback.c.run_id.in_(run_ids),
                feedback.c.correction.is_not(None),
            )
            .order_by(feedback.c.modified_at, feedback.c.id)
        )
        out = {}
        for run_id, text in conn.execute(q):
            try:
                out[str(run_id)] = orjson.loads(text)
            except orjson.JSONDecodeError:
                out[str(run_id)] = None  # unreadable: counted as an invalid correction
        return out

    @staticmethod
    def latest_scores(
        conn: Any, workspace_id: uuid.UUID, run_ids: builtins.list[uuid.UUID], key: str
    ) -> dict[str, float]:
        """The newest score under ``key`` of each of ``run_ids`` that has one (one query)."""
        q = (
            select(feedback.c.run_id, feedback.c.score)
            .where(
                feedback.c.workspace_id == workspace_id,
                feedback.c.run_id.in_(run_ids),
                feedback.c.key == key,
                feedback.c.score.is_not(None),
            )
            .order_by(feedback.c.modified_at, feedback.c.id)
        )
        return {str(run_id): float(score) for run_id, score in conn.execute(q)}
