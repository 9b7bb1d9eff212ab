#!/usr/bin/env python
"""Where the server's ingest time goes, stage by stage, in one process (no HTTP): a diagnostic for
``bench/ingest.py``, whose end-to-end figure it decomposes.

The request bodies are real: the langsmith SDK sends ``--n`` runs to the capture sink (bench/_workers.py, which
saves each zstd multipart body and its headers), then each stage of ``IngestService.multipart`` is timed over
all captured bodies against a fresh SQLite store (synchronous FULL unless --synchronous):

  decode   zstd → multipart bytes        split    multipart → parts          collect  parts → run ops
  records  ops → validated run records   prepare  rows bound for the database (RunStore.prepare: CPU only)
  write    one write transaction per body (upserts + side tables, commit); apply = prepare + write

Prints one JSON line with CPU microseconds (this thread's CPU time, robust to other load on the machine) per
run for each stage and the total, and the same as wall time (``*_wall``: includes waiting for fsync). Two parts
are timed on their own too: ``write_sql``, the statements inside ``write`` (the driver's and the database's
work, without the commit), and ``collect_json_parse``, orjson.loads of every part (``collect`` minus the
checks). ``floor`` = decode + split + collect_json_parse + write_sql: what this data costs before any of
tracetune's own Python work (validation, binding, packing) and the commit. The collector is set up as
``tracetune serve`` sets it (``tune_gc``): with Python's defaults a third of ``collect`` was GC.
--profile adds a cProfile of the whole loop (top functions by own time) on stderr. Usage:
  .venv/bin/python bench/ingest_stages.py [--n 5000] [--reps 3] [--synchronous FULL|NORMAL] [--profile]
  .venv/bin/python bench/ingest_stages.py --postgres postgresql+psycopg://postgres@127.0.0.1:55432/postgres
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from ingest import free_port, wait_http  # type: ignore[import-not-found]  # noqa: E402

from tests.postgres import drop_postgres_database, make_postgres_database  # noqa: E402
from tracetune.cli.serve import tune_gc  # noqa: E402


def capture(n: int, folder: Path) -> list[tuple[bytes, dict[str, str]]]:
    port = free_port()
    py = sys.executable
    workers = str(HERE / "_workers.py")
    sink = subprocess.Popen(
        [py, workers, "sink", "--timing-log", str(folder / "timing.log"), "--port", str(port), "--save", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", sink)
        subprocess.run(
            [py, workers, "send", "--url", f"http://127.0.0.1:{port}/api/v1", "--n", str(n), "--project", "stages"],
            check=True,
            capture_output=True,
        )
    finally:
        sink.send_signal(signal.SIGINT)
        sink.wait(15)
    bodies = []
    for body_file in sorted(folder.glob("*.body")):
        headers = json.loads(body_file.with_suffix(".json").read_text())
        bodies.append((body_file.read_bytes(), headers))
    return bodies


def bodies_in(folder: Path, n: int) -> list[tuple[bytes, dict[str, str]]]:
    """The bodies captured in ``folder`` earlier, else ``n`` runs' worth captured there now."""
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.glob("*.body")):
        return [(f.read_bytes(), json.loads(f.with_suffix(".json").read_text())) for f in sorted(folder.glob("*.body"))]
    return capture(n, folder)


