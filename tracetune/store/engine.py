"""Opening the database: engine with the right pragmas, and Alembic upgrade to head on open."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy import (
    ARRAY,
    JSON,
    Connection,
    Engine,
    String,
    Text,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import Insert

from tracetune.errors import Conflict, NotFound

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# PostgreSQL's answers that mean "this transaction lost a race; run it again": deadlock_detected and
# serialization_failure. Nothing of the transaction was committed, so running it again is safe.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
WRITE_ATTEMPTS = 6
# A new SQLite database's page size. A run (inputs, outputs, packed extra) is ~2 KB: with SQLite's default 4 KB pages
# one fits a page, half of it empty; 16 KB pages hold seven. bench/storage.py --sdk: 8,380 → 6,698 bytes a run,
# ingest CPU no higher (bench/ingest_stages.py). An existing database keeps the page size it was made with.
SQLITE_PAGE_SIZE = 16384
T = TypeVar("T")


def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` is a database error that a fresh attempt of the same transaction can get past."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _json_loads(value: Any) -> Any:
    # A column declared JSON has NUMERIC affinity in SQLite, which stores the JSON text "12" as the integer 12:
    # such a value comes back as a number, already decoded.
    if isinstance(value, int | float):
        return value
    return orjson.loads(value)


def create_store_engine(url: str, *, sqlite_synchronous: str = "FULL") -> Engine:
    """An Engine for ``url``. SQLite gets WAL, a busy timeout and the configured ``synchronous`` level."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            json_serializer=_json_dumps,
            json_deserializer=_json_loads,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=8,
            max_overflow=8,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite's own transaction handling is replaced by explicit BEGIN (see below), so that
            # write transactions take the write lock up front (BEGIN IMMEDIATE) instead of failing late.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")  # a new database's; an existing one keeps its own
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")

        return engine
    return create_engine(
        url,
        json_serializer=_json_dumps,
        json_deserializer=_json_loads,
        pool_size=8,
        max_overflow=8,
        pool_pre_ping=True,
    )


class Database:
    """An engine plus the two ways in: ``read()`` and ``write()`` transactions.

    SQLite allows one writer; ``write()`` serialises writers of this process with a lock and takes the
    database write lock at BEGIN, so a transaction never fails half-way on ``database is locked``.
    The transaction is committed (and, with synchronous=FULL, on disk) when the ``with`` block exits.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn.info["write"] = False
            with conn.begin():
                yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction, committed when the block exits. Callables appended to
        ``conn.info["after_commit"]`` run once the commit succeeded (e.g. to fill caches)."""
        after: list[Callable[[], None]] = []
        if self._write_lock is None:
            with self.engine.begin() as conn:
                conn.info["after_commit"] = after
                yield conn
        else:
            with self._write_lock, self.engine.connect() as conn:
                conn.info["write"] = True
                conn.info["after_commit"] = after
                try:
                    with conn.begin():
                        yield conn
                finally:
                    conn.info["write"] = False
        for callback in after:
            callback()

    def write_retrying(self, work: Callable[[Connection], T], *, attempts: int = WRITE_ATTEMPTS) -> T:
        """``work(conn)`` in a write transaction, run again from the start (up to ``attempts`` times, with a
        short random back-off) when the database aborts it as a deadlock victim or a serialization failure.
        ``work`` must do nothing but database writes (it may run more than once)."""
        for attempt in range(1, attempts + 1):
            try:
                with self.write() as conn:
                    return work(conn)
            except DBAPIError as exc:
                if attempt == attempts or not is_retryable(exc):
                    raise
                time.sleep(random.uniform(0, 0.005 * 2**attempt))
        raise AssertionError("unreachable")


def _one_type(values: list[Any]) -> list[Any]:
    """``values`` as psycopg can send them in one array: it refuses a list of mixed types, so numbers that mix
    ints, floats and bools all become floats (the column's own cast then rounds them, as it would one by one)."""
    kinds = {type(v) for v in values if v is not None}
    if len(kinds) > 1 and kinds <= {int, float, bool}:
        return [None if v is None else float(v) for v in values]
    return values


def _psycopg(dialect: Dialect) -> bool:
    return dialect.name == "postgresql" and dialect.driver == "psycopg"


