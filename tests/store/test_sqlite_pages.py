"""SQLite page size: a new store is made with ``SQLITE_PAGE_SIZE`` pages (a packed run is ~2 KB: 4 KB pages held one
each, half empty); a store made before with SQLite's default 4 KB pages keeps them and works as before."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from tracetune.store import open_store
from tracetune.store.engine import SQLITE_PAGE_SIZE


def page_size(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute("PRAGMA page_size").fetchone()[0])
    finally:
        con.close()


def test_a_new_store_gets_large_pages(tmp_path: Path) -> None:
    db = tmp_path / "tracetune.db"
    open_store(f"sqlite:///{db}").close()
    assert page_size(db) == SQLITE_PAGE_SIZE == 16384


def test_a_store_made_with_4k_pages_keeps_them(tmp_path: Path) -> None:
    db = tmp_path / "tracetune.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA page_size=4096")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE made_before (x)")
    con.close()
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
