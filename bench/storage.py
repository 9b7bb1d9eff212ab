#!/usr/bin/env python
"""Benchmark: bytes a stored run takes, table by table and index by index (issue 19's storage goal).

``--runs`` runs (bench/ingest.py's list-part traces: chain root, two LLM runs, a tool, a parser; 40% LLM runs;
a fifth of the roots with a feedback) are written through ``store.runs.apply`` into a fresh SQLite store, and,
with ``--postgres ADMIN_URL``, into a fresh PostgreSQL database. Then:

* SQLite: the pages of each table and index (the ``dbstat`` virtual table), and the database file;
* PostgreSQL (after ``VACUUM ANALYZE``): ``pg_relation_size`` of each table, its TOAST and each index.

Both are divided by the number of runs. ``json_bytes_per_run`` is the stored size of the run's JSON columns
(inputs, outputs, extra, serialized, events, tags); the rest is the filterable columns, the indexes and the
tag/metadata side rows. ``packed`` compares, for the packed columns (extra, serialized, events: ``store.packing``),
their stored bytes with their JSON text. The baseline is the issue's: 3.9 GB for 1M runs (~4 KB a run) on SQLite;
the goal is 1.5 KB a run.

``--sdk N`` measures the runs as the langsmith SDK sends them instead: N runs of bench/_workers.py's LangChain-shaped
traces, captured through the sink (real multipart + zstd bodies, as ``ingest_stages.py`` does) and ingested by
``IngestService.multipart``, twice per database: once as the server stores them, once with dictionary training
switched off in this process (the columns then hold their JSON as it was before packing): the same-run baseline.

Prints one JSON line. Usage:

  .venv/bin/python bench/storage.py [--runs 20000] [--postgres postgresql+psycopg://postgres@127.0.0.1:55432/postgres]
  .venv/bin/python bench/storage.py --sdk 5000 [--postgres URL]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from ingest import load_store, machine_info  # type: ignore[import-not-found]  # noqa: E402

from tests.postgres import drop_postgres_database, make_postgres_database  # noqa: E402

BASELINE_BYTES_PER_RUN = 3.9e9 / 1e6  # issue 19: the 1M-run SQLite file
GOAL_BYTES_PER_RUN = 1500
JSON_COLUMNS = ("inputs", "outputs", "extra", "serialized", "events", "tags")
PACKED_COLUMNS = ("extra", "serialized", "events")


def sqlite_sizes(db: Path) -> dict[str, Any]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        runs = con.execute("SELECT count(*) FROM runs").fetchone()[0]
        pages = con.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
        json_bytes = con.execute(
            "SELECT " + " + ".join(f"coalesce(sum(length({c})), 0)" for c in JSON_COLUMNS) + " FROM runs"
        ).fetchone()[0]
        side = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] / runs for t in ("run_tags", "run_metadata")}
        packed = packed_sizes(con.execute(f"SELECT {', '.join(PACKED_COLUMNS)} FROM runs"), runs)
    finally:
        con.close()
    by_name = {name: round(size / runs) for name, size in sorted(pages, key=lambda p: -p[1]) if size / runs >= 1}
    return {
        "runs": runs,
        "bytes_per_run": round(sum(size for _, size in pages) / runs),
        "file_bytes_per_run": round(os.path.getsize(db) / runs),
        "json_bytes_per_run": round(json_bytes / runs),
        "side_rows_per_run": {k: round(v, 2) for k, v in side.items()},
        "packed": packed,
        "by_table_and_index": by_name,
    }


def packed_sizes(rows: Any, runs: int) -> dict[str, Any]:
    """Stored bytes a run of each packed column against its JSON text, and the share of values stored packed."""
    from tracetune.store.packing import ZSTD_MAGIC, unpack

    stored = dict.fromkeys(PACKED_COLUMNS, 0)
    as_text = dict.fromkeys(PACKED_COLUMNS, 0)
    frames = values = 0
    for row in rows:
        for col, value in zip(PACKED_COLUMNS, row, strict=True):
            if value is None:
                continue
            raw = value.encode() if isinstance(value, str) else bytes(value)
            stored[col] += len(raw)
            as_text[col] += len(orjson.dumps(unpack(raw)))
            frames += raw[:4] == ZSTD_MAGIC
            values += 1
    return {
        "stored_bytes_per_run": {c: round(stored[c] / runs) for c in PACKED_COLUMNS},
        "json_text_bytes_per_run": {c: round(as_text[c] / runs) for c in PACKED_COLUMNS},
        "ratio": round(sum(as_text.values()) / max(1, sum(stored.values())), 2),
        "packed_share": round(frames / max(1, values), 3),
    }


def postgres_sizes(url: str) -> dict[str, Any]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("VACUUM ANALYZE"))
            runs = conn.execute(text("SELECT count(*) FROM runs")).scalar_one()
            rows = conn.execute(
                text(
                    "SELECT c.relname, pg_relation_size(c.oid), coalesce(pg_total_relation_size(c.reltoastrelid), 0) "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i')"
                )
            ).all()
            json_bytes = conn.execute(
                text(
                    "SELECT "
                    + " + ".join(f"coalesce(sum(pg_column_size({c})), 0)" for c in JSON_COLUMNS)
                    + " FROM runs"
                )
            ).scalar_one()
            packed = packed_sizes(conn.execute(text(f"SELECT {', '.join(PACKED_COLUMNS)} FROM runs")), runs)
    finally:
        engine.dispose()
    sizes = {name: main + toast for name, main, toast in rows}
    return {
        "runs": runs,
        "bytes_per_run": round(sum(sizes.values()) / runs),
        "json_bytes_per_run": round(json_bytes / runs),  # as stored: TOAST compresses values over ~2 KB
        "packed": packed,
        "by_table_and_index": {
            name: round(size / runs) for name, size in sorted(sizes.items(), key=lambda s: -s[1]) if size / runs >= 1
        },
    }


def load_sdk_bodies(bodies: list[tuple[bytes, dict[str, str]]], home: Path, db_url: str | None, packing: bool) -> float:
    """Ingest the captured SDK request bodies as the server does (one ``IngestService.multipart`` each); with
    ``packing`` False no compression dictionary is trained in this process. Returns the seconds it took."""
    from tracetune.ingest.encoding import decode_body
    from tracetune.ingest.service import IngestService
    from tracetune.store import open_store
    from tracetune.store.blobs import Blobs
    from tracetune.store.dictionaries import JsonPacker
    from tracetune.store.workspaces import DEFAULT_WORKSPACE

    home.mkdir(parents=True)
    trained = JsonPacker.trained
    if not packing:
        JsonPacker.trained = lambda self: None  # type: ignore[method-assign,assignment]
    store = open_store(db_url or f"sqlite:///{home / 'tracetune.db'}", sqlite_synchronous="NORMAL")
    try:
        ws = store.workspaces.ensure(DEFAULT_WORKSPACE)
        svc = IngestService(store, Blobs(home))
        t0 = time.perf_counter()
        for body, headers in bodies:
            data = decode_body(body, headers.get("content-encoding"), 64 << 20)
            svc.multipart(ws.id, data, headers["content-type"])
        return round(time.perf_counter() - t0, 2)
    finally:
        store.close()
        JsonPacker.trained = trained  # type: ignore[method-assign]


def measure_sdk(n: int, postgres: str | None, work: Path) -> dict[str, Any]:
    from ingest_stages import capture  # type: ignore[import-not-found]

    folder = work / "bodies"
    folder.mkdir()
    bodies = capture(n, folder)
    out: dict[str, Any] = {"bodies": len(bodies)}
    for packing in (False, True):
        label = "packed" if packing else "unpacked"
        home = work / f"sqlite-{label}"
        out[f"sqlite_{label}_load_s"] = load_sdk_bodies(bodies, home, None, packing)
        out.setdefault("sqlite", {})[label] = sqlite_sizes(home / "tracetune.db")
        if postgres:
            url, name = make_postgres_database(postgres)
            try:
                out[f"postgres_{label}_load_s"] = load_sdk_bodies(bodies, work / f"pg-{label}", url, packing)
                out.setdefault("postgresql", {})[label] = postgres_sizes(url)
            finally:
                drop_postgres_database(postgres, name)
    for db in ("sqlite", "postgresql"):
        if db in out:
            before, after = out[db]["unpacked"]["bytes_per_run"], out[db]["packed"]["bytes_per_run"]
            out[db]["bytes_per_run"] = after
            out[db]["packed_vs_unpacked"] = round(after / before, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20000)
    ap.add_argument("--sdk", type=int, default=None, help="measure N runs sent by the langsmith SDK instead")
    ap.add_argument("--postgres", default=None, help="PostgreSQL admin URL: also measure a fresh database there")
    args = ap.parse_args()
    out: dict[str, Any] = {"bench": "storage", "loadavg_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="tt-storage-") as tmp:
        if args.sdk:
            out["sdk_runs"] = args.sdk
            out.update(measure_sdk(args.sdk, args.postgres, Path(tmp)))
        else:
            out["runs"] = args.runs
            home = Path(tmp) / "sqlite"
            out["sqlite_load_s"] = load_store(home, args.runs, "bench-storage")["load_s"]
            out["sqlite"] = sqlite_sizes(home / "tracetune.db")
            if args.postgres:
                url, name = make_postgres_database(args.postgres)
                try:
                    out["postgres_load_s"] = load_store(Path(tmp) / "pg", args.runs, "bench-storage", url)["load_s"]
                    out["postgresql"] = postgres_sizes(url)
                finally:
                    drop_postgres_database(args.postgres, name)
    out["baseline_bytes_per_run"] = BASELINE_BYTES_PER_RUN
    out["goal_bytes_per_run"] = GOAL_BYTES_PER_RUN
    out["sqlite_ratio_vs_baseline"] = round(out["sqlite"]["bytes_per_run"] / BASELINE_BYTES_PER_RUN, 3)
    out["meets_goal"] = {
        db: out[db]["bytes_per_run"] <= GOAL_BYTES_PER_RUN for db in ("sqlite", "postgresql") if db in out
    }
    out["machine"] = machine_info()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