class BulkInsert:
    """One ``INSERT`` (with its ``ON CONFLICT`` clause) executed for many rows, as fast as the dialect allows.

    Rows are tuples holding a value for every column of the table, in the table's column order
    (``columns``). On SQLite the statement is compiled once per dialect and the rows go straight to the
    driver's ``executemany``, each value bound by the same type processor SQLAlchemy would apply (UUID → hex,
    JSON → text, …), so what is stored is identical; this skips SQLAlchemy's per-row parameter handling, which
    costs more than SQLite's own work for small rows. On PostgreSQL all the rows go in ONE statement, one array
    parameter per column (``INSERT … SELECT unnest(:a_col::type[]), …``, the ``ON CONFLICT`` clause kept): psycopg's
    ``executemany`` sent a statement per row, whose per-row protocol work in Python cost twice the rest of the
    write (``bench/ingest_stages.py --postgres``). The rows of one call must not repeat a conflict key (an
    ``ON CONFLICT DO UPDATE`` cannot touch a row twice in one statement): the run store's rows never do. Another
    PostgreSQL driver than psycopg gets ``Connection.execute`` with dicts.
    """

    def __init__(self, stmt: Insert) -> None:
        self.stmt = stmt
        self.columns: tuple[str, ...] = tuple(c.key for c in stmt.table.columns)
        self._compiled: dict[Dialect, _CompiledInsert] = {}
        self._compiled_unnest: dict[Dialect, str] = {}
        # JSON values go as text (a JSON array would be taken for an array dimension) and are cast back
        self._json_at = [i for i, c in enumerate(stmt.table.c) if isinstance(c.type, JSON)]
        self._unnest = stmt.from_select(
            list(self.columns),
            select(
                *[
                    (
                        cast(func.unnest(bindparam(f"a_{c.key}", type_=ARRAY(Text))), c.type)
                        if isinstance(c.type, JSON)
                        # strings as text: a cast to varchar(n) would cut a long value where the insert refuses it
                        else func.unnest(
                            bindparam(f"a_{c.key}", type_=ARRAY(Text if isinstance(c.type, String) else c.type))
                        )
                    ).label(c.key)
                    for c in stmt.table.c
                ]
            ),
        )

    def execute(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        self.run(conn, self.prepare(conn.dialect, rows))

    def prepare(self, dialect: Dialect, rows: list[tuple[Any, ...]]) -> list[Any]:
        """``rows`` bound for ``dialect`` (the engine's), ready for ``run``. Pure CPU work, no I/O: writers
        do it before they take the write lock."""
        if not rows:
            return []
        if _psycopg(dialect):
            arrays = [list(values) for values in zip(*rows, strict=True)]
            json_at = set(self._json_at)
            for i, values in enumerate(arrays):
                arrays[i] = (
                    [None if v is None else _json_dumps(v) for v in values] if i in json_at else _one_type(values)
                )
            return [{f"a_{col}": values for col, values in zip(self.columns, arrays, strict=True)}]
        if dialect.name != "sqlite":  # another driver: SQLAlchemy's executemany
            return [dict(zip(self.columns, row, strict=True)) for row in rows]
        return self._compiled_for(dialect).params(rows)

    def run(self, conn: Connection, prepared: list[Any]) -> None:
        """Execute the statement for rows made by ``prepare``."""
        if not prepared:
            return
        if _psycopg(conn.dialect):
            # binary parameters (%(name)b, passed through to psycopg): psycopg escapes each element of a text-format
            # array with a regex, which costs more than the per-row statements this replaces. Through SQLAlchemy, so
            # that an error is its DBAPIError (a deadlock victim is then retried by write_retrying)
            sql = self._compiled_unnest.get(conn.dialect)
            if sql is None:
                sql = str(self._unnest.compile(dialect=conn.dialect))
                for col in self.columns:
                    sql = sql.replace(f"%(a_{col})s", f"%(a_{col})b")
                self._compiled_unnest[conn.dialect] = sql
            conn.exec_driver_sql(sql, prepared[0])
            return
        if conn.dialect.name != "sqlite":
            conn.execute(self.stmt, prepared)
            return
        conn.exec_driver_sql(self._compiled_for(conn.dialect).sql, prepared)

    def _compiled_for(self, dialect: Dialect) -> _CompiledInsert:
        compiled = self._compiled.get(dialect)
        if compiled is None:
            compiled = self._compiled[dialect] = _CompiledInsert(self.stmt, self.columns, dialect)
        return compiled


_NOTHING = object()


class _CompiledInsert:
    def __init__(self, stmt: Insert, columns: tuple[str, ...], dialect: Dialect) -> None:
        compiled = stmt.compile(dialect=dialect)
        if not compiled.positional or compiled.positiontup is None:
            raise RuntimeError(f"{dialect.name}: expected a positional paramstyle")
        names = tuple(compiled.positiontup)  # every bind is a column value (no literals)
        self.sql = compiled.string
        self._order = None if names == columns else [columns.index(name) for name in names]
        self._processors = [
            (i, p)
            for i, name in enumerate(names)
            if (p := stmt.table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) is not None
        ]

    def params(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The driver's parameter tuples. Rows repeat values (the workspace id in every row, a run id in each
        of its side rows); a value that is the very object of the previous row is not processed again."""
        order = self._order
        table = [list(row) for row in rows] if order is None else [[row[i] for i in order] for row in rows]
        for i, process in self._processors:
            last_in: Any = _NOTHING
            last_out: Any = None
            for values in table:
                value = values[i]
                if value is not last_in:
                    last_in, last_out = value, process(value)
                values[i] = last_out
        return [tuple(values) for values in table]


@dataclass(frozen=True)
class Compacted:
    """What ``compact_sqlite`` did: the file's size and page size before and after."""

    bytes_before: int
    bytes_after: int
    page_size_before: int
    page_size_after: int


def _leave_wal(con: Any, path: Path) -> None:
    """Switch ``con``'s database out of WAL; ``Conflict`` when another connection has it open. Leaving WAL
    checkpoints it and needs every other connection closed: the test of "no one else"."""
    import sqlite3

    try:
        if con.execute("PRAGMA journal_mode=DELETE").fetchone()[0].lower() != "delete":
            raise sqlite3.OperationalError("database is locked")
    except sqlite3.OperationalError as exc:
        raise Conflict(
            f"the store {path} is in use ({exc}): stop every tracetune serve and worker on it, then run this again",
            field="database",
        ) from None


def _connect_existing(path: Path) -> Any:
    """A plain sqlite3 connection (autocommit) to the store at ``path``; ``NotFound`` when there is none."""
    import sqlite3

    if not path.is_file():
        raise NotFound(f"no SQLite store at {path}", field="database")
    return sqlite3.connect(path, timeout=2, isolation_level=None)


def check_sqlite_unused(path: Path) -> None:
    """``Conflict`` unless this process alone could open the SQLite store at ``path`` (``compact_sqlite`` checks it
    again: this is for callers that do long work before it)."""
    con = _connect_existing(path)
    try:
        _leave_wal(con, path)
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def compact_sqlite(
    path: Path, progress: Callable[[float], None] | None = None, progress_every_s: float = 5.0
) -> Compacted:
    """Rewrite the SQLite store at ``path`` with ``SQLITE_PAGE_SIZE`` pages and no free pages (``VACUUM``).

    A store made before 16 KB pages keeps its 4 KB pages otherwise: a packed run then leaves half a page empty.
    In WAL mode ``VACUUM`` cannot change the page size, so the file leaves WAL for the rewrite and goes back to it.
    That needs the store to itself: while any other process has it open (``tracetune serve``, a worker) this
    refuses (``Conflict``) and changes nothing. ``VACUUM`` is one transaction: interrupted, the store is as
    before. ``progress(seconds so far)`` is called about every ``progress_every_s`` while it runs (SQLite reports no
    fraction done).
    """

    def size() -> int:
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())

    con = _connect_existing(path)
    before = size()
    try:
        page_before = int(con.execute("PRAGMA page_size").fetchone()[0])
        _leave_wal(con, path)
        try:
            con.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
            if progress is not None:
                started, last = time.monotonic(), [time.monotonic()]

                def tick() -> int:
                    now = time.monotonic()
                    if now - last[0] >= progress_every_s:
                        last[0] = now
                        progress(now - started)
                    return 0  # go on

                con.set_progress_handler(tick, 1000)  # SQLite virtual-machine steps between calls
            con.execute("VACUUM")
            con.set_progress_handler(None, 0)
        finally:
            con.execute("PRAGMA journal_mode=WAL")
        page_after = int(con.execute("PRAGMA page_size").fetchone()[0])
    finally:
        con.close()
    return Compacted(before, size(), page_before, page_after)


# pg_advisory_xact_lock key of schema upgrades: "tt-schm" as an integer
_UPGRADE_LOCK = int.from_bytes(b"tt-schm", "big")


def upgrade_to_head(engine: Engine) -> None:
    """Bring the schema to the newest migration (creates it on a blank database).

    Replicas and workers started together on one store upgrade one at a time: the upgrade's transaction first
    takes a lock (PostgreSQL: a transaction-level advisory lock; SQLite: the write lock, ``BEGIN IMMEDIATE``), so the
    next process finds the schema at head and has nothing to do, instead of failing on a table made meanwhile."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.connect() as conn:
        conn.info["write"] = True
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_UPGRADE_LOCK})")
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        finally:
            conn.info["write"] = False


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
