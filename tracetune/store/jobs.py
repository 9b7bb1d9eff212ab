"""Fine-tuning jobs, their events and checkpoints (the rows behind ``/v1/fine_tuning/jobs``).

The life of a job: ``validating_files → queued → running → succeeded | failed | cancelled``. Cancelling
before it runs ends it at once; cancelling a running job also ends it at once (the row says ``cancelled``) and
the worker holding it sees that at its next heartbeat and stops the training process.

Workers hold a job by writing their id into ``worker_id`` and refreshing ``heartbeat_at``. :meth:`JobStore.claim`
takes the oldest job waiting (``validating_files`` / ``queued``), or a ``running`` one whose worker stopped
heartbeating (``stale_after`` seconds): on PostgreSQL with ``FOR UPDATE SKIP LOCKED``, so many workers never claim
the same job; on SQLite the single-writer transaction serialises claims. Every update a worker makes is
conditional on still holding the job (``worker_id`` is its own and the status is the one it expects): a worker
that lost its job (cancelled, or reclaimed after it stalled) finds out from the row count and stops.
"""

from __future__ import annotations

import builtins
import secrets
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Connection, and_, insert, or_, select, update

from tracetune.errors import InvalidInput, NotFound
from tracetune.store.engine import Database
from tracetune.store.rows import CheckpointRow, JobEventRow, JobRow
from tracetune.store.schema import fine_tuning_checkpoints, fine_tuning_job_events, fine_tuning_jobs

TERMINAL = ("succeeded", "failed", "cancelled")
WAITING = ("validating_files", "queued")
EVENT_PREFIX = "ftevent-"

jobs = fine_tuning_jobs
events = fine_tuning_job_events
checkpoints = fine_tuning_checkpoints


def new_id(prefix: str) -> str:
    """``<prefix>-<24 hex>``: nanoseconds then 32 random bits (ids of one second sort in creation order)."""
    return f"{prefix}-{time.time_ns():016x}{secrets.token_hex(4)}"


def event_id(seq: int) -> str:
    return f"{EVENT_PREFIX}{seq:012d}"


