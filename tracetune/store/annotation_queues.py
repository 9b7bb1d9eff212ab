"""Annotation queues: named lists of runs (or threads) waiting for a person's review, with a rubric (which feedback
keys to give). tracetune has one reviewer per workspace, so an item is waiting until it is marked completed."""

from __future__ import annotations

import builtins
import uuid
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, and_, delete, func, or_, select, update

from tracetune.errors import Conflict, InvalidInput, NotFound
from tracetune.store.engine import Database
from tracetune.store.rows import QueueItemRow, QueueRow
from tracetune.store.schema import annotation_queue_items as items
from tracetune.store.schema import annotation_queues as queues
from tracetune.store.schema import runs
from tracetune.store.sqlutil import as_utc, utcnow
from tracetune.timeutil import us_to_time

_QUEUE_TIMES = ("created_at", "updated_at")
_ITEM_TIMES = ("start_time", "added_at", "last_reviewed_time", "completed_at")


def _queue(row: Any) -> QueueRow:
    out = dict(row._mapping)
    for key in _QUEUE_TIMES:
        out[key] = as_utc(out[key])
    return cast(QueueRow, out)


def _item(row: Any) -> QueueItemRow:
    out = dict(row._mapping)
    for key in _ITEM_TIMES:
        out[key] = as_utc(out[key]) if out[key] is not None else None
    return cast(QueueItemRow, out)


def _waiting(completed: bool | None) -> Any:
    if completed is None:
        return None
    return items.c.completed_at.is_not(None) if completed else items.c.completed_at.is_(None)


class AnnotationQueueStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- queues ------------------------------------------------------------------------------------------------

    def create(self, workspace_id: uuid.UUID, values: dict[str, Any]) -> QueueRow:
        """A new queue from ``name`` (unique in the workspace), ``description``, ``rubric_instructions``,
        ``rubric_items`` and an optional ``id``; 409 for a taken name or id."""
        now = utcnow()
        queue_id: uuid.UUID = values.get("id") or uuid.uuid4()
        row: dict[str, Any] = {"id": queue_id, "workspace_id": workspace_id, "created_at": now, "updated_at": now}
        row.update({k: values.get(k) for k in ("name", "description", "rubric_instructions", "rubric_items")})
        same_name = and_(queues.c.workspace_id == workspace_id, queues.c.name == row["name"])
        with self.db.write() as conn:
            clash = conn.execute(
                select(queues.c.id, queues.c.name).where(or_(queues.c.id == queue_id, same_name))
            ).first()
            if clash is not None:
                what = "name" if clash.name == row["name"] else "id"
                raise Conflict(f"an annotation queue with this {what} already exists", field=what)
            conn.execute(queues.insert().values(**row))
        return self.get(workspace_id, queue_id)

    def get(self, workspace_id: uuid.UUID, queue_id: uuid.UUID) -> QueueRow:
        with self.db.read() as conn:
            return self._get(conn, workspace_id, queue_id)

    @staticmethod
    def _get(conn: Connection, workspace_id: uuid.UUID, queue_id: uuid.UUID) -> QueueRow:
        row = conn.execute(select(queues).where(queues.c.workspace_id == workspace_id, queues.c.id == queue_id)).first()
        if row is None:
            raise NotFound(f"annotation queue {queue_id} not found", field="queue_id")
        return _queue(row)

    def list(
        self,
        workspace_id: uuid.UUID,
        *,
        ids: builtins.list[uuid.UUID] | None = None,
        name: str | None = None,
        name_contains: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[QueueRow]:
        q = select(queues).where(queues.c.workspace_id == workspace_id)
        if ids:
            q = q.where(queues.c.id.in_(ids))
        if name is not None:
            q = q.where(queues.c.name == name)
        if name_contains:
            q = q.where(queues.c.name.contains(name_contains, autoescape=True))
        q = q.order_by(queues.c.created_at.desc(), queues.c.id).limit(limit).offset(offset)
        with self.db.read() as conn:
            return [_queue(r) for r in conn.execute(q)]

    def update(self, workspace_id: uuid.UUID, queue_id: uuid.UUID, changes: dict[str, Any]) -> QueueRow:
        with self.db.write() as conn:
            self._get(conn, workspace_id, queue_id)
            name = changes.get("name")
            if name is not None:
                taken = conn.execute(
                    select(queues.c.id).where(
                        queues.c.workspace_id == workspace_id, queues.c.name == name, queues.c.id != queue_id
                    )
                ).first()
                if taken is not None:
                    raise Conflict(f"an annotation queue named {name!r} already exists", field="name")
            conn.execute(update(queues).where(queues.c.id == queue_id).values(**changes, updated_at=utcnow()))
        return self.get(workspace_id, queue_id)

    def delete(self, workspace_id: uuid.UUID, queue_id: uuid.UUID) -> None:
        """The queue and its items (the runs and their feedback stay)."""
        with self.db.write() as conn:
            self._get(conn, workspace_id, queue_id)
            conn.execute(delete(items).where(items.c.queue_id == queue_id))
            conn.execute(delete(queues).where(queues.c.id == queue_id))

    # -- items -------------------------------------------------------------------------------------------------

    def add(
        self, workspace_id: uuid.UUID, queue_id: uuid.UUID, wanted: builtins.list[dict[str, Any]]
    ) -> builtins.list[QueueItemRow]:
        """Add items (``item_type`` RUN with ``run_id``, or THREAD with ``thread_id`` and ``project_id``). A run's
        project and start time come from the store (404 naming ``items[i].run_id`` for a run it does not hold); an
        item already in the queue is returned as it is, not added twice."""
        now = utcnow()
        with self.db.write() as conn:
            self._get(conn, workspace_id, queue_id)
            run_ids = [w["run_id"] for w in wanted if w.get("run_id") is not None]
            found = {
                r.id: r
                for r in conn.execute(
                    select(runs.c.id, runs.c.project_id, runs.c.start_us).where(
                        runs.c.workspace_id == workspace_id, runs.c.id.in_(run_ids)
                    )
                )
            }
            existing = {
                (r.run_id, r.thread_id): r.id
                for r in conn.execute(
                    select(items.c.id, items.c.run_id, items.c.thread_id).where(items.c.queue_id == queue_id)
                )
            }
            ids: builtins.list[uuid.UUID] = []
            for i, w in enumerate(wanted):
                key = (w.get("run_id"), w.get("thread_id"))
                if key in existing:
                    ids.append(existing[key])
                    continue
                item_id = uuid.uuid4()
                added = now + timedelta(microseconds=len(ids))  # the order they were given in, kept
                row = {"id": item_id, "queue_id": queue_id, "workspace_id": workspace_id, "added_at": added}
                row.update(item_type=w["item_type"], run_id=w.get("run_id"), thread_id=w.get("thread_id"))
                row.update(project_id=w.get("project_id"), start_time=w.get("start_time"))
                if w["item_type"] == "RUN":
                    run = found.get(w["run_id"])
                    if run is None:
                        raise NotFound(f"run {w['run_id']} not found", field=f"items[{i}].run_id")
                    row["project_id"] = run.project_id
                    row["start_time"] = us_to_time(run.start_us)
                elif not w.get("thread_id") or w.get("project_id") is None:
                    raise InvalidInput("a THREAD item needs thread_id and project_id", field=f"items[{i}]")
                conn.execute(items.insert().values(**row))
                existing[key] = item_id
                ids.append(item_id)
            rows = {r.id: _item(r) for r in conn.execute(select(items).where(items.c.id.in_(ids)))}
        return [rows[i] for i in ids]

    def items(
        self,
        workspace_id: uuid.UUID,
        queue_id: uuid.UUID,
        *,
        completed: bool | None = None,
        item_type: str | None = None,
        after: tuple[datetime, uuid.UUID] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[QueueItemRow]:
        """The queue's items in the order they were added (oldest first), after the ``(added_at, id)`` keyset."""
        with self.db.read() as conn:
            self._get(conn, workspace_id, queue_id)
            q = select(items).where(items.c.queue_id == queue_id)
            if (state := _waiting(completed)) is not None:
                q = q.where(state)
            if item_type:
                q = q.where(items.c.item_type == item_type)
            if after is not None:
                at, last = after
                q = q.where(or_(items.c.added_at > at, and_(items.c.added_at == at, items.c.id > last)))
            q = q.order_by(items.c.added_at, items.c.id).limit(limit).offset(offset)
            return [_item(r) for r in conn.execute(q)]

    def counts(self, workspace_id: uuid.UUID, queue_ids: builtins.list[uuid.UUID]) -> dict[uuid.UUID, tuple[int, int]]:
        """(waiting, completed) items per queue, in one query."""
        done = func.count(items.c.completed_at)
        q = (
            select(items.c.queue_id, func.count().label("all"), done.label("done"))
            .where(items.c.workspace_id == workspace_id, items.c.queue_id.in_(queue_ids))
            .group_by(items.c.queue_id)
        )
        with self.db.read() as conn:
            found = {r.queue_id: (r.all - r.done, r.done) for r in conn.execute(q)}
        return {qid: found.get(qid, (0, 0)) for qid in queue_ids}

    def count(self, workspace_id: uuid.UUID, queue_id: uuid.UUID, *, completed: bool | None = None) -> int:
        with self.db.read() as conn:
            self._get(conn, workspace_id, queue_id)
            q = select(func.count()).select_from(items).where(items.c.queue_id == queue_id)
            if (state := _waiting(completed)) is not None:
                q = q.where(state)
            return int(conn.execute(q).scalar_one())

    def item(self, workspace_id: uuid.UUID, item_id: uuid.UUID) -> QueueItemRow:
        with self.db.read() as conn:
            row = conn.execute(select(items).where(items.c.workspace_id == workspace_id, items.c.id == item_id)).first()
        if row is None:
            raise NotFound(f"queue item {item_id} not found", field="queue_item_id")
        return _item(row)

    def set_status(self, workspace_id: uuid.UUID, item_id: uuid.UUID, status: str) -> QueueItemRow:
        """``viewed`` stamps ``last_reviewed_time``; ``completed`` also takes the item off the waiting list."""
        self.item(workspace_id, item_id)
        now = utcnow()
        values: dict[str, Any] = {"last_reviewed_time": now}
        if status == "completed":
            values["completed_at"] = now
        with self.db.write() as conn:
            conn.execute(update(items).where(items.c.id == item_id).values(**values))
        return self.item(workspace_id, item_id)

    def remove(
        self,
        workspace_id: uuid.UUID,
        queue_id: uuid.UUID,
        *,
        item_ids: builtins.list[uuid.UUID] | None = None,
        run_ids: builtins.list[uuid.UUID] | None = None,
    ) -> int:
        """Remove the given items (by item or run id), or every item when neither is given."""
        with self.db.write() as conn:
            self._get(conn, workspace_id, queue_id)
            q = delete(items).where(items.c.queue_id == queue_id)
            if item_ids is not None:
                q = q.where(items.c.id.in_(item_ids))
            if run_ids is not None:
                q = q.where(items.c.run_id.in_(run_ids))
            return int(conn.execute(q).rowcount or 0)
