"""Runs: upsert by id in any arrival order, side rows for tags and metadata, reads by id or statement."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Executable, Table, bindparam, func, select, tuple_, type_coerce, update
from sqlalchemy.dialects import postgresql, sqlite

from tracetune.store.dictionaries import TRAIN_AFTER, JsonPacker
from tracetune.store.engine import BulkInsert, Database
from tracetune.store.jsonvalues import canonical_json
from tracetune.store.packing import PackedJSON, StoredJSON, frame_dictionary, unpack
from tracetune.store.projects import ProjectStore
from tracetune.store.rows import RunRow
from tracetune.store.schema import run_metadata, run_tags, runs
from tracetune.timeutil import dotted_segment

# Columns of ``runs`` an ingested run record may set (besides workspace_id, id and project_id).
RUN_COLUMNS = (
    "trace_id",
    "parent_run_id",
    "dotted_order",
    "name",
    "run_type",
    "start_us",
    "end_us",
    "first_token_us",
    "error",
    "inputs",
    "outputs",
    "extra",
    "serialized",
    "events",
    "tags",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "thread_id",
    "reference_example_id",
)
DEFAULT_PROJECT = "default"
_UPDATABLE = (*RUN_COLUMNS, "project_id")
# ``runs`` rows are tuples in the table's column order: workspace_id, id, project_id, then the record columns.
_TABLE_COLUMNS = tuple(c.key for c in runs.columns)
_RECORD_COLUMNS = _TABLE_COLUMNS[3:]
assert _TABLE_COLUMNS[:3] == ("workspace_id", "id", "project_id") and set(_RECORD_COLUMNS) == set(RUN_COLUMNS)
_START_AT = _RECORD_COLUMNS.index("start_us")
_PACKED_AT = tuple(i for i, col in enumerate(_RECORD_COLUMNS) if isinstance(runs.c[col].type, PackedJSON))
_PACKED_COLUMNS = tuple(_RECORD_COLUMNS[i] for i in _PACKED_AT)
_UPDATABLE_AT = tuple((col, _TABLE_COLUMNS.index(col)) for col in _UPDATABLE)


# Built once (every write runs it): is any run of the workspace waiting for its parent to be placed?
_ANY_WAITING = (
    select(runs.c.id)
    .where(runs.c.workspace_id == bindparam("ws"), runs.c.dotted_order.is_(None), runs.c.parent_run_id.is_not(None))
    .limit(1)
)
_INFINITIES = (float("inf"), float("-inf"))
_MAX_CACHED_STATEMENTS = 64
_MAX_TREE_DEPTH = 1000  # levels of waiting descendants placed in one write


def metadata_value(value: Any) -> str:
    """``canonical_json(value)``, with the common scalar cases done without the json module (same text)."""
    kind = type(value)
    if kind is str:
        # json.dumps(ensure_ascii=False) escapes only '"', '\\' and control characters, none of them printable
        if value.isprintable() and '"' not in value and "\\" not in value:
            return f'"{value}"'
    elif kind is int:
        return int.__repr__(value)
    elif kind is float:
        if value == value and value not in _INFINITIES:  # json.dumps writes finite floats with float.__repr__
            return float.__repr__(value)
    elif value is None:
        return "null"
    elif value is True:
        return "true"
    elif value is False:
        return "false"
    return canonical_json(value)


def _metadata_rows(records: list[dict[str, Any]]) -> dict[tuple[int, str], tuple[uuid.UUID, str]]:
    """``(run, key) → (run id, value text)`` for every metadata key of ``records`` (keyed by the id's int:
    hashing a UUID object runs Python code)."""
    rows: dict[tuple[int, str], tuple[uuid.UUID, str]] = {}
    for rec in records:
        meta = (rec.get("extra") or {}).get("metadata")
        if isinstance(meta, dict):
            rid = rec["id"]
            number = rid.int
            for key, value in meta.items():
                rows[(number, str(key))] = (rid, metadata_value(value))
    return rows


def _waiting(conn: Connection, workspace_id: uuid.UUID, where: Any) -> list[Any]:
    """Runs matching ``where`` that have a parent but no dotted order yet."""
    q = select(runs.c.id, runs.c.parent_run_id, runs.c.start_us).where(
        runs.c.workspace_id == workspace_id, runs.c.dotted_order.is_(None), runs.c.parent_run_id.is_not(None), where
    )
    return list(conn.execute(q))


def _by_run_id(row: tuple[Any, ...]) -> int:
    return int(row[1].int)


@dataclass
class RunWrite:
    """One ``apply`` call made ready by ``RunStore.prepare``: the statements and their bound rows (``steps``),
    or None when the rows need project ids that only the write transaction can make."""

    workspace_id: uuid.UUID
    posts: list[dict[str, Any]]
    patches: list[dict[str, Any]]
    project_names: set[str]
    steps: list[tuple[BulkInsert, list[Any]]] | None
    project_ids: dict[str, uuid.UUID] | None = None  # the cached ids ``steps`` were built with
    dictionary: Any = None  # a compression dictionary to store with these rows (``JsonPacker.trained``)


class RunStore:
    def __init__(self, db: Database, projects: ProjectStore) -> None:
        self.db = db
        self.projects = projects
        self._project_ids: dict[tuple[uuid.UUID, str], uuid.UUID] = {}  # names this store wrote runs to
        self.packer = JsonPacker(db)
        # Built once: INSERT … ON CONFLICT in this database's dialect (as sqlutil.upsert would pick it).
        self._insert: Callable[[Table], Any] = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
        self._run_upserts: dict[tuple[bool, frozenset[str]], BulkInsert] = {}
        self._add_tags = BulkInsert(self._insert(run_tags).on_conflict_do_nothing())
        self._fill_metadata = BulkInsert(self._insert(run_metadata).on_conflict_do_nothing())
        meta = self._insert(run_metadata)
        self._override_metadata = BulkInsert(
            meta.on_conflict_do_update(
                index_elements=["workspace_id", "run_id", "key"],
                set_={"value": meta.excluded.value},
                # a patch usually repeats the post's metadata: leave equal rows untouched (no page written)
                where=run_metadata.c.value.is_distinct_from(meta.excluded.value),
            )
        )

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

        Side rows: tags are only ever added; a metadata key of a post is filled (kept if the run already has
        it), one of a patch overrides. Where a patch in the same call sets a key of the same run, that
        patch row alone decides the stored value, so the post's row for it is not written at all.

        ``apply`` is ``write(prepare(…), conn)``; a writer that holds a lock around its transaction calls
        ``prepare`` first, outside the lock.
        """
        if not posts and not patches:
            return 0
        if conn is None:
            with self.db.write() as own:
                return self.apply(workspace_id, posts, patches, own)
        return self.write(self.prepare(workspace_id, posts, patches), conn)

    def prepare(self, workspace_id: uuid.UUID, posts: list[dict[str, Any]], patches: list[dict[str, Any]]) -> RunWrite:
        """Everything ``write`` will execute for these records, bound for the database: CPU work only (rows,
        JSON text, bind processing, packing), no I/O but the first call's read of the store's compression
        dictionary. Project names this store has not yet written are resolved (created) inside the transaction,
        so then the rows are built there too. Once enough values were packed, a dictionary is trained here and
        travels in the result, to be stored by ``write``."""
        self.packer.start()
        dictionary = self.packer.trained()
        names = self._project_names(posts, patches)
        known = {name: self._project_ids.get((workspace_id, name)) for name in names}
        if any(pid is None for pid in known.values()):
            return RunWrite(workspace_id, posts, patches, names, None, dictionary=dictionary)
        ids = cast(dict[str, uuid.UUID], known)
        steps = self._steps(workspace_id, posts, patches, ids)
        return RunWrite(workspace_id, posts, patches, names, steps, ids, dictionary)

    def write(self, prepared: RunWrite, conn: Connection) -> int:
        """Execute ``prepared`` in the caller's (write) transaction; returns the number of records."""
        steps = prepared.steps
        ws = prepared.workspace_id
        cached = prepared.project_ids
        if steps is not None and cached and self.projects.existing(conn, cached.values()) != set(cached.values()):
            # A cached project was deleted (by any process) since: forget it, and make the project again by name.
            gone = set(cached.values())
            for key in [k for k, v in self._project_ids.items() if v in gone]:
                self._project_ids.pop(key, None)
            self.projects.forget(ws, gone)
            steps = None
        if steps is None:
            project_ids = self.projects.ids_for_names(conn, ws, prepared.project_names)
            conn.info.setdefault("after_commit", []).append(
                lambda: self._project_ids.update({(ws, name): pid for name, pid in project_ids.items()})
            )
            steps = self._steps(ws, prepared.posts, prepared.patches, project_ids)
        if prepared.dictionary is not None:
            self.packer.store(conn, prepared.dictionary)
        for statement, rows in steps:
            statement.run(conn, rows)
        self._place_in_trees(conn, prepared)
        return len(prepared.posts) + len(prepared.patches)

    def _place_in_trees(self, conn: Connection, prepared: RunWrite) -> None:
        """Give runs stored without a dotted order (a child posted by ``Client.create_run(parent_run_id=…)``) their
        parent's trace id and dotted order + their own segment, as LangSmith does: for the children written now
        whose parent is stored, and for children stored earlier whose parent (or an ancestor) arrives now. The
        common case, no run of the workspace waiting, costs one probe of a partial index."""
        ws = prepared.workspace_id
        lacking = [r["id"] for r in prepared.posts if "dotted_order" not in r and r.get("parent_run_id") is not None]
        if not lacking and conn.execute(_ANY_WAITING, {"ws": ws}).first() is None:
            return
        written = [r["id"] for r in (*prepared.posts, *prepared.patches) if r.get("dotted_order")]
        pending = _waiting(conn, ws, runs.c.id.in_(lacking)) if lacking else []
        for _ in range(_MAX_TREE_DEPTH):
            if written:
                pending += _waiting(conn, ws, runs.c.parent_run_id.in_(written))
            if not pending:
                return
            parent_ids = {row.parent_run_id for row in pending}
            parents = {
                row.id: row
                for row in conn.execute(
                    select(runs.c.id, runs.c.trace_id, runs.c.dotted_order).where(
                        runs.c.workspace_id == ws, runs.c.id.in_(parent_ids), runs.c.dotted_order.is_not(None)
                    )
                )
            }
            placed = []
            for child in pending:
                parent = parents.get(child.parent_run_id)
                if parent is not None:
                    dotted = f"{parent.dotted_order}.{dotted_segment(child.start_us, child.id)}"
                    placed.append({"cid": child.id, "dotted": dotted, "trace": parent.trace_id or parent.id})
            if placed:
                conn.execute(
                    update(runs)
                    .where(runs.c.workspace_id == ws, runs.c.id == bindparam("cid"), runs.c.dotted_order.is_(None))
                    .values(dotted_order=bindparam("dotted"), trace_id=bindparam("trace")),
                    placed,
                )
            written = [p["cid"] for p in placed]  # their own waiting children come next
            pending = []

    @staticmethod
    def _project_names(posts: list[dict[str, Any]], patches: list[dict[str, Any]]) -> set[str]:
        names = {r.get("session_name") or DEFAULT_PROJECT for r in posts if r.get("session_id") is None}
        names |= {r["session_name"] for r in patches if r.get("session_name") and r.get("session_id") is None}
        return names

    def _steps(
        self,
        workspace_id: uuid.UUID,
        posts: list[dict[str, Any]],
        patches: list[dict[str, Any]],
        project_ids: dict[str, uuid.UUID],
    ) -> list[tuple[BulkInsert, list[Any]]]:
        # Every statement writes its rows in id order: two transactions upserting the same runs then take their
        # row locks in the same order, so they queue behind each other instead of deadlocking (PostgreSQL).
        dialect = self.db.engine.dialect
        steps: list[tuple[BulkInsert, list[Any]]] = []
        for records, fill in ((posts, True), (patches, False)):
            rows = sorted((self._row(workspace_id, rec, project_ids, fill) for rec in records), key=_by_run_id)
            for statement, group in self._run_upsert_groups(rows, fill):
                steps.append((statement, statement.prepare(dialect, group)))
        tags = {
            (rec["id"].int, tag): rec["id"]
            for records in (posts, patches)
            for rec in records
            for tag in rec.get("tags") or ()
        }
        tag_rows = [(workspace_id, tags[key], key[1]) for key in sorted(tags)]
        steps.append((self._add_tags, self._add_tags.prepare(dialect, tag_rows)))
        overrides = _metadata_rows(patches)
        fills = {k: v for k, v in _metadata_rows(posts).items() if k not in overrides}
        for statement, meta in ((self._fill_metadata, fills), (self._override_metadata, overrides)):
            rows = [(workspace_id, meta[key][0], key[1], meta[key][1]) for key in sorted(meta)]
            steps.append((statement, statement.prepare(dialect, rows)))
        return [(statement, rows) for statement, rows in steps if rows]

    def _run_upsert_groups(
        self, rows: list[tuple[Any, ...]], fill: bool
    ) -> list[tuple[BulkInsert, list[tuple[Any, ...]]]]:
        """Upserts for ``rows``: a post fills (``COALESCE(stored, new)``), a patch overrides (``COALESCE(new,
        stored)``). Both leave a column alone where the new value is NULL, so each row's ``SET`` names only
        the columns it gives: rows are grouped by that set (one statement per group; the SDKs send one
        shape). An update then rewrites only the indexes over columns it sets."""
        groups: dict[frozenset[str], list[tuple[Any, ...]]] = {}
        for row in rows:
            given = frozenset(col for col, i in _UPDATABLE_AT if row[i] is not None)
            groups.setdefault(given, []).append(row)
        out = []
        for given, group in groups.items():
            key = (fill, given)
            statement = self._run_upserts.get(key)
            if statement is None:
                if len(self._run_upserts) >= _MAX_CACHED_STATEMENTS:
                    self._run_upserts.clear()
                statement = self._run_upserts[key] = BulkInsert(self._upsert(self._insert, given, fill=fill))
            out.append((statement, group))
        return out

    def _row(
        self, workspace_id: uuid.UUID, rec: dict[str, Any], project_ids: dict[str, uuid.UUID], fill: bool
    ) -> tuple[Any, ...]:
        """The ``runs`` row of ``rec`` as a tuple in the table's column order (packed columns compressed)."""
        values = [rec.get(col) for col in _RECORD_COLUMNS]
        for i in _PACKED_AT:
            values[i] = self.packer.pack(values[i])
        if values[_START_AT] is None:  # NOT NULL column: a post that gave no start time starts now
            values[_START_AT] = int(time.time() * 1_000_000)
        if rec.get("session_id") is not None:
            project_id = rec["session_id"]
        elif rec.get("session_name") or fill:
            project_id = project_ids[rec.get("session_name") or DEFAULT_PROJECT]
        else:
            project_id = None
        return (workspace_id, rec["id"], project_id, *values)

    @staticmethod
    def _upsert(insert: Callable[[Table], Any], given: frozenset[str], *, fill: bool) -> Any:
        stmt = insert(runs)
        new = stmt.excluded
        set_ = {
            col: (func.coalesce(runs.c[col], new[col]) if fill else func.coalesce(new[col], runs.c[col]))
            for col in _UPDATABLE
            if col in given
        }
        if not set_:  # nothing given that could change a stored run
            return stmt.on_conflict_do_nothing(index_elements=["workspace_id", "id"])
        return stmt.on_conflict_do_update(index_elements=["workspace_id", "id"], set_=set_)

    def repack(self, batch: int = 2000, progress: Callable[[int, int], None] | None = None) -> int:
        """Pack every stored ``extra``/``serialized``/``events`` value not packed with the store's newest dictionary:
        values stored before packing existed (or before the store had a dictionary), or with an older one. A store
        without a dictionary gets one first, trained on its stored values (when there are enough). Returns the
        runs rewritten; ``progress(runs read, runs in the store)`` after each batch.

        Each batch is read and rewritten in one write transaction (on PostgreSQL its rows locked), so a run
        written meanwhile by a server is never overwritten with its older value."""
        self.packer.start()
        if self.packer.dictionary_id() is None:
            self._train_from_stored()
        current = self.packer.dictionary_id()
        key = (runs.c.workspace_id, runs.c.id)
        columns = [type_coerce(runs.c[name], StoredJSON()).label(name) for name in _PACKED_COLUMNS]
        rewrite = (
            update(runs)
            .where(runs.c.workspace_id == bindparam("ws"), runs.c.id == bindparam("rid"))
            .values({name: bindparam(f"new_{name}") for name in _PACKED_COLUMNS})
        )
        after: tuple[Any, Any] | None = None
        read = rewritten = 0
        with self.db.read() as conn:
            total = int(conn.execute(select(func.count()).select_from(runs)).scalar_one())
        while True:
            with self.db.write() as conn:
                q = select(*key, *columns).order_by(*key).limit(batch).with_for_update()
                if after is not None:
                    q = q.where(tuple_(*key) > tuple_(*after))
                rows = conn.execute(q).all()
                changed = []
                for row in rows:
                    stored = [row._mapping[name] for name in _PACKED_COLUMNS]
                    new = [
                        v if v is None or frame_dictionary(v) == current else self.packer.pack(unpack(v))
                        for v in stored
                    ]
                    if new == stored:  # nothing to repack in this run
                        continue
                    changed.append(
                        {
                            "ws": row.workspace_id,
                            "rid": row.id,
                            **{f"new_{n}": v for n, v in zip(_PACKED_COLUMNS, new, strict=True)},
                        }
                    )
                if changed:
                    conn.execute(rewrite, changed)
            if not rows:
                return rewritten
            read += len(rows)
            rewritten += len(changed)
            after = (rows[-1].workspace_id, rows[-1].id)
            if progress is not None:
                progress(read, total)

    def _train_from_stored(self) -> None:
        """Train and store a dictionary from the first ``TRAIN_AFTER`` stored values (none when too few or too
        alike to learn from)."""
        with self.db.read() as conn:
            for row in conn.execute(select(*(runs.c[n] for n in _PACKED_COLUMNS)).limit(TRAIN_AFTER)):
                for value in row:
                    self.packer.pack(value)  # collects it as a sample
        dictionary = self.packer.trained()
        if dictionary is not None:
            with self.db.write() as conn:
                self.packer.store(conn, dictionary)

    def get(self, workspace_id: uuid.UUID, run_id: uuid.UUID) -> RunRow | None:
        with self.db.read() as conn:
            row = conn.execute(select(runs).where(runs.c.workspace_id == workspace_id, runs.c.id == run_id)).first()
        return cast(RunRow, dict(row._mapping)) if row else None

    def fetch(self, stmt: Executable) -> list[dict[str, Any]]:
        """The rows of a ``SELECT`` over ``runs`` (the query layer's: only the columns it selected)."""
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
