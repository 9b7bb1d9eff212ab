"""Examples written one at a time through LangSmith's API: add, update, delete, read (as of a version) and list.

Every call is one new version of each dataset it touches (``tracetune.store.datasets.begin_version``): an update
ends the example's current row and writes its next state under the same id and line; a delete ends it. Reads take
a version (``DatasetStore.version_at`` resolves LangSmith's ``as_of``: a time or a tag) and see the rows valid in it.
An example's splits default to ``["base"]``, as LangSmith's do.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Connection, func, insert, select, update

from tracetune.errors import Conflict, InvalidInput, NotFound
from tracetune.store.datasets import begin_version, current_at, end_version, example_row
from tracetune.store.engine import Database
from tracetune.store.rows import DatasetVersionRow, ExampleRow
from tracetune.store.schema import examples
from tracetune.store.sqlutil import as_utc

DEFAULT_SPLITS = ["base"]
_ID_CHUNK = 500


class NewExample(NamedTuple):
    """An example to add (already validated by the caller: objects, a list of split names)."""

    inputs: dict[str, Any]
    outputs: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    splits: list[str] | None = None
    id: uuid.UUID | None = None
    created_at: datetime | None = None
    source_run_id: uuid.UUID | None = None
    trace_id: uuid.UUID | None = None


class ExampleChange(NamedTuple):
    """New values for an example's fields; None leaves a field as it is."""

    id: uuid.UUID
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    splits: list[str] | None = None


def _chunks(ids: Sequence[uuid.UUID]) -> Iterable[Sequence[uuid.UUID]]:
    for i in range(0, len(ids), _ID_CHUNK):
        yield ids[i : i + _ID_CHUNK]


def _current(conn: Connection, workspace_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, ExampleRow]:
    """The current rows of examples ``ids``; 404 naming the first one that is not in the workspace."""
    found: dict[uuid.UUID, ExampleRow] = {}
    for chunk in _chunks(ids):
        q = select(examples).where(
            examples.c.workspace_id == workspace_id, examples.c.id.in_(chunk), examples.c.valid_to.is_(None)
        )
        found.update((r.id, example_row(r)) for r in conn.execute(q))
    for i, example_id in enumerate(ids):
        if example_id not in found:
            raise NotFound(f"example {example_id} not found", field=f"example_ids[{i}]")
    return found


class ExampleStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(
        self, workspace_id: uuid.UUID, dataset_id: uuid.UUID, new: Sequence[NewExample]
    ) -> tuple[builtins.list[ExampleRow], DatasetVersionRow]:
        """Add ``new`` to the dataset as its next version; 409 when an id is taken."""
        with self.db.write() as conn:
            write = begin_version(conn, workspace_id, dataset_id)
            ids = [ex.id or uuid.uuid4() for ex in new]
            if len(set(ids)) != len(ids):
                raise InvalidInput("two examples have the same id", field="id")
            for chunk in _chunks(ids):
                taken = conn.execute(select(examples.c.id).where(examples.c.id.in_(chunk)).limit(1)).scalar()
                if taken is not None:
                    raise Conflict(f"an example with id {taken} already exists", field="id")
            line = conn.execute(select(func.max(examples.c.line)).where(examples.c.dataset_id == dataset_id)).scalar()
            line = line or 0
            rows = []
            for example_id, ex in zip(ids, new, strict=True):
                line += 1
                rows.append(
                    {
                        "id": example_id,
                        "dataset_id": dataset_id,
                        "workspace_id": workspace_id,
                        "line": line,
                        "inputs": ex.inputs,
                        "outputs": ex.outputs,
                        "metadata": ex.metadata,
                        "splits": ex.splits or DEFAULT_SPLITS,
                        "source_run_id": ex.source_run_id,
                        "run_ids": [str(ex.source_run_id)] if ex.source_run_id else None,
                        "trace_id": ex.trace_id,
                        "created_at": as_utc(ex.created_at) or write.as_of,
                        "modified_at": write.as_of,
                        "valid_from": write.version,
                        "valid_to": None,
                    }
                )
            if rows:
                conn.execute(insert(examples), rows)
            version = end_version(conn, write, write.counts.moved(cast(list[str], r["splits"]) for r in rows))
        return [cast(ExampleRow, r) for r in rows], version

    def change(self, workspace_id: uuid.UUID, changes: Sequence[ExampleChange]) -> builtins.list[ExampleRow]:
        """Apply ``changes`` (one new version of each dataset touched); the examples' new states."""

        def apply(old: ExampleRow, change: ExampleChange | None, version: int, as_of: datetime) -> ExampleRow | None:
            assert change is not None
            new = {k: v for k, v in old.items() if k != "row_id"}
            for key in ("inputs", "outputs", "metadata", "splits"):
                value = getattr(change, key)
                if value is not None:
                    new[key] = value
            return cast(ExampleRow, {**new, "modified_at": as_of, "valid_from": version, "valid_to": None})

        return self._rewrite(workspace_id, {c.id: c for c in changes}, apply)

    def delete(self, workspace_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> None:
        """End examples ``ids`` (one new version of each dataset touched); older versions still hold them."""
        self._rewrite(workspace_id, dict.fromkeys(ids), lambda old, change, version, as_of: None)

    def _rewrite(
        self,
        workspace_id: uuid.UUID,
        by_id: Mapping[uuid.UUID, ExampleChange | None],
        apply: Callable[[ExampleRow, ExampleChange | None, int, datetime], ExampleRow | None],
    ) -> builtins.list[ExampleRow]:
        """End the current rows of ``by_id``'s examples and insert what ``apply`` makes of each (None: nothing)."""
        written: builtins.list[ExampleRow] = []
        with self.db.write() as conn:
            current = _current(conn, workspace_id, list(by_id))
            by_dataset: dict[uuid.UUID, builtins.list[ExampleRow]] = {}
            for row in current.values():
                by_dataset.setdefault(row["dataset_id"], []).append(row)
            for dataset_id, olds in by_dataset.items():
                write = begin_version(conn, workspace_id, dataset_id)
                for chunk in _chunks([o["row_id"] for o in olds]):  # type: ignore[misc]
                    conn.execute(update(examples).where(examples.c.row_id.in_(chunk)).values(valid_to=write.version))
                news = [apply(o, by_id[o["id"]], write.version, write.as_of) for o in olds]
                kept = [n for n in news if n is not None]
                if kept:
                    conn.execute(insert(examples), kept)
                counts = write.counts.moved((n["splits"] for n in kept), (o["splits"] for o in olds))
                end_version(conn, write, counts)
                written.extend(kept)
        return written

    def get(
        self, workspace_id: uuid.UUID, example_id: uuid.UUID, version_of: Callable[[uuid.UUID], int | None]
    ) -> ExampleRow:
        """Example ``example_id`` as it is in the version ``version_of(dataset_id)`` picks (None: now)."""
        with self.db.read() as conn:
            dataset_id = conn.execute(
                select(examples.c.dataset_id)
                .where(examples.c.workspace_id == workspace_id, examples.c.id == example_id)
                .limit(1)
            ).scalar()
            row = None
            if dataset_id is not None:
                q = select(examples).where(examples.c.id == example_id, current_at(version_of(dataset_id)))
                row = conn.execute(q).first()
        if row is None:
            raise NotFound(f"example {example_id} not found", field="example_id")
        return example_row(row)

    def list(
        self,
        workspace_id: uuid.UUID,
        *,
        dataset_id: uuid.UUID | None = None,
        version: int | None = None,
        ids: Sequence[uuid.UUID] | None = None,
        splits: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        where: Callable[[ExampleRow], bool] | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> builtins.list[ExampleRow]:
        """Examples in line order: a dataset's (as of ``version``) or the workspace's current ones, with any of
        ``splits``, every ``metadata`` key/value and ``where`` true (filters on JSON values run here, over the
        dataset's rows)."""
        q = select(examples).where(examples.c.workspace_id == workspace_id, current_at(version))
        if dataset_id is not None:
            q = q.where(examples.c.dataset_id == dataset_id)
        if ids:
            q = q.where(examples.c.id.in_(list(ids)))
        q = q.order_by(examples.c.dataset_id, examples.c.line)
        if not splits and not metadata and where is None:
            with self.db.read() as conn:
                return [example_row(r) for r in conn.execute(q.offset(offset).limit(limit))]
        wanted = set(splits or ())
        out: builtins.list[ExampleRow] = []
        with self.db.read() as conn:
            for r in conn.execute(q.execution_options(yield_per=_ID_CHUNK)):
                ex = example_row(r)
                if wanted and not wanted.intersection(ex["splits"]):
                    continue
                if metadata and any((ex["metadata"] or {}).get(k) != v for k, v in metadata.items()):
                    continue
                if where is not None and not where(ex):
                    continue
                if offset:
                    offset -= 1
                    continue
                out.append(ex)
                if len(out) >= limit:
                    break
        return out

    def splits(self, workspace_id: uuid.UUID, dataset_id: uuid.UUID, version: int | None) -> builtins.list[str]:
        """The split names the dataset's examples carry in ``version``, sorted."""
        q = select(examples.c.splits).where(
            examples.c.workspace_id == workspace_id, examples.c.dataset_id == dataset_id, current_at(version)
        )
        names: set[str] = set()
        with self.db.read() as conn:
            for (splits,) in conn.execute(q.execution_options(yield_per=_ID_CHUNK)):
                names.update(splits)
        return sorted(names)


__all__ = ["DEFAULT_SPLITS", "ExampleChange", "ExampleStore", "NewExample"]
