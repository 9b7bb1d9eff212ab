"""Datasets: named sets of examples, versioned; the one store behind LangSmith's dataset API and tracetune's exports.

Every write makes the next version of a dataset (``begin_version`` … ``end_version`` in one transaction). An
example row is one state of an example, valid from the version that wrote it until the version that changed or
deleted it, so a version reads back as it was (``current_at``).

tracetune's exports work on versions: ``create`` writes a new version of dataset ``name`` whose examples are
exactly the export's records (the previous ones end there); ``get``/``list`` return versions (their ``id`` is what
``/tt/v1/datasets``, the UI and a job's metadata call a dataset id); ``iter_records`` streams a version's examples
as training records, in line order, a batch at a time.

``fine_tune_split`` is the one rule for which examples train: ``validation`` when an example's splits name
``validation`` or ``test``, else ``train``.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, NamedTuple, cast

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update

from tracetune.errors import Conflict, InvalidInput, NotFound
from tracetune.store.engine import Database
from tracetune.store.rows import DatasetRow, DatasetVersionRow, ExampleRow
from tracetune.store.schema import dataset_versions, datasets, examples, fine_tuning_jobs, projects
from tracetune.store.sqlutil import advisory_lock, as_utc, utcnow

SPLITS = ("train", "validation")
LATEST = "latest"  # the tag every dataset's newest version carries
HELD_OUT_SPLITS = frozenset({"validation", "test"})
DATA_TYPES = ("kv", "llm", "chat")
_INSERT_BATCH = 500


def _parse_time(value: str) -> datetime | None:
    """``value`` as a time (ISO 8601, ``Z`` allowed), or None when it is not one (then it is a tag)."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def fine_tune_split(splits: Iterable[str] | None) -> str:
    return "validation" if HELD_OUT_SPLITS.intersection(splits or ()) else "train"


class DatasetRecord(NamedTuple):
    """One record of an export: its split, lineage and the JSONL record itself."""

    split: str
    run_ids: list[str]
    trace_id: uuid.UUID | None
    record: dict[str, Any]


class Counts(NamedTuple):
    records: int
    train: int
    validation: int

    def moved(self, added: Iterable[Iterable[str]], removed: Iterable[Iterable[str]] = ()) -> Counts:
        """These counts after examples with the ``added`` split lists appear and the ``removed`` ones end."""
        n, t, v = self
        for sign, group in ((1, added), (-1, removed)):
            for splits in group:
                n += sign
                if fine_tune_split(splits) == "train":
                    t += sign
                else:
                    v += sign
        return Counts(n, t, v)


class VersionWrite(NamedTuple):
    """An open write of the next version of ``dataset`` (see ``begin_version``)."""

    dataset: DatasetRow
    version: int
    as_of: datetime
    counts: Counts  # the previous version's
    lineage: dict[str, Any]  # the previous version's selection, options and summary


def _dataset(row: Any) -> DatasetRow:
    out = dict(row._mapping)
    out["created_at"], out["modified_at"] = as_utc(out["created_at"]), as_utc(out["modified_at"])
    return cast(DatasetRow, out)


def _version(row: Any) -> DatasetVersionRow:
    out = dict(row._mapping)
    out["as_of"] = as_utc(out["as_of"])
    return cast(DatasetVersionRow, out)


def example_row(row: Any) -> ExampleRow:
    out = dict(row._mapping)
    out["created_at"], out["modified_at"] = as_utc(out["created_at"]), as_utc(out["modified_at"])
    return cast(ExampleRow, out)


def current_at(version: int | None) -> Any:
    """The example rows valid in ``version`` (None: the newest)."""
    if version is None:
        return examples.c.valid_to.is_(None)
    return and_(examples.c.valid_from <= version, or_(examples.c.valid_to.is_(None), examples.c.valid_to > version))