def run_once(
    bodies: list[tuple[bytes, dict[str, str]]], home: Path, synchronous: str, db_url: str | None = None
) -> dict[str, float]:
    import orjson

    from tracetune.ingest.encoding import decode_body
    from tracetune.ingest.multipart import split_parts
    from tracetune.ingest.records import merge_records, run_record
    from tracetune.ingest.service import IngestService
    from tracetune.store import open_store
    from tracetune.store.blobs import Blobs
    from tracetune.store.engine import BulkInsert
    from tracetune.store.workspaces import DEFAULT_WORKSPACE

    home.mkdir(parents=True)
    store = open_store(db_url or f"sqlite:///{home / 'tracetune.db'}", sqlite_synchronous=synchronous)
    ws = store.workspaces.ensure(DEFAULT_WORKSPACE)
    svc = IngestService(store, Blobs(home))
    stages = ("decode", "split", "collect", "records", "prepare", "write")
    wall = dict.fromkeys(stages, 0.0)
    cpu = dict.fromkeys(stages, 0.0)
    sql = [0.0, 0.0]  # inside ``write``: the statements alone (the driver's and the database's work)
    parse = [0.0]  # inside ``collect``: orjson.loads of every part, timed again on its own
    runs = set()

    def clock() -> tuple[float, float]:
        return time.perf_counter(), time.thread_time()

    real_run = BulkInsert.run

    def timed_run(self: BulkInsert, conn: Any, prepared: list[Any]) -> None:
        start = clock()
        real_run(self, conn, prepared)
        end = clock()
        sql[0] += end[0] - start[0]
        sql[1] += end[1] - start[1]

    BulkInsert.run = timed_run  # type: ignore[method-assign]
    try:
        for body, headers in bodies:
            marks = [clock()]
            data = decode_body(body, headers.get("content-encoding"), 64 << 20)
            marks.append(clock())
            parts = split_parts(data, headers["content-type"])
            marks.append(clock())
            ops: dict = {}
            order: list = []
            feedback: list = []
            attachments: list = []
            for part in parts:
                svc._collect_part(part, ops, order, feedback, attachments)
            posts = [ops[k] for k in order if k[0] == "post"]
            patches = [ops[k] for k in order if k[0] == "patch"]
            marks.append(clock())
            post_recs = merge_records([run_record(r, "post", f"post[{i}]") for i, r in enumerate(posts)], "post")
            patch_recs = merge_records([run_record(r, "patch", f"patch[{i}]") for i, r in enumerate(patches)], "patch")
            marks.append(clock())
            prepared = store.runs.prepare(ws.id, post_recs, patch_recs)  # as IngestService._apply: outside the lock
            marks.append(clock())
            with store.db.write() as conn:
                store.runs.write(prepared, conn)
                store.feedback.create_many(ws.id, feedback, ignore_existing=True, conn=conn)
            marks.append(clock())
            runs.update(r["id"] for r in post_recs)
            for k, (a, b) in zip(stages, itertools.pairwise(marks), strict=True):
                wall[k] += b[0] - a[0]
                cpu[k] += b[1] - a[1]
            start = time.thread_time()
            for part in parts:
                orjson.loads(part.data)
            parse[0] += time.thread_time() - start
    finally:
        BulkInsert.run = real_run  # type: ignore[method-assign]
    store.close()
    n = len(runs)
    out = {k: round(v / n * 1e6, 1) for k, v in cpu.items()}
    out["apply"] = round((cpu["prepare"] + cpu["write"]) / n * 1e6, 1)
    out["total"] = round(sum(cpu.values()) / n * 1e6, 1)
    out.update({f"{k}_wall": round(v / n * 1e6, 1) for k, v in wall.items()})
    out["total_wall"] = round(sum(wall.values()) / n * 1e6, 1)
    out["write_sql"], out["write_sql_wall"] = (round(v / n * 1e6, 1) for v in reversed(sql))
    out["collect_json_parse"] = round(parse[0] / n * 1e6, 1)
    out["floor"] = round(out["decode"] + out["split"] + out["collect_json_parse"] + out["write_sql"], 1)
    out["runs"] = n
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--postgres", default=None, help="PostgreSQL admin URL: a fresh database there per rep")
    ap.add_argument(
        "--bodies",
        default=None,
        help="use (or, if empty/missing, fill) this folder of captured bodies, "
        "so that two trees can be compared on the very same requests",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tt-stages-") as tmp:
        work = Path(tmp)
        bodies = bodies_in(Path(args.bodies) if args.bodies else work / "bodies", args.n)
        tune_gc()  # as ``tracetune serve`` does, so that the collector's share is the server's
        results = []
        for rep in range(args.reps):
            home = work / f"home-{rep}"
            db_url, name = make_postgres_database(args.postgres) if args.postgres else (None, None)
            try:
                if args.profile and rep == args.reps - 1:
                    import cProfile
                    import pstats

                    prof = cProfile.Profile()
                    prof.enable()
                    results.append(run_once(bodies, home, args.synchronous, db_url))
                    prof.disable()
                    pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(30)
                else:
                    results.append(run_once(bodies, home, args.synchronous, db_url))
            finally:
                if name is not None:
                    drop_postgres_database(args.postgres, name)
    med = {k: round(statistics.median(r[k] for r in results), 1) for k in results[0]}
    print(
        json.dumps(
            {
                "bench": "ingest_stages",
                "us_per_run": med,
                "bodies": len(bodies),
                "n": args.n,
                "synchronous": args.synchronous,
                "database": "postgresql" if args.postgres else "sqlite",
                "reps": results,
            }
        )
    )


if __name__ == "__main__":
    main()
