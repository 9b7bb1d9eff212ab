"""Datasets: named, versioned exports (selection + options + summary) and their records with lineage.

``create`` writes a dataset and all of its records in one transaction (a reader sees all or nothing); the
version is one more than the newest of that name in the workspace (concurrent creates of one name are
serialised). ``iter_records`` streams the records back in line order, a batch at a time.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, NamedTuple

from sqlalchemy import func, insert, select

from tracetune.errors import InvalidInput, NotFound
from tracetune.store.engine import Database
from tracetune.store.schema import dataset_records, datasets
from tracetune.store.sqlutil import advisory_lock, as_utc, utcnow

SPLITS = ("train", "validation")
_INSERT_BATCH = 500


class DatasetRecord(NamedTuple):
    """One record of a dataset as stored: its split, lineage and the JSONL record itself."""

    split: str
    run_ids: list[str]
    trace_id: uuid.UUID | None
    record: dict[str, Any]


def _view(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    out["created_at"] = as_utc(out["created_at"])
    return out


class DatasetStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self,
        workspace_id: uuid.UUID,
        *,
        name: str,
        selection: dict[str, Any],
        options: dict[str, Any],
        summary: dict[str, Any],
        records: Iterable[DatasetRecord],
    ) -> dict[str, Any]:
        """Store a new version of dataset ``name`` holding ``records`` (consumed once, in batches)."""
        if not 0 < len(name) <= 200 or "\x00" in name:
            raise InvalidInput("a dataset name must be 1 to 200 characters", field="name")
        dataset_id = uuid.uuid4()
        counts = dict.fromkeys(SPLITS, 0)
        with self.db.write() as conn:
            advisory_lock(conn, f"dataset:{workspace_id}:{name}")
            newest = conn.execute(
                select(func.max(datasets.c.version)).where(
                    datasets.c.workspace_id == workspace_id, datasets.c.name == name
                )
            ).scalar()
            conn.execute(
                insert(datasets).values(
                    id=dataset_id,
                    workspace_id=workspace_id,
                    name=name,
                    version=(newest or 0) + 1,
                    selection=selection,
                    options=options,
                    summary=summary,
                    record_count=0,
                    train_count=0,
                    validation_count=0,
                    created_at=utcnow(),
                )
            )
            line = 0
            it = iter(records)
            while batch := list(islice(it, _INSERT_BATCH)):
                rows = []
                for rec in batch:
                    if rec.split not in counts:
                        raise InvalidInput(f"split must be one of {SPLITS}, not {rec.split!r}", field="split")
                    line += 1
                    counts[rec.split] += 1
                    rows.append(
                        {
                            "dataset_id": dataset_id,
                            "line": line,
                            "split": rec.split,
                            "run_ids": rec.run_ids,
                            "trace_id": rec.trace_id,
                            "record": rec.record,
                        }
                    )
                conn.execute(insert(dataset_records), rows)
            conn.execute(
                datasets.update()
                .where(datasets.c.id == dataset_id)
                .values(record_count=line, train_count=counts["train"], validation_count=counts["validation"])
            )
        return self.get(workspace_id, dataset_id)

    def get(self, workspace_id: uuid.UUID, dataset_id: uuid.UUID) -> dict[str, Any]:
        with self.db.read() as conn:
            row = conn.execute(
                select(datasets).where(datasets.c.workspace_id == workspace_id, datasets.c.id == dataset_id)
            ).first()
        if row is None:
            raise NotFound(f"dataset {dataset_id} not found", field="dataset_id")
        return _view(row)

    def list(
        self, workspace_id: uuid.UUID, *, name: str | None = None, limit: int = 100, offset: int = 0
    ) -> builtins.list[dict[str, Any]]:
        """Datasets of the workspace, newest first (by name, then version, when ``name`` is given)."""
        q = select(datasets).where(datasets.c.workspace_id == workspace_id)
        if name is not None:
            q = q.where(datasets.c.name == name)
        q = q.order_by(datasets.c.created_at.desc(), datasets.c.name, datasets.c.version.desc())
        with self.db.read() as conn:
            return [_view(r) for r in conn.execute(q.limit(limit).offset(offset))]

    def iter_records(
        self, workspace_id: uuid.UUID, dataset_id: uuid.UUID, *, split: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """The dataset's records in line order (``{"line", "split", "run_ids", "trace_id", "record"}``),
        streamed. Raises ``NotFound`` before yielding anything when the dataset is not in the workspace."""
        if split is not None and split not in SPLITS:
            raise InvalidInput(f"split must be one of {', '.join(SPLITS)}, not {split!r}", field="split")
        self.get(workspace_id, dataset_id)
        return self._stream(dataset_id, split)

    def _stream(self, dataset_id: uuid.UUID, split: str | None) -> Iterator[dict[str, Any]]:
        q = select(
            dataset_records.c.line,
            dataset_records.c.split,
            dataset_records.c.run_ids,
            dataset_records.c.trace_id,
            dataset_records.c.record,
        ).where(dataset_records.c.dataset_id == dataset_id)
        if split is not None:
            q = q.where(dataset_records.c.split == split)
        with self.db.read() as conn:
            result = conn.execute(q.order_by(dataset_records.c.line).execution_options(yield_per=_INSERT_BATCH))
            for row in result:
                yield {
                    "line": row.line,
                    "split": row.split,
                    "run_ids": row.run_ids,
                    "trace_id": str(row.trace_id) if row.trace_id else None,
                    "record": row.record,
                }
