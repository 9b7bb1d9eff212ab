"""Projects (LangSmith calls them tracer sessions): created by name on first ingest, or explicitly; renamed,
described, closed (``end_time``) and deleted with everything in them."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, bindparam, delete, func, or_, select, update

from tracetune.errors import Conflict, InvalidInput, NotFound
from tracetune.store.engine import Database
from tracetune.store.rows import ComparativeExperimentRow
from tracetune.store.schema import (
    annotation_queue_items,
    comparative_experiments,
    datasets,
    examples,
    feedback,
    feedback_tokens,
    projects,
    run_metadata,
    run_tags,
    runs,
)
from tracetune.store.sqlutil import as_utc, upsert, utcnow

# Built once: every ingest request checks that the projects it cached still exist
_EXISTING = select(projects.c.id).where(projects.c.id.in_(bindparam("ids", expanding=True)))


class ProjectStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._ids: dict[tuple[uuid.UUID, str], uuid.UUID] = {}

    def ids_for_names(self, conn: Connection, workspace_id: uuid.UUID, names: Iterable[str]) -> dict[str, uuid.UUID]:
        """Project ids for ``names`` in the caller's write transaction, creating the missing ones."""
        found: dict[str, uuid.UUID] = {}
        missing = []
        for name in set(names):
            pid = self._ids.get((workspace_id, name))
            if pid is None:
                missing.append(name)
            else:
                found[name] = pid
        if missing:
            now = utcnow()
            conn.execute(
                upsert(conn, projects).on_conflict_do_nothing(index_elements=["workspace_id", "name"]),
                [{"id": uuid.uuid4(), "workspace_id": workspace_id, "name": n, "created_at": now} for n in missing],
            )
            rows = conn.execute(
                select(projects.c.id, projects.c.name).where(
                    projects.c.workspace_id == workspace_id, projects.c.name.in_(missing)
                )
            ).all()
            fresh = {(workspace_id, row.name): row.id for row in rows}
            found.update({name: pid for (_, name), pid in fresh.items()})
            conn.info.setdefault("after_commit", []).append(lambda: self._ids.update(fresh))
        return found

    def create(
        self,
        workspace_id: uuid.UUID,
        name: str,
        *,
        project_id: uuid.UUID | None = None,
        description: str | None = None,
        extra: dict[str, Any] | None = None,
        upsert_existing: bool = False,
        reference_dataset_id: uuid.UUID | None = None,
    ) -> dict[str, Any]:
        """A new project (409 for a taken name unless ``upsert_existing``); with ``reference_dataset_id`` an
        experiment over that dataset (404 when it is not the workspace's)."""
        with self.db.write() as conn:
            if reference_dataset_id is not None:
                known = conn.execute(
                    select(datasets.c.id).where(
                        datasets.c.workspace_id == workspace_id, datasets.c.id == reference_dataset_id
                    )
                ).first()
                if known is None:
                    raise NotFound(f"dataset {reference_dataset_id} not found", field="reference_dataset_id")
            existing = conn.execute(
                select(projects.c.id).where(projects.c.workspace_id == workspace_id, projects.c.name == name)
            ).first()
            if existing is not None:
                if not upsert_existing:
                    raise Conflict(f"a project named {name!r} already exists", field="name")
                values: dict[str, Any] = {}
                if description is not None:
                    values["description"] = description
                if extra is not None:
                    values["extra"] = extra
                if values:
                    conn.execute(projects.update().where(projects.c.id == existing.id).values(**values))
                pid = existing.id
            else:
                pid = project_id or uuid.uuid4()
                if conn.execute(select(projects.c.id).where(projects.c.id == pid)).first() is not None:
                    raise Conflict(f"a project with id {pid} already exists", field="id")
                conn.execute(
                    projects.insert().values(
                        id=pid,
                        workspace_id=workspace_id,
                        name=name,
                        description=description,
                        extra=extra,
                        created_at=utcnow(),
                        reference_dataset_id=reference_dataset_id,
                    )
                )
        return self.get(workspace_id, pid)

    def update(
        self,
        workspace_id: uuid.UUID,
        project_id: uuid.UUID,
        *,
        name: str | None = None,
        description: str | None = None,
        extra: dict[str, Any] | None = None,
        end_time: datetime | None = None,
    ) -> dict[str, Any]:
        """Change what is given (None: unchanged); 404 for a project not in the workspace, 409 for a taken name."""
        values: dict[str, Any] = {
            k: v
            for k, v in (("name", name), ("description", description), ("extra", extra), ("end_time", end_time))
            if v is not None
        }
        with self.db.write() as conn:
            old_name = self._name_of(conn, workspace_id, project_id)
            if name is not None and name != old_name:
                taken = conn.execute(
                    select(projects.c.id).where(projects.c.workspace_id == workspace_id, projects.c.name == name)
                ).first()
                if taken is not None:
                    raise Conflict(f"a project named {name!r} already exists", field="name")
            if values:
                conn.execute(projects.update().where(projects.c.id == project_id).values(**values))
        if name is not None:
            self.forget(workspace_id, [project_id])
        return self.get(workspace_id, project_id)

    def delete(self, workspace_id: uuid.UUID, project_id: uuid.UUID) -> int:
        """Delete the project with its runs, their tags, metadata, feedback, feedback tokens and places in annotation
        queues (and the project's own feedback, queued threads and comparisons; examples lose their links to its
        runs) in one transaction; returns how many runs went. 404 for a project not in the workspace. A run sent
        later to the same name makes a new project, in this process or any other (``RunStore`` checks its cached
        ids)."""
        with self.db.write() as conn:
            self._name_of(conn, workspace_id, project_id)
            its_runs = select(runs.c.id).where(runs.c.workspace_id == workspace_id, runs.c.project_id == project_id)
            its_traces = select(runs.c.trace_id).where(
                runs.c.workspace_id == workspace_id, runs.c.project_id == project_id, runs.c.parent_run_id.is_(None)
            )
            conn.execute(  # examples keep their inputs and outputs, not links to runs that no longer exist
                update(examples)
                .where(
                    examples.c.workspace_id == workspace_id,
                    or_(examples.c.source_run_id.in_(its_runs), examples.c.trace_id.in_(its_traces)),
                )
                .values(source_run_id=None, run_ids=None, trace_id=None)
            )
            conn.execute(
                delete(feedback).where(
                    feedback.c.workspace_id == workspace_id,
                    or_(feedback.c.run_id.in_(its_runs), feedback.c.session_id == project_id),
                )
            )
            for side in (run_tags, run_metadata, feedback_tokens, annotation_queue_items):
                conn.execute(delete(side).where(side.c.workspace_id == workspace_id, side.c.run_id.in_(its_runs)))
            conn.execute(delete(annotation_queue_items).where(annotation_queue_items.c.project_id == project_id))
            gone = conn.execute(
                delete(runs).where(runs.c.workspace_id == workspace_id, runs.c.project_id == project_id)
            ).rowcount
            compared = conn.execute(
                select(comparative_experiments.c.id, comparative_experiments.c.experiment_ids).where(
                    comparative_experiments.c.workspace_id == workspace_id
                )
            ).all()
            gone_comparisons = [cid for cid, ids in compared if str(project_id) in ids]
            if gone_comparisons:  # a comparison of a deleted experiment compares nothing
                conn.execute(delete(comparative_experiments).where(comparative_experiments.c.id.in_(gone_comparisons)))
            conn.execute(delete(projects).where(projects.c.id == project_id))
        self.forget(workspace_id, [project_id])
        return int(gone or 0)

    # -- comparative experiments: experiments over one dataset, compared ---------------------------------------

    def create_comparison(
        self,
        workspace_id: uuid.UUID,
        *,
        experiment_ids: list[uuid.UUID],
        reference_dataset_id: uuid.UUID,
        comparison_id: uuid.UUID | None = None,
        name: str | None = None,
        description: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> ComparativeExperimentRow:
        """Record a comparison of two or more experiments, all over ``reference_dataset_id`` (400 naming the first
        that is not; 404 for a project or dataset not in the workspace, 409 for a taken id)."""
        if len(set(experiment_ids)) < 2:
            raise InvalidInput("compare at least two different experiments", field="experiment_ids")
        now = utcnow()
        row = {
            "id": comparison_id or uuid.uuid4(),
            "workspace_id": workspace_id,
            "name": name,
            "description": description,
            "reference_dataset_id": reference_dataset_id,
            "experiment_ids": [str(e) for e in experiment_ids],
            "extra": extra,
            "created_at": now,
            "modified_at": now,
        }
        with self.db.write() as conn:
            refs = dict(
                conn.execute(
                    select(projects.c.id, projects.c.reference_dataset_id).where(
                        projects.c.workspace_id == workspace_id, projects.c.id.in_(experiment_ids)
                    )
                ).all()
            )
            for i, pid in enumerate(experiment_ids):
                if pid not in refs:
                    raise NotFound(f"experiment {pid} not found", field=f"experiment_ids[{i}]")
                if refs[pid] != reference_dataset_id:
                    raise InvalidInput(
                        f"experiment {pid} is not an experiment over dataset {reference_dataset_id}",
                        field=f"experiment_ids[{i}]",
                    )
            taken = select(comparative_experiments.c.id).where(comparative_experiments.c.id == row["id"])
            if conn.execute(taken).first():
                raise Conflict(f"a comparative experiment with id {row['id']} already exists", field="id")
            conn.execute(comparative_experiments.insert().values(row))
        return cast(ComparativeExperimentRow, row)

    def comparisons(
        self, workspace_id: uuid.UUID, reference_dataset_id: uuid.UUID, *, limit: int = 100, offset: int = 0
    ) -> list[ComparativeExperimentRow]:
        """The dataset's comparative experiments, newest first."""
        q = (
            select(comparative_experiments)
            .where(
                comparative_experiments.c.workspace_id == workspace_id,
                comparative_experiments.c.reference_dataset_id == reference_dataset_id,
            )
            .order_by(comparative_experiments.c.created_at.desc(), comparative_experiments.c.id)
        )
        with self.db.read() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q.limit(limit).offset(offset))]
        for r in rows:
            r["created_at"], r["modified_at"] = as_utc(r["created_at"]), as_utc(r["modified_at"])
        return cast(list[ComparativeExperimentRow], rows)

    @staticmethod
    def _name_of(conn: Connection, workspace_id: uuid.UUID, project_id: uuid.UUID) -> str:
        """The project's name; 404 for a project not in the workspace."""
        name = conn.execute(
            select(projects.c.name).where(projects.c.workspace_id == workspace_id, projects.c.id == project_id)
        ).scalar_one_or_none()
        if name is None:
            raise NotFound(f"project {project_id} not found", field="session_id")
        return str(name)

    def forget(self, workspace_id: uuid.UUID, project_ids: Iterable[uuid.UUID]) -> None:
        """Drop cached name → id entries of these projects (renamed or deleted)."""
        ids = set(project_ids)
        for key in [k for k, v in self._ids.items() if k[0] == workspace_id and v in ids]:
            self._ids.pop(key, None)

    def existing(self, conn: Connection, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        """Which of ``ids`` are still projects (in the caller's transaction)."""
        wanted = list(set(ids))
        if not wanted:
            return set()
        return {row.id for row in conn.execute(_EXISTING, {"ids": wanted})}

    def get(self, workspace_id: uuid.UUID, project_id: uuid.UUID, *, include_stats: bool = False) -> dict[str, Any]:
        found = self.list(workspace_id, ids=[project_id], include_stats=include_stats, limit=1)
        if not found:
            raise NotFound(f"project {project_id} not found", field="session_id")
        return found[0]

    def list(
        self,
        workspace_id: uuid.UUID,
        *,
        name: str | None = None,
        name_contains: str | None = None,
        ids: list[uuid.UUID] | None = None,
        reference_dataset_ids: list[uuid.UUID] | None = None,
        reference_free: bool | None = None,
        include_stats: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Projects, newest first; ``reference_dataset_ids`` keeps the experiments over those datasets,
        ``reference_free`` the projects that are (True) or are not (False) experiments."""
        q = select(projects).where(projects.c.workspace_id == workspace_id)
        if reference_dataset_ids:
            q = q.where(projects.c.reference_dataset_id.in_(reference_dataset_ids))
        if reference_free is not None:
            ref = projects.c.reference_dataset_id
            q = q.where(ref.is_(None) if reference_free else ref.is_not(None))
        if name is not None:
            q = q.where(projects.c.name == name)
        if name_contains:
            q = q.where(projects.c.name.contains(name_contains, autoescape=True))
        if ids is not None:
            q = q.where(projects.c.id.in_(ids))
        q = q.order_by(projects.c.created_at.desc(), projects.c.id).limit(limit).offset(offset)
        with self.db.read() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q)]
            if include_stats and rows:
                stats = conn.execute(
                    select(
                        runs.c.project_id,
                        func.count().label("run_count"),
                        func.max(runs.c.start_us).label("last_start_us"),
                        func.min(runs.c.start_us).label("first_start_us"),
                    )
                    .where(runs.c.workspace_id == workspace_id, runs.c.project_id.in_([r["id"] for r in rows]))
                    .group_by(runs.c.project_id)
                ).all()
                by_id = {s.project_id: s for s in stats}
                for r in rows:
                    s = by_id.get(r["id"])
                    r["run_count"] = s.run_count if s else 0
                    r["last_start_us"] = s.last_start_us if s else None
                    r["first_start_us"] = s.first_start_us if s else None
        for r in rows:
            r["created_at"] = as_utc(r["created_at"])
            r["end_time"] = as_utc(r["end_time"]) if r.get("end_time") else None
        return rows