def begin_version(conn: Connection, workspace_id: uuid.UUID, dataset_id: uuid.UUID) -> VersionWrite:
    """Start writing the next version of a dataset (writers of one dataset are serialised until commit). Its
    ``as_of`` is now, or just after the previous version's when the clock has not moved on."""
    advisory_lock(conn, f"dataset:{dataset_id}")
    row = conn.execute(
        select(datasets).where(datasets.c.workspace_id == workspace_id, datasets.c.id == dataset_id)
    ).first()
    if row is None:
        raise NotFound(f"dataset {dataset_id} not found", field="dataset_id")
    dataset = _dataset(row)
    prev = conn.execute(
        select(dataset_versions).where(
            dataset_versions.c.dataset_id == dataset_id, dataset_versions.c.version == dataset["version"]
        )
    ).first()
    as_of = utcnow()
    counts = Counts(0, 0, 0)
    lineage: dict[str, Any] = {}
    if prev is not None:
        after_prev = cast(datetime, as_utc(prev.as_of)) + timedelta(microseconds=1)
        as_of = max(as_of, after_prev)
        counts = Counts(prev.record_count, prev.train_count, prev.validation_count)
        lineage = {"selection": prev.selection, "options": prev.options, "summary": prev.summary}
    return VersionWrite(dataset, dataset["version"] + 1, as_of, counts, lineage)


def end_version(
    conn: Connection, write: VersionWrite, counts: Counts, *, source: str = "api", **export: Any
) -> DatasetVersionRow:
    """Record the version ``write`` made, holding ``counts`` examples (``export``: selection, options, summary; an
    edit through the examples API keeps the previous version's, so an edited export still says where its records
    came from and what format they are)."""
    values = {
        "id": uuid.uuid4(),
        "dataset_id": write.dataset["id"],
        "workspace_id": write.dataset["workspace_id"],
        "version": write.version,
        "as_of": write.as_of,
        "tags": [],
        "source": source,
        "record_count": counts.records,
        "train_count": counts.train,
        "validation_count": counts.validation,
        **write.lineage,
        **export,
    }
    conn.execute(insert(dataset_versions).values(values))
    conn.execute(
        update(datasets)
        .where(datasets.c.id == write.dataset["id"])
        .values(version=write.version, modified_at=write.as_of)
    )
    return cast(DatasetVersionRow, {"selection": None, "options": None, "summary": None, **values})


class DatasetStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- datasets ------------------------------------------------------------------------------------------------

    def create_dataset(
        self,
        workspace_id: uuid.UUID,
        name: str,
        *,
        data_type: str = "kv",
        conn: Connection | None = None,
        **fields: Any,
    ) -> DatasetRow:
        """A new, empty dataset (version 0). 409 when the name is taken in the workspace."""
        if not 0 < len(name) <= 200 or "\x00" in name:
            raise InvalidInput("a dataset name must be 1 to 200 characters", field="name")
        if data_type not in DATA_TYPES:
            raise InvalidInput(
                f"data_type must be one of {', '.join(DATA_TYPES)}, not {data_type!r}", field="data_type"
            )
        now = utcnow()
        row = {
            "id": fields.pop("id", None) or uuid.uuid4(),
            "workspace_id": workspace_id,
            "name": name,
            "data_type": data_type,
            "version": 0,
            "created_at": now,
            "modified_at": now,
            **{k: fields.get(k) for k in ("description", "metadata", "inputs_schema", "outputs_schema")},
            "transformations": fields.get("transformations"),
        }

        def write(c: Connection) -> None:
            advisory_lock(c, f"dataset-name:{workspace_id}:{name}")
            taken = c.execute(
                select(datasets.c.id).where(
                    or_(
                        datasets.c.id == row["id"],
                        and_(datasets.c.workspace_id == workspace_id, datasets.c.name == name),
                    )
                )
            ).first()
            if taken is not None:
                raise Conflict(f"a dataset named {name!r} (or with that id) already exists", field="name")
            c.execute(insert(datasets).values(row))

        if conn is not None:
            write(conn)
        else:
            with self.db.write() as c:
                write(c)
        return cast(DatasetRow, row)

    def dataset(self, workspace_id: uuid.UUID, dataset_id: uuid.UUID) -> DatasetRow:
        with self.db.read() as conn:
            row = conn.execute(
                select(datasets).where(datasets.c.workspace_id == workspace_id, datasets.c.id == dataset_id)
            ).first()
        if row is None:
            raise NotFound(f"dataset {dataset_id} not found", field="dataset_id")
        return _dataset(row)

    def list_datasets(
        self,
        workspace_id: uuid.UUID,
        *,
        ids: Sequence[uuid.UUID] | None = None,
        name: str | None = None,
        name_contains: str | None = None,
        data_type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> builtins.list[dict[str, Any]]:
        """Datasets, newest first, each with ``example_count`` (its newest version's), ``session_count`` and
        ``last_session_start_time`` (its experiments). ``metadata``: every key/value must match."""
        sessions = (
            select(
                projects.c.reference_dataset_id.label("ds"),
                func.count().label("session_count"),
                func.max(projects.c.created_at).label("last_session_start_time"),
            )
            .where(projects.c.workspace_id == workspace_id, projects.c.reference_dataset_id.is_not(None))
            .group_by(projects.c.reference_dataset_id)
            .subquery()
        )
        q = (
            select(
                datasets,
                dataset_versions.c.record_count,
                sessions.c.session_count,
                sessions.c.last_session_start_time,
            )
            .outerjoin(
                dataset_versions,
                and_(dataset_versions.c.dataset_id == datasets.c.id, dataset_versions.c.version == datasets.c.version),
            )
            .outerjoin(sessions, sessions.c.ds == datasets.c.id)
            .where(datasets.c.workspace_id == workspace_id)
        )
        if ids:
            q = q.where(datasets.c.id.in_(list(ids)))
        if name is not None:
            q = q.where(datasets.c.name == name)
        if name_contains:
            q = q.where(func.lower(datasets.c.name).contains(name_contains.lower(), autoescape=True))
        if data_type is not None:
            q = q.where(datasets.c.data_type == data_type)
        q = q.order_by(datasets.c.created_at.desc(), datasets.c.id)
        if not metadata:
            q = q.offset(offset).limit(limit)
        with self.db.read() as conn:
            rows = builtins.list(conn.execute(q))
        out = []
        for row in rows:
            m = dict(row._mapping)
            if metadata and any((m["metadata"] or {}).get(k) != v for k, v in metadata.items()):
                continue
            view = {**_dataset(row), "example_count": m["record_count"] or 0, "session_count": m["session_count"] or 0}
            view["last_session_start_time"] = as_utc(m["last_session_start_time"])
            out.append(view)
        return out[offset : offset + limit] if metadata else out

    def update_dataset(self, workspace_id: uuid.UUID, dataset_id: uuid.UUID, **fields: Any) -> DatasetRow:
        """Change a dataset's name, description, metadata, schemas or transformations (not a new version)."""
        unknown = set(fields) - {
            "name",
            "description",
            "metadata",
            "inputs_schema",
            "outputs_schema",
            "transformations",
        }
        if unknown:
            raise InvalidInput(f"cannot update {sorted(unknown)[0]}", field=sorted(unknown)[0])
        with self.db.write() as conn:
            current = self._dataset_in(conn, workspace_id, dataset_id)
            name = fields.get("name")
            if name is not None and name != current["name"]:
                if not 0 < len(name) <= 200 or "\x00" in name:
                    raise InvalidInput("a dataset name must be 1 to 200 characters", field="name")
                advisory_lock(conn, f"dataset-name:{workspace_id}:{name}")
                taken = conn.execute(
                    select(datasets.c.id).where(datasets.c.workspace_id == workspace_id, datasets.c.name == name)
                ).first()
                if taken is not None:
                    raise Conflict(f"a dataset named {name!r} already exists", field="name")
            values = {k: v for k, v in fields.items() if v is not None}
            if values:
                values["modified_at"] = utcnow()
                conn.execute(update(datasets).where(datasets.c.id == dataset_id).values(values))
            return self._dataset_in(conn, workspace_id, dataset_id)

    def delete_dataset(self, workspace_id: uuid.UUID, dataset_id: uuid.UUID) -> None:
        """Delete a dataset, its versions and examples; its experiments stay (their reference is cleared). 409 when a
        fine-tuning job was trained on one of its versions: the job's lineage (job → dataset → runs) must survive."""
        with self.db.write() as conn:
            self._dataset_in(conn, workspace_id, dataset_id)
            version_ids = {
                str(v)
                for v in conn.scalars(select(dataset_versions.c.id).where(dataset_versions.c.dataset_id == dataset_id))
            }
            version_ids.add(str(dataset_id))
            jobs = conn.execute(
                select(fine_tuning_jobs.c.id, fine_tuning_jobs.c.user_metadata).where(
                    fine_tuning_jobs.c.workspace_id == workspace_id, fine_tuning_jobs.c.user_metadata.is_not(None)
                )
            )
            for job_id, meta in jobs:
                if isinstance(meta, dict) and meta.get("dataset_id") in version_ids:
                    raise Conflict(
                        f"dataset {dataset_id} cannot be deleted: fine-tuning job {job_id} was trained on it and "
                        "its lineage (job → dataset → runs) must survive; delete the job first, or keep the dataset",
                        field="dataset_id",
                    )
            conn.execute(
                update(projects).where(projects.c.reference_dataset_id == dataset_id).values(reference_dataset_id=None)
            )
            conn.execute(delete(examples).where(examples.c.dataset_id == dataset_id))
            conn.execute(delete(dataset_versions).where(dataset_versions.c.dataset_id == dataset_id))
            conn.execute(delete(datasets).where(datasets.c.id == dataset_id))

    @staticmethod
    def _dataset_in(conn: Connection, workspace_id: uuid.UUID, dataset_id: uuid.UUID) -> DatasetRow:
        row = conn.execute(
            select(datasets).where(datasets.c.workspace_id == workspace_id, datasets.c.id == dataset_id)
        ).first()
        if row is None:
            raise NotFound(f"dataset {dataset_id} not found", field="dataset_id")
        return _dataset(row)

    # -- LangSmith versions: as_of times and tags ----------------------------------------------------------------

    def versions(
        self, workspace_id: uuid.UUID, dataset_id: uuid.UUID, *, offset: int = 0, limit: int = 100
    ) -> builtins.list[DatasetVersionRow]:
        """The dataset's versions, newest first; the newest also carries the tag ``latest``."""
        dataset = self.dataset(workspace_id, dataset_id)
        q = (
            select(dataset_versions)
            .where(dataset_versions.c.dataset_id == dataset_id)
            .order_by(dataset_versions.c.version.desc())
        )
        with self.db.read() as conn:
            rows = [_version(r) for r in conn.execute(q.offset(offset).limit(limit))]
        for row in rows:
            if row["version"] == dataset["version"]:
                row["tags"] = [*row["tags"], LATEST]
        return rows

    def version_at(self, workspace_id: uuid.UUID, dataset_id: uuid.UUID, as_of: str | datetime | None) -> int | None:
        """The version LangSmith's ``as_of`` names: None or ``latest`` → the newest (None), a time → the newest
        version at that time (0 before the first), anything else → the version carrying that tag (404 if none)."""
        if as_of is None or as_of == LATEST:
            return None
        when = as_of if isinstance(as_of, datetime) else _parse_time(as_of)
        with self.db.read() as conn:
            self._dataset_in(conn, workspace_id, dataset_id)
            q = select(dataset_versions.c.version, dataset_versions.c.as_of, dataset_versions.c.tags).where(
                dataset_versions.c.dataset_id == dataset_id
            )
            rows = builtins.list(conn.execute(q.order_by(dataset_versions.c.version)))
        if when is not None:
            limit = cast(datetime, as_utc(when))
            at = [v for v, t, _ in rows if cast(datetime, as_utc(t)) <= limit]
            return at[-1] if at else 0
        for version, _, tags in rows:
            if as_of in tags:
                return cast(int, version)
        raise NotFound(f"dataset {dataset_id} has no version tagged {as_of!r}", field="as_of")

    def tag(self, workspace_id: uuid.UUID, dataset_id: uuid.UUID, as_of: datetime, tag: str) -> DatasetVersionRow:
        """Put ``tag`` on the version made exactly at ``as_of``, moving it off any other version of the dataset."""
        if not 0 < len(tag) <= 100 or tag == LATEST:
            raise InvalidInput(f"a tag is 1 to 100 characters and not {LATEST!r}", field="tag")
        with self.db.write() as conn:
            self._dataset_in(conn, workspace_id, dataset_id)
            advisory_lock(conn, f"dataset:{dataset_id}")
            rows = [
                _version(r)
                for r in conn.execute(select(dataset_versions).where(dataset_versions.c.dataset_id == dataset_id))
            ]
            target = next((r for r in rows if r["as_of"] == as_utc(as_of)), None)
            if target is None:
                raise NotFound(
                    f"dataset {dataset_id} has no version made at {as_of.isoformat()}: pass a version's exact as_of "
                    "(list_dataset_versions)",
                    field="as_of",
                )
            for row in rows:
                tags = [t for t in row["tags"] if t != tag] + ([tag] if row["id"] == target["id"] else [])
                if tags != row["tags"]:
                    conn.execute(update(dataset_versions).where(dataset_versions.c.id == row["id"]).values(tags=tags))
                    row["tags"] = tags
        return target

    # -- tracetune exports: versions -----------------------------------------------------------------------------

    def create(
        self,
        workspace_id: uuid.UUID,
        *,
        name: str,
        selection: dict[str, Any],
        options: dict[str, Any],
        summary: dict[str, Any],
        records: Iterable[DatasetRecord],
        to_example: Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, Any] | None]],
    ) -> dict[str, Any]:
        """Store a new version of dataset ``name`` (created as a chat dataset if new) holding exactly ``records``
        (consumed once, in batches; ``to_example`` splits a record into example inputs and outputs)."""
        if not 0 < len(name) <= 200 or "\x00" in name:
            raise InvalidInput("a dataset name must be 1 to 200 characters", field="name")
        with self.db.write() as conn:
            advisory_lock(conn, f"dataset-name:{workspace_id}:{name}")
            found = conn.execute(
                select(datasets.c.id).where(datasets.c.workspace_id == workspace_id, datasets.c.name == name)
            ).scalar()
            dataset_id = found or self.create_dataset(workspace_id, name, data_type="chat", conn=conn)["id"]
            write = begin_version(conn, workspace_id, dataset_id)
            conn.execute(
                update(examples)
                .where(examples.c.dataset_id == dataset_id, examples.c.valid_to.is_(None))
                .values(valid_to=write.version)
            )
            counts = Counts(0, 0, 0)
            line = 0
            it = iter(records)
            while batch := list(islice(it, _INSERT_BATCH)):
                rows = []
                for rec in batch:
                    if rec.split not in SPLITS:
                        raise InvalidInput(f"split must be one of {SPLITS}, not {rec.split!r}", field="split")
                    line += 1
                    inputs, outputs = to_example(rec.record)
                    rows.append(
                        {
                            "id": uuid.uuid4(),
                            "dataset_id": dataset_id,
                            "workspace_id": workspace_id,
                            "line": line,
                            "inputs": inputs,
                            "outputs": outputs,
                            "metadata": None,
                            "splits": [rec.split],
                            "source_run_id": uuid.UUID(rec.run_ids[-1]) if rec.run_ids else None,
                            "run_ids": rec.run_ids,
                            "trace_id": rec.trace_id,
                            "created_at": write.as_of,
                            "modified_at": write.as_of,
                            "valid_from": write.version,
                            "valid_to": None,
                        }
                    )
                counts = counts.moved([rec.split] for rec in batch)
                conn.execute(insert(examples), rows)
            version = end_version(
                conn, write, counts, source="export", selection=selection, options=options, summary=summary
            )
        return self.get(workspace_id, version["id"])

    def _versions(self) -> Any:
        return select(dataset_versions, datasets.c.name, datasets.c.data_type).join(
            datasets, datasets.c.id == dataset_versions.c.dataset_id
        )

    @staticmethod
    def _view(row: Any) -> dict[str, Any]:
        out = dict(row._mapping)
        out["as_of"] = as_utc(out["as_of"])
        out["created_at"] = out["as_of"]
        for key in ("selection", "options", "summary"):
            out[key] = out[key] or {}
        return out

    def get(self, workspace_id: uuid.UUID, version_id: uuid.UUID) -> dict[str, Any]:
        """One version with its dataset's ``name`` and ``data_type`` (``id`` is the version's)."""
        q = self._versions().where(dataset_versions.c.workspace_id == workspace_id, dataset_versions.c.id == version_id)
        with self.db.read() as conn:
            row = conn.execute(q).first()
        if row is None:
            raise NotFound(f"dataset {version_id} not found", field="dataset_id")
        return self._view(row)

    def list(
        self, workspace_id: uuid.UUID, *, name: str | None = None, limit: int = 100, offset: int = 0
    ) -> builtins.list[dict[str, Any]]:
        """Versions of the workspace's datasets, newest first."""
        q = self._versions().where(dataset_versions.c.workspace_id == workspace_id)
        if name is not None:
            q = q.where(datasets.c.name == name)
        q = q.order_by(dataset_versions.c.as_of.desc(), datasets.c.name, dataset_versions.c.version.desc())
        with self.db.read() as conn:
            return [self._view(r) for r in conn.execute(q.limit(limit).offset(offset))]

    def iter_records(
        self,
        workspace_id: uuid.UUID,
        version_id: uuid.UUID,
        to_record: Callable[[ExampleRow], dict[str, Any]],
        *,
        split: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The version's examples in line order as ``{"line", "example_id", "split", "run_ids", "trace_id",
        "record"}``
        (``to_record`` makes the training record of an example), streamed. Raises ``NotFound`` before yielding
        anything when the version is not in the workspace."""
        if split is not None and split not in SPLITS:
            raise InvalidInput(f"split must be one of {', '.join(SPLITS)}, not {split!r}", field="split")
        version = self.get(workspace_id, version_id)
        return self._stream(version["dataset_id"], version["version"], split, to_record)

    def iter_dataset(
        self,
        workspace_id: uuid.UUID,
        dataset_id: uuid.UUID,
        version: int | None,
        to_record: Callable[[ExampleRow], dict[str, Any]],
    ) -> Iterator[dict[str, Any]]:
        """Like ``iter_records``, for a dataset as of ``version`` (None: the newest)."""
        dataset = self.dataset(workspace_id, dataset_id)
        return self._stream(dataset_id, dataset["version"] if version is None else version, None, to_record)

    def _stream(
        self, dataset_id: uuid.UUID, version: int, split: str | None, to_record: Callable[[ExampleRow], dict[str, Any]]
    ) -> Iterator[dict[str, Any]]:
        q = select(examples).where(examples.c.dataset_id == dataset_id, current_at(version))
        with self.db.read() as conn:
            result = conn.execute(q.order_by(examples.c.line).execution_options(yield_per=_INSERT_BATCH))
            for row in result:
                ex = example_row(row)
                ex_split = fine_tune_split(ex["splits"])
                if split is not None and ex_split != split:
                    continue
                yield {
                    "line": ex["line"],
                    "example_id": str(ex["id"]),
                    "split": ex_split,
                    "run_ids": ex["run_ids"] or ([str(ex["source_run_id"])] if ex["source_run_id"] else []),
                    "trace_id": str(ex["trace_id"]) if ex["trace_id"] else None,
                    "record": to_record(ex),
                }