def _event_seq(value: str) -> int:
    digits = value[len(EVENT_PREFIX) :] if value.startswith(EVENT_PREFIX) else ""
    if not digits.isdigit():
        raise InvalidInput(f"{value!r} is not an event id of this server", field="after", code="invalid_value")
    return int(digits)


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- the API side --------------------------------------------------------------------------------------------

    def create(self, row: dict[str, Any], first_events: builtins.list[str]) -> JobRow:
        """Insert a new job (``status`` ``validating_files``) and its first events, in one commit."""
        now = int(time.time())
        row = {
            "created_at": now, "status": "validating_files", "result_files": [], "cancel_requested": 0,
            "attempts": 0, **row,
        }  # fmt: skip
        with self.db.write() as conn:
            conn.execute(insert(jobs).values(**row))
            for message in first_events:
                self._event(conn, row["id"], message)
        return self.get(row["workspace_id"], row["id"])

    def get(self, workspace_id: uuid.UUID, job_id: str) -> JobRow:
        with self.db.read() as conn:
            found = conn.execute(select(jobs).where(jobs.c.workspace_id == workspace_id, jobs.c.id == job_id)).first()
        if found is None:
            raise NotFound(f"No such fine-tuning job: {job_id}", field="fine_tuning_job_id", code="job_not_found")
        return cast(JobRow, dict(found._mapping))

    def list(
        self,
        workspace_id: uuid.UUID,
        *,
        after: str | None = None,
        limit: int = 20,
        metadata: Mapping[str, str] | None = None,
    ) -> tuple[builtins.list[JobRow], bool]:
        """A page of the workspace's jobs, newest first, and whether more follow (``after`` = the last id seen).

        ``metadata`` keeps the jobs whose metadata has every given key with the given value (jobs are few; the
        filter runs over the workspace's rows)."""
        query = select(jobs).where(jobs.c.workspace_id == workspace_id)
        with self.db.read() as conn:
            if after is not None:
                cursor = conn.execute(
                    select(jobs.c.created_at, jobs.c.id).where(jobs.c.workspace_id == workspace_id, jobs.c.id == after)
                ).first()
                if cursor is None:
                    raise NotFound(f"No such fine-tuning job: {after} (the 'after' cursor)", field="after")
                at, jid = cursor
                query = query.where(or_(jobs.c.created_at < at, and_(jobs.c.created_at == at, jobs.c.id < jid)))
            query = query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
            if metadata:
                rows = [
                    cast(JobRow, dict(r._mapping))
                    for r in conn.execute(query)
                    if all((r.user_metadata or {}).get(k) == v for k, v in metadata.items())
                ][: limit + 1]
            else:
                rows = [cast(JobRow, dict(r._mapping)) for r in conn.execute(query.limit(limit + 1))]
        return rows[:limit], len(rows) > limit

    def cancel(self, workspace_id: uuid.UUID, job_id: str) -> JobRow:
        """End a job that has not ended: ``cancelled`` now; a worker running it stops at its next heartbeat.

        Cancelling an ended job is an :class:`InvalidInput` (OpenAI answers 400 too)."""
        job = self.get(workspace_id, job_id)
        if job["status"] in TERMINAL:
            raise InvalidInput(
                f"Job {job_id} has already {'been cancelled' if job['status'] == 'cancelled' else 'completed'} "
                f"(status {job['status']})",
                field="fine_tuning_job_id",
                code="invalid_state",
            )
        with self.db.write() as conn:
            done = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status.not_in(TERMINAL))
                .values(status="cancelled", cancel_requested=1, finished_at=int(time.time()), estimated_finish=None)
            ).rowcount
            if done:
                self._event(conn, job_id, "Fine-tuning job cancelled")
        return self.get(workspace_id, job_id)

    def events(
        self, workspace_id: uuid.UUID, job_id: str, *, after: str | None = None, limit: int = 20
    ) -> tuple[builtins.list[JobEventRow], bool]:
        """A page of the job's events, newest first (as OpenAI lists them), and whether more follow."""
        self.get(workspace_id, job_id)
        query = select(events).where(events.c.job_id == job_id)
        if after is not None:
            query = query.where(events.c.seq < _event_seq(after))
        with self.db.read() as conn:
            rows = [
                cast(JobEventRow, dict(r._mapping))
                for r in conn.execute(query.order_by(events.c.seq.desc()).limit(limit + 1))
            ]
        return rows[:limit], len(rows) > limit

    def all_events(self, job_id: str, *, after_seq: int = 0) -> builtins.list[JobEventRow]:
        """Every event after ``after_seq``, oldest first (for followers: the CLI, the UI)."""
        with self.db.read() as conn:
            query = select(events).where(events.c.job_id == job_id, events.c.seq > after_seq).order_by(events.c.seq)
            return [cast(JobEventRow, dict(r._mapping)) for r in conn.execute(query)]

    def checkpoints(
        self, workspace_id: uuid.UUID, job_id: str, *, after: str | None = None, limit: int = 10
    ) -> tuple[builtins.list[CheckpointRow], bool]:
        """A page of the job's checkpoints, newest (highest step) first, and whether more follow."""
        self.get(workspace_id, job_id)
        query = select(checkpoints).where(checkpoints.c.job_id == job_id)
        with self.db.read() as conn:
            if after is not None:
                step = conn.execute(
                    select(checkpoints.c.step_number).where(checkpoints.c.job_id == job_id, checkpoints.c.id == after)
                ).scalar()
                if step is None:
                    raise NotFound(f"No such checkpoint: {after} (the 'after' cursor)", field="after")
                query = query.where(checkpoints.c.step_number < step)
            rows = [
                cast(CheckpointRow, dict(r._mapping))
                for r in conn.execute(query.order_by(checkpoints.c.step_number.desc()).limit(limit + 1))
            ]
        return rows[:limit], len(rows) > limit

    def checkpoint_by_model(self, workspace_id: uuid.UUID, model_id: str) -> tuple[CheckpointRow, JobRow]:
        """The checkpoint whose model id (``fine_tuned_model_checkpoint``) is ``model_id``, of a job of the
        workspace, and its job; ``NotFound`` (field ``model``) otherwise."""
        query = (
            select(checkpoints)
            .join(jobs, jobs.c.id == checkpoints.c.job_id)
            .where(checkpoints.c.fine_tuned_model_checkpoint == model_id, jobs.c.workspace_id == workspace_id)
        )
        with self.db.read() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"no checkpoint {model_id!r}", field="model", code="model_not_found")
        return cast(CheckpointRow, dict(row._mapping)), self.get(workspace_id, row.job_id)

    # -- the worker side ------------------------------------------------------------------------------------------

    def claim(self, worker_id: str, *, stale_after: float, job_id: str | None = None) -> JobRow | None:
        """Take the oldest job that is waiting, or running under a worker silent for ``stale_after`` seconds
        (only ``job_id``, when given). A read looks first, so an idle poll never takes the write lock."""
        now = time.time()
        waiting = and_(jobs.c.status.in_(WAITING), jobs.c.worker_id.is_(None))
        orphaned = and_(
            jobs.c.status == "running", or_(jobs.c.heartbeat_at.is_(None), jobs.c.heartbeat_at < now - stale_after)
        )
        query = select(jobs.c.id).where(or_(waiting, orphaned)).order_by(jobs.c.created_at, jobs.c.id).limit(1)
        if job_id is not None:
            query = query.where(jobs.c.id == job_id)
        with self.db.read() as conn:
            if conn.execute(query).first() is None:
                return None
        with self.db.write() as conn:
            found = conn.execute(query.with_for_update(skip_locked=True)).scalar()
            if found is None:
                return None
            conn.execute(update(jobs).where(jobs.c.id == found).values(worker_id=worker_id, heartbeat_at=now))
            return cast(JobRow, dict(conn.execute(select(jobs).where(jobs.c.id == found)).one()._mapping))

    def row(self, job_id: str) -> JobRow:
        """A job by id, whatever its workspace (workers and the CLI)."""
        with self.db.read() as conn:
            found = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        if found is None:
            raise NotFound(f"No such fine-tuning job: {job_id}", field="fine_tuning_job_id", code="job_not_found")
        return cast(JobRow, dict(found._mapping))

    def heartbeat(self, job_id: str, worker_id: str, **values: Any) -> bool:
        """Refresh the hold (and set ``values``); False when the job is no longer this worker's to run."""
        with self.db.write() as conn:
            return bool(
                conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id, jobs.c.worker_id == worker_id, jobs.c.status.not_in(TERMINAL))
                    .values(heartbeat_at=time.time(), **values)
                ).rowcount
            )

    def transition(
        self,
        job_id: str,
        worker_id: str,
        status: str,
        *,
        messages: Sequence[tuple[str, str]] = (),
        release: bool = False,
        also: Callable[[Connection], None] | None = None,
        **values: Any,
    ) -> bool:
        """Move a held job to ``status`` (with ``values``) and log ``messages`` (``(level, text)``), in one commit
        with ``also(conn)`` (e.g. adding the fine-tuned model); ``release`` drops the hold. False (and nothing
        written) when the worker no longer holds the job."""
        if status in TERMINAL:
            values.setdefault("finished_at", int(time.time()))
            values.setdefault("estimated_finish", None)
            release = True
        with self.db.write() as conn:
            changed = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.worker_id == worker_id, jobs.c.status.not_in(TERMINAL))
                .values(
                    status=status,
                    heartbeat_at=None if release else time.time(),
                    worker_id=None if release else worker_id,
                    **values,
                )
            ).rowcount
            if changed:
                for level, message in messages:
                    self._event(conn, job_id, message, level=level)
                if also is not None:
                    also(conn)
            return bool(changed)

    def add_events(self, job_id: str, items: builtins.list[dict[str, Any]], *, worker_id: str | None = None) -> None:
        """Append events: ``{"message", "level"?, "type"?, "data"?}`` each. With ``worker_id``, only while that
        worker still holds the job (a cancelled job gets no events after "Fine-tuning job cancelled")."""
        if not items:
            return
        with self.db.write() as conn:
            if worker_id is not None and not self._held(conn, job_id, worker_id):
                return
            for item in items:
                self._event(
                    conn, job_id, item["message"], item.get("level", "info"), item.get("type"), item.get("data")
                )

    def add_checkpoint(self, row: dict[str, Any], *, worker_id: str | None = None) -> None:
        """Record a checkpoint (``job_id, step_number, metrics, fine_tuned_model_checkpoint, path``); a checkpoint
        of a step already recorded (a resumed run redoing it) replaces nothing and is ignored. With ``worker_id``,
        only while that worker still holds the job."""
        with self.db.write() as conn:
            if worker_id is not None and not self._held(conn, job_id=row["job_id"], worker_id=worker_id):
                return
            exists = conn.execute(
                select(checkpoints.c.id).where(
                    checkpoints.c.job_id == row["job_id"], checkpoints.c.step_number == row["step_number"]
                )
            ).first()
            if exists is None:
                conn.execute(insert(checkpoints).values(id=new_id("ftckpt"), created_at=int(time.time()), **row))

    def latest_checkpoint(self, job_id: str) -> CheckpointRow | None:
        with self.db.read() as conn:
            found = conn.execute(
                select(checkpoints)
                .where(checkpoints.c.job_id == job_id)
                .order_by(checkpoints.c.step_number.desc())
                .limit(1)
            ).first()
        return cast(CheckpointRow, dict(found._mapping)) if found else None

    def status(self, job_id: str) -> str | None:
        with self.db.read() as conn:
            return conn.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar()

    @staticmethod
    def _held(conn: Any, job_id: str, worker_id: str) -> bool:
        return (
            conn.execute(
                select(jobs.c.id).where(
                    jobs.c.id == job_id, jobs.c.worker_id == worker_id, jobs.c.status.not_in(TERMINAL)
                )
            ).first()
            is not None
        )

    @staticmethod
    def _event(
        conn: Any,
        job_id: str,
        message: str,
        level: str = "info",
        type_: str | None = None,
        data: Any = None,
    ) -> None:
        conn.execute(
            insert(events).values(
                job_id=job_id,
                created_at=int(time.time()),
                level=level,
                type=type_ or "message",
                message=message,
                data=data,
            )
        )
