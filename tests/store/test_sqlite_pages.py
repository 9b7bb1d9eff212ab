"""SQLite page size: a new store is made with ``SQLITE_PAGE_SIZE`` pages (a packed run is ~2 KB: 4 KB pages held one
each, half empty); a store made before with SQLite's default 4 KB pages keeps them and works as before, until
``tracetune db compact`` rewrites it."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tracetune.cli import app
from tracetune.errors import Conflict
from tracetune.store import open_store
from tracetune.store.engine import SQLITE_PAGE_SIZE, compact_sqlite


def pragma(db: Path, name: str) -> str:
    con = sqlite3.connect(db)
    try:
        return str(con.execute(f"PRAGMA {name}").fetchone()[0])
    finally:
        con.close()


def page_size(db: Path) -> int:
    return int(pragma(db, "page_size"))


def test_a_new_store_gets_large_pages(tmp_path: Path) -> None:
    db = tmp_path / "tracetune.db"
    open_store(f"sqlite:///{db}").close()
    assert page_size(db) == SQLITE_PAGE_SIZE == 16384


def _made_with_4k_pages(db: Path) -> None:
    con = sqlite3.connect(db)
    con.execute("PRAGMA page_size=4096")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE made_before (x)")
    con.close()


def test_a_store_made_with_4k_pages_keeps_them(tmp_path: Path) -> None:
    db = tmp_path / "tracetune.db"
    _made_with_4k_pages(db)
    store = open_store(f"sqlite:///{db}")
    try:
        ws = store.workspaces.ensure("default")
        rid = uuid.uuid4()
        extra = {"metadata": {"k": "v"}, "runtime": {"sdk": "langsmith-py"}}
        store.runs.apply(ws.id, [{"id": rid, "trace_id": rid, "start_us": 1, "extra": extra}], [])
        got = store.runs.get(ws.id, rid)
        assert got is not None and got["extra"] == extra
    finally:
        store.close()
    assert page_size(db) == 4096


def _runs(db: Path, n: int) -> tuple[uuid.UUID, list[dict]]:
    """``n`` runs with packed columns written through a store on ``db``; (workspace id, the records)."""
    store = open_store(f"sqlite:///{db}")
    try:
        ws = store.workspaces.ensure("default")
        posts = [
            {
                "id": (rid := uuid.uuid4()),
                "trace_id": rid,
                "start_us": i + 1,
                "name": f"run {i}",
                "inputs": {"question": f"q{i} " * 50},
                "extra": {"metadata": {"k": i}, "runtime": {"sdk": "langsmith-py"}},
                "tags": ["a", f"t{i % 3}"],
            }
            for i in range(n)
        ]
        store.runs.apply(ws.id, posts, [])
        return ws.id, posts
    finally:
        store.close()


def test_compact_rewrites_an_old_store_with_large_pages_and_keeps_every_run(tmp_path: Path) -> None:
    db = tmp_path / "tracetune.db"
    _made_with_4k_pages(db)
    ws, posts = _runs(db, 300)
    ticks: list[float] = []
    done = compact_sqlite(db, progress=ticks.append, progress_every_s=0)
    assert ticks and ticks == sorted(ticks)  # told while the VACUUM ran, seconds so far
    assert (done.page_size_before, done.page_size_after) == (4096, SQLITE_PAGE_SIZE)
    assert page_size(db) == SQLITE_PAGE_SIZE and pragma(db, "journal_mode") == "wal"
    assert done.bytes_after == db.stat().st_size
    assert pragma(db, "integrity_check") == "ok"
    store = open_store(f"sqlite:///{db}")
    try:
        for rec in posts[::37]:
            got = store.runs.get(ws, rec["id"])
            assert got is not None
            assert (got["name"], got["inputs"], got["extra"], got["tags"]) == (
                rec["name"],
                rec["inputs"],
                rec["extra"],
                rec["tags"],
            )
        more = {"id": (rid := uuid.uuid4()), "trace_id": rid, "start_us": 5}
        store.runs.apply(ws, [more], [])  # and it takes writes again
        assert store.runs.get(ws, rid) is not None
    finally:
        store.close()


def test_compact_refuses_a_store_in_use_and_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "tracetune.db"
    _made_with_4k_pages(db)
    _runs(db, 20)
    store = open_store(f"sqlite:///{db}")  # a server's connections
    try:
        with store.db.read() as conn:  # one in the middle of a read
            conn.exec_driver_sql("SELECT count(*) FROM runs").one()
            with pytest.raises(Conflict, match=r"in use.*stop every tracetune serve"):
                compact_sqlite(db)
        # only idle, back in the pool: the file is still open, so still refused
        with pytest.raises(Conflict, match=r"in use"):
            compact_sqlite(db)
    finally:
        store.close()
    assert page_size(db) == 4096 and pragma(db, "journal_mode") == "wal"


def test_db_compact_command(tmp_path: Path) -> None:
    db = tmp_path / "tracetune.db"
    _made_with_4k_pages(db)
    _runs(db, 50)
    result = CliRunner().invoke(app, ["db", "compact", "--home", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"pages of 4,096 → {SQLITE_PAGE_SIZE:,} bytes" in result.output
    assert page_size(db) == SQLITE_PAGE_SIZE
    result = CliRunner().invoke(app, ["db", "compact", "--home", str(tmp_path / "none")])
    assert result.exit_code == 2 and "no SQLite store" in result.output
    unreachable = "postgresql+psycopg://u@127.0.0.1:1/db"  # nothing listens on port 1
    result = CliRunner().invoke(app, ["db", "compact", "--database-url", unreachable])
    assert result.exit_code == 2 and "cannot open the store" in result.output, result.output


def test_db_compact_packs_an_older_store_on_either_database(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.store.test_packing import RUNS_TO_TRAIN, stored, write
    from tracetune.store.dictionaries import JsonPacker

    store = open_store(db_url)
    try:
        ws = store.workspaces.ensure("default")
        with monkeypatch.context() as m:
            m.setattr(JsonPacker, "trained", lambda self: None)  # written before packing existed
            sent = write(store, ws, RUNS_TO_TRAIN + 50)
    finally:
        store.close()
    result = CliRunner().invoke(app, ["db", "compact", "--database-url", db_url])
    assert result.exit_code == 0, result.output
    assert f"{len(sent):,} runs packed" in result.output
    assert f"packing runs: {len(sent)}/{len(sent)} (100%)" in result.output
    assert ("pages of" if db_url.startswith("sqlite") else "VACUUM FULL") in result.output
    store = open_store(db_url)
    try:
        assert stored(store, sent[-1]["id"])["extra"][:4] == b"\x28\xb5\x2f\xfd"  # type: ignore[index]
        got = store.runs.get(ws.id, sent[-1]["id"])
        assert got is not None and got["extra"] == sent[-1]["extra"]
    finally:
        store.close()
