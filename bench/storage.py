#!/usr/bin/env python
"""Benchmark: bytes a stored run takes, table by table and index by index (issue 19's storage goal).

``--runs`` runs (bench/ingest.py's list-part traces: chain root, two LLM runs, a tool, a parser; 40% LLM runs;
a fifth of the roots with a feedback) are written through ``store.runs.apply`` into a fresh SQLite store, and,
with ``--postgres ADMIN_URL``, into a fresh PostgreSQL database. Then:

* SQLite: the pages of each table and index (the ``dbstat`` virtual table), and the database file;
* PostgreSQL (after ``VACUUM ANALYZE``): ``pg_relation_size`` of each table, its TOAST and each index.

Both are divided by the number of runs. ``json_bytes_per_run`` is the JSON text of the run's JSON columns
(inputs, outputs, extra, serialized, events, tags), the part that compressing those columns could shrink; the
rest is the filterable columns, the indexes and the tag/metadata side rows. The baseline is the issue's: 3.9 GB
for 1M runs (~4 KB a run) on SQLite; the goal is 1.5 KB a run. Prints one JSON line. Usage:

  .venv/bin/python bench/storage.py [--runs 20000] [--postgres postgresql+psycopg://postgres@127.0.0.1:55432/postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from ingest import load_store, machine_info  # type: ignore[import-not-found]  # noqa: E402

from tests.postgres import drop_postgres_database, make_postgres_database  # noqa: E402

BASELINE_BYTES_PER_RUN = 3.9e9 / 1e6  # issue 19: the 1M-run SQLite file
GOAL_BYTES_PER_RUN = 1500
JSON_COLUMNS = ("inputs", "outputs", "extra", "serialized", "events", "tags")


def sqlite_sizes(db: Path) -> dict[str, Any]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        runs = con.execute("SELECT count(*) FROM runs").fetchone()[0]
        pages = con.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
        json_bytes = con.execute(
            "SELECT " + " + ".join(f"coalesce(sum(length({c})), 0)" for c in JSON_COLUMNS) + " FROM runs"
        ).fetchone()[0]
        side = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] / runs for t in ("run_tags", "run_metadata")}
    finally:
        con.close()
    by_name = {name: round(size / runs) for name, size in sorted(pages, key=lambda p: -p[1]) if size / runs >= 1}
    return {
        "runs": runs,
        "bytes_per_run": round(sum(size for _, size in pages) / runs),
        "file_bytes_per_run": round(os.path.getsize(db) / runs),
        "json_bytes_per_run": round(json_bytes / runs),
        "side_rows_per_run": {k: round(v, 2) for k, v in side.items()},
        "by_table_and_index": by_name,
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
    finally:
        engine.dispose()
    sizes = {name: main + toast for name, main, toast in rows}
    return {
        "runs": runs,
        "bytes_per_run": round(sum(sizes.values()) / runs),
        "json_bytes_per_run": round(json_bytes / runs),  # as stored: TOAST compresses values over ~2 KB
        "by_table_and_index": {
            name: round(size / runs) for name, size in sorted(sizes.items(), key=lambda s: -s[1]) if size / runs >= 1
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20000)
    ap.add_argument("--postgres", default=None, help="PostgreSQL admin URL: also measure a fresh database there")
    args = ap.parse_args()
    out: dict[str, Any] = {"bench": "storage", "runs": args.runs, "loadavg_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="tt-storage-") as tmp:
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
