"""Automations and their firings (``tracetune.loop``): a rule stored by name, each firing a row that records its
steps and lineage (runs taken → dataset version → job → evaluation → decision → alias version).

Two firings of one automation never overlap: a partial unique index allows one ``queued`` or ``running`` firing
per automation, so :meth:`AutomationStore.add_firing` answers None when one is already active, on any replica.
A runner holds a firing by heartbeat (like a fine-tuning job); a firing whose runner went silent is claimed again
and resumes at its recorded step. The runs a firing takes are recorded with it (``automation_runs``), in one
transaction: the next firing selects only runs no firing of that automation took.
"""

from __future__ import annotations

import builtins
import time
import uuid
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from tracetune.errors import Conflict, NotFound
from tracetune.store.engine import Database
from tracetune.store.rows import AutomationRow, FiringRow
from tracetune.store.schema import automation_firings as f
from tracetune.store.schema import automation_runs
from tracetune.store.schema import automations as a
from tracetune.store.sqlutil import as_utc, utcnow

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed")
_TIMES = ("created_at", "started_at", "finished_at")


def _automation(row: Any) -> AutomationRow:
    out = dict(row._mapping)
    out["created_at"], out["updated_at"] = as_utc(out["created_at"]), as_utc(out["updated_at"])
    return cast(AutomationRow, out)


def _firing(row: Any) -> FiringRow:
    out = dict(row._mapping)
    for key in _TIMES:
        out[key] = as_utc(out[key])
    return cast(FiringRow, out)


class AutomationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- rules ----------------------------------------------------------------------------------------------------

    def create(self, workspace_id: uuid.UUID, name: str, rule: dict[str, Any]) -> AutomationRow:
        now = utcnow()
        row = {"workspace_id": workspace_id, "id": uuid.uuid4(), "name": name, "rule": rule, "paused": False,
               "created_at": now, "updated_at": now}  # fmt: skip
        try:
            with self.db.write() as conn:
                conn.execute(insert(a).values(**row))
        except IntegrityError:
            raise Conflict(f"an automation named {name!r} exists already", field="name") from None
        return cast(AutomationRow, row)

    def get(self, workspace_id: uuid.UUID, name: str) -> AutomationRow:
        with self.db.read() as conn:
            row = conn.execute(select(a).where(a.c.workspace_id == workspace_id, a.c.name == name)).first()
        if row is None:
            raise NotFound(f"no automation named {name!r}", field="name")
        return _automation(row)

    def by_id(self, automation_id: uuid.UUID) -> AutomationRow:
        with self.db.read() as conn:
            row = conn.execute(select(a).where(a.c.id == automation_id)).first()
        if row is None:
            raise NotFound(f"no automation {automation_id}", field="automation_id")
        return _automation(row)

    def list(self, workspace_id: uuid.UUID | None = None, *, active_only: bool = False) -> builtins.list[AutomationRow]:
        """The automations of a workspace (every workspace: None), by name; ``active_only``: not paused."""
        q = select(a).order_by(a.c.name)
        if workspace_id is not None:
            q = q.where(a.c.workspace_id == workspace_id)
        if active_only:
            q = q.where(a.c.paused.is_(False))
        with self.db.read() as conn:
            return [_automation(r) for r in conn.execute(q)]

    def set_paused(self, workspace_id: uuid.UUID, name: str, paused: bool) -> AutomationRow:
        with self.db.write() as conn:
            done = conn.execute(
                update(a)
                .where(a.c.workspace_id == workspace_id, a.c.name == name)
                .values(paused=paused, updated_at=utcnow())
            ).rowcount
        if not done:
            raise NotFound(f"no automation named {name!r}", field="name")
        return self.get(workspace_id, name)

    # -- firings --------------------------------------------------------------------------------------------------

    def add_firing(self, automation: AutomationRow, trigger: str) -> FiringRow | None:
        """A new queued firing of ``automation`` (numbered after the last), or None when one is queued or running
        already (the partial unique index decides, whoever else is adding one at the same time)."""
        try:
            with self.db.write() as conn:
                number = conn.execute(
                    select(func.coalesce(func.max(f.c.number), 0)).where(f.c.automation_id == automation["id"])
                ).scalar()
                firing_id = uuid.uuid4()
                row = {
                    "id": firing_id, "workspace_id": automation["workspace_id"], "automation_id": automation["id"],
                    "number": int(number or 0) + 1, "trigger": trigger, "status": "queued", "step": "dataset",
                    "attempts": 0, "steps": [], "created_at": utcnow(),
                }  # fmt: skip
                conn.execute(insert(f).values(**row))
        except IntegrityError:
            return None
        return self.firing_by_id(firing_id)

    def firing_by_id(self, firing_id: uuid.UUID) -> FiringRow:
        with self.db.read() as conn:
            row = conn.execute(select(f).where(f.c.id == firing_id)).first()
        if row is None:
            raise NotFound(f"no firing {firing_id}", field="firing_id")
        return _firing(row)

    def firing(self, automation_id: uuid.UUID, number: int) -> FiringRow:
        with self.db.read() as conn:
            row = conn.execute(select(f).where(f.c.automation_id == automation_id, f.c.number == number)).first()
        if row is None:
            raise NotFound(f"no firing #{number}", field="number")
        return _firing(row)

    def firings(self, automation_id: uuid.UUID, limit: int = 100) -> builtins.list[FiringRow]:
        """The automation's firings, newest first."""
        q = select(f).where(f.c.automation_id == automation_id).order_by(f.c.number.desc()).limit(limit)
        with self.db.read() as conn:
            return [_firing(r) for r in conn.execute(q)]

    def last_firing(self, automation_id: uuid.UUID) -> FiringRow | None:
        found = self.firings(automation_id, limit=1)
        return found[0] if found else None

    def claim(self, worker_id: str, *, stale_after: float) -> FiringRow | None:
        """Take the oldest queued firing, or a running one whose runner has been silent ``stale_after`` seconds."""
        now = time.time()
        waiting = and_(f.c.status == "queued", f.c.worker_id.is_(None))
        orphaned = and_(f.c.status == "running", or_(f.c.heartbeat_at.is_(None), f.c.heartbeat_at < now - stale_after))
        query = select(f.c.id).where(or_(waiting, orphaned)).order_by(f.c.created_at, f.c.id).limit(1)
        with self.db.read() as conn:
            if conn.execute(query).first() is None:
                return None
        with self.db.write() as conn:
            found = conn.execute(query.with_for_update(skip_locked=True)).scalar()
            if found is None:
                return None
            conn.execute(
                update(f)
                .where(f.c.id == found)
                .values(worker_id=worker_id, heartbeat_at=now, status="running",
                        started_at=func.coalesce(f.c.started_at, utcnow()))
            )  # fmt: skip
            return _firing(conn.execute(select(f).where(f.c.id == found)).one())

    def update(
        self,
        firing_id: uuid.UUID,
        worker_id: str,
        *,
        log: dict[str, Any] | None = None,
        take: tuple[Iterable[uuid.UUID], Iterable[uuid.UUID]] | None = None,
        **values: Any,
    ) -> bool:
        """Set ``values`` on a firing this worker holds (and refresh the hold), append ``log`` to its steps and,
        with ``take=(sampled, left_out)``, record those runs as taken by it, all in one commit. A finishing status
        releases the hold. False (nothing written) when the worker no longer holds it."""
        status = values.get("status")
        if status in FINISHED:
            values.setdefault("finished_at", utcnow())
            values.update(worker_id=None, heartbeat_at=None)
        else:
            values["heartbeat_at"] = time.time()
        held = and_(f.c.id == firing_id, f.c.worker_id == worker_id, f.c.status.in_(ACTIVE))
        with self.db.write() as conn:
            row = conn.execute(select(f.c.steps, f.c.automation_id).where(held).with_for_update()).first()
            if row is None:
                return False
            if log is not None:
                values["steps"] = [*(row.steps or []), {**log, "at": utcnow().isoformat()}]
            conn.execute(update(f).where(held).values(**values))
            if take is not None:
                sampled, left_out = take
                rows = [
                    {"automation_id": row.automation_id, "run_id": run_id, "firing_id": firing_id, "sampled": keep}
                    for keep, ids in ((True, sampled), (False, left_out))
                    for run_id in ids
                ]
                if rows:
                    conn.execute(insert(automation_runs), rows)
            return True

    def requeue(self, firing_id: uuid.UUID, worker_id: str, **values: Any) -> bool:
        """Give a held firing back (``queued``, no holder) to be tried again from its recorded step."""
        held = and_(f.c.id == firing_id, f.c.worker_id == worker_id, f.c.status == "running")
        with self.db.write() as conn:
            return bool(
                conn.execute(
                    update(f).where(held).values(status="queued", worker_id=None, heartbeat_at=None, **values)
                ).rowcount
            )

    def runs_taken(self, firing_id: uuid.UUID) -> tuple[int, int]:
        """``(sampled, left out)``: how many runs the firing took."""
        q = select(automation_runs.c.sampled, func.count()).where(automation_runs.c.firing_id == firing_id)
        with self.db.read() as conn:
            counts: dict[bool, int] = {bool(k): int(n) for k, n in conn.execute(q.group_by(automation_runs.c.sampled))}
        return int(counts.get(True, 0)), int(counts.get(False, 0))
