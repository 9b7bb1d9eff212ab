#!/usr/bin/env python
"""Benchmark: LangSmith ingest throughput and latency, and the first page of a filtered list_runs.

Part 1, ingest. N realistic LLM runs (bench/_runs.py: ~4 KB of JSON per run, post + patch) are sent by the real
``langsmith`` SDK in its default mode (auto-batch background threads, multipart + zstd, because our /info
enables zstd) to two targets, alternating, each rep in fresh processes:

  sink       a bare ASGI app under uvicorn that reads each body and answers 202: the SDK's own ceiling
             on this machine (its serialization, compression and sending, plus a minimal HTTP server);
  tracetune  ``tracetune serve`` on loopback with a fresh SQLite home (synchronous=FULL unless --synchronous).

runs_per_s = N / (time of the first ``create_run`` → the moment the store holds all N runs with end times).
The SDK's ``flush()`` returns once every request was answered, and tracetune answers 2xx only after commit, so
the end is when ``flush()`` returned, provided the store then holds all N ended runs (checked with sqlite3
right after; if it does not, the end is when a poll first sees them). For the sink the end is flush().
p50_ms / p99_ms: server-side latency of the ``POST /runs/multipart`` requests, from the moment uvicorn hands
the request to the app until the app has sent the last byte of the response (an ASGI wrapper in
bench/_workers.py writes one line per request); client_p50_ms is what the SDK saw (requests' ``elapsed``).

Part 2, list. ``--list-runs`` runs (traces of 5: chain root, 2 llm, tool, parser; 20% of roots carry a
``correctness`` feedback) are written straight through ``store.runs.apply`` in big batches (not timed as
ingest), then ``tracetune serve`` is started on that home and the first page (limit 100, newest first) of
several filters is fetched over HTTP (``POST /api/v1/runs/query`` with httpx) and with the SDK's
``list_runs(...)`` (which also does its ``GET /sessions?name=`` lookup); p50 over ``--query-reps`` after two
warm-up calls.

Prints ONE JSON line. Usage:
  .venv/bin/python bench/ingest.py                 # N=20000, 3 reps, 100k runs for the list part
  .venv/bin/python bench/ingest.py --quick         # smoke run (N=1000, 1 rep, 5k runs)
  .venv/bin/python bench/ingest.py --n 5000 --reps 1 --skip-list --synchronous NORMAL
  .venv/bin/python bench/ingest.py --n 2000 --skip-list --clients 8   # 8 SDK processes at once, 2000 runs each
  .venv/bin/python bench/ingest.py --n 2000 --skip-list --clients 8 --replicas 2 --postgres URL --pin
  .venv/bin/python bench/ingest.py --n 2000 --skip-list --clients 8 --rate 150   # an offered load: 8 x 150 runs/s

With ``--postgres ADMIN_URL`` the list part stores its runs in a fresh PostgreSQL database instead of SQLite.

Replicas (``--replicas R --postgres ADMIN_URL``): the tracetune target is then ``tracetune serve`` on a fresh
PostgreSQL database (made on that server per case), once as 1 process and once as R processes sharing it, the
clients spread round-robin over them (as a load balancer would); ``--pin`` pins server process i to CPU i
(taskset), so "one core each" holds. ``replica_scaling`` = runs/s of R processes / runs/s of one, same run.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
from tests.postgres import drop_postgres_database, make_postgres_database  # noqa: E402 (the root is on sys.path)

PY = sys.executable
WORKERS = str(HERE / "_workers.py")

# What the SDK asks v2 for when it reads full runs (langsmith/_internal/_v2_migration_utils.py _V2_RUN_SELECTS).
V2_SELECTS = ["ID", "NAME", "RUN_TYPE", "STATUS", "START_TIME", "END_TIME", "INPUTS", "OUTPUTS", "PARENT_RUN_IDS",
              "PROJECT_ID", "TRACE_ID", "DOTTED_ORDER", "REFERENCE_EXAMPLE_ID", "ERROR", "TAGS", "EXTRA", "EVENTS",
              "FEEDBACK_STATS", "FIRST_TOKEN_TIME", "PROMPT_TOKENS", "COMPLETION_TOKENS", "TOTAL_TOKENS"]  # fmt: skip
FILTERS = {
    "none": {},
    "llm_tokens": {"filter": 'and(eq(run_type, "llm"), gt(total_tokens, 100))'},
    "llm_tokens+trace_feedback": {
        "filter": 'and(eq(run_type, "llm"), gt(total_tokens, 100))',
        "trace_filter": 'and(eq(feedback_key, "correctness"), eq(feedback_score, 1))',
    },
}


# -- helpers -----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return round(xs[lo] + (xs[hi] - xs[lo]) * (k - lo), 2)


def median(xs: list[Any]) -> Any:
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 2) if xs else None


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early ({proc.returncode}); see its log")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer in {timeout}s")


def start(args: list[str], log: Path, env: dict[str, str] | None = None, cpu: int | None = None) -> subprocess.Popen:
    """``python ARGS`` in the background, its output in ``log``; pinned to CPU ``cpu`` (taskset) when given."""
    fh = open(log, "ab")  # noqa: SIM115
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    return subprocess.Popen([*pin, PY, *args], stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def read_timing(path: Path, suffix: str = "/runs/multipart") -> tuple[list[float], list[int], list[int]]:
    ms, sizes, statuses = [], [], []
    if not path.exists():
        return ms, sizes, statuses
    for line in path.read_text().splitlines():
        method, p, status, t, size = line.split()[:5]
        if method == "POST" and p.endswith(suffix):
            ms.append(float(t))
            sizes.append(int(size))
            statuses.append(int(status))
    return ms, sizes, statuses


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used so far (Linux /proc), or None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def ended_runs(db_url: str) -> tuple[int, int]:
    """(runs stored, runs with an end time) in the store at ``db_url`` (SQLite read-only, or PostgreSQL)."""
    if db_url.startswith("sqlite:///"):
        con = sqlite3.connect(f"file:{db_url.removeprefix('sqlite:///')}?mode=ro", uri=True, timeout=30)
        try:
            total, ended = con.execute("SELECT count(*), count(end_us) FROM runs").fetchone()
        finally:
            con.close()
        return int(total), int(ended)
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            total, ended = conn.execute(text("SELECT count(*), count(end_us) FROM runs")).one()
    finally:
        engine.dispose()
    return int(total), int(ended)


def machine_info() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for name in (
        "langsmith",
        "uvicorn",
        "uvloop",
        "httptools",
        "fastapi",
        "starlette",
        "sqlalchemy",
        "orjson",
        "zstandard",
        "python-multipart",
    ):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "tracetune"], cwd=ROOT, capture_output=True, text=True
            ).stdout.strip()
        )
    except OSError:
        commit, dirty = "", False
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "versions": versions,
        "git": commit + ("+dirty" if dirty else ""),
    }


# -- part 1: ingest ----------------------------------------------------------------------------------------


def ingest_case(
    target: str,
    n: int,
    seed: int,
    work: Path,
    synchronous: str,
    inflight: int,
    profile: bool = False,
    sdk_batch: int | None = None,
    clients: int = 1,
    replicas: int = 1,
    postgres: str | None = None,
    pin: bool = False,
    rate: float = 0,
) -> dict[str, Any]:
    """One target's run: ``clients`` SDK processes at once, each sending ``n`` runs (seeds apart; ``rate`` runs a
    second each when > 0), to ``replicas`` server processes (on a fresh PostgreSQL database when ``postgres`` names
    a server, else one SQLite home)."""
    case = work / f"{target}-{seed}"
    case.mkdir(parents=True)
    timing = case / "timing.log"
    procs: list[subprocess.Popen] = []
    bases: list[str] = []
    db_url, pg_name = None, None
    if postgres is not None:
        db_url, pg_name = make_postgres_database(postgres)
    for i in range(1 if target == "sink" else replicas):
        port = free_port()
        bases.append(f"http://127.0.0.1:{port}")
        if target == "sink":
            procs.append(
                start([WORKERS, "sink", "--timing-log", str(timing), "--port", str(port)], case / "server.log")
            )
            continue
        home = case / "home"  # replicas share it (and the database): one "machine" per core
        env = {"TRACETUNE_SQLITE_SYNCHRONOUS": synchronous, "TRACETUNE_LOG_LEVEL": "warning"}
        if db_url is not None:
            env["TRACETUNE_DATABASE_URL"] = db_url
        argv = [WORKERS, "serve", "--timing-log", f"{timing}.{i}", "--", "--host", "127.0.0.1", "--port", str(port)]
        procs.append(start([*argv, "--home", str(home)], case / f"server{i}.log", env, cpu=i if pin else None))
    proc = procs[0]
    spy = None
    cpu_used = None
    try:
        for base, p in zip(bases, procs, strict=True):
            wait_http(base + "/healthz", p)
        cpu_before = [cpu_seconds(p.pid) for p in procs]
        if profile and target != "sink":  # py-spy samples the (first) server (collapsed stacks, all threads)
            extra = os.environ.get("BENCH_PYSPY_ARGS", "").split()  # e.g. "--gil": only GIL-holding samples
            spy = subprocess.Popen(
                [
                    str(Path(PY).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(proc.pid),
                    "--rate",
                    "250",
                    "--format",
                    "raw",
                    "--nonblocking",
                    *extra,
                    "-o",
                    str(case / "profile.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1)
        project = f"bench-{uuid.uuid4().hex[:8]}"
        env = {**os.environ, **({"LANGSMITH_BATCH_INGEST_SIZE_LIMIT": str(sdk_batch)} if sdk_batch else {})}
        senders = []
        for c in range(clients):
            base = bases[c % len(bases)]  # round-robin, as a load balancer in front of the replicas would
            how = ["send-otlp", "--url", base] if target == "otlp" else ["send", "--url", base + "/api/v1"]
            argv = [PY, WORKERS, *how, "--n", str(n), "--seed", str(seed + 1000 * c), "--project", project]
            argv += ["--inflight", str(inflight), "--rate", str(rate)]
            senders.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
        outs = [sender.communicate(timeout=1800) for sender in senders]
        failed = [err for sender, (_, err) in zip(senders, outs, strict=True) if sender.returncode != 0]
        if failed:
            raise RuntimeError(f"sender failed: {failed[0][-3000:]}")
        each = [json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1]) for out, _ in outs]
        sent = {
            "t_first_send": min(e["t_first_send"] for e in each),
            "t_enqueued": max(e["t_enqueued"] for e in each),
            "t_flushed": max(e["t_flushed"] for e in each),
            "client_ms": [ms for e in each for ms in e["client_ms"]],
            "mode": each[0]["mode"],
            "sdk_warnings": [w for e in each for w in e["sdk_warnings"]],
        }
        t_done = sent["t_flushed"]
        stored = None
        total_runs = n * clients
        if target != "sink":
            db = db_url or f"sqlite:///{home / 'tracetune.db'}"
            deadline = time.time() + 120
            total, ended = ended_runs(db)
            while ended < total_runs and time.time() < deadline:
                time.sleep(0.05)
                total, ended = ended_runs(db)
                t_done = time.time()
            stored = {"runs": total, "ended": ended}
            if ended < total_runs:
                raise RuntimeError(
                    f"the store holds {ended} ended runs of {total_runs} (SDK warnings: {sent['sdk_warnings']})"
                )
        cpu_after = [cpu_seconds(p.pid) for p in procs]
        if None not in cpu_before and None not in cpu_after:
            cpu_used = sum(a - b for a, b in zip(cpu_after, cpu_before, strict=True))  # type: ignore[operator]
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        for p in procs:
            stop(p)
        if pg_name is not None:
            drop_postgres_database(postgres, pg_name)
    suffix = "/otel/v1/traces" if target == "otlp" else "/runs/multipart"
    ms, sizes, statuses = [], [], []
    for log in [timing, *(Path(f"{timing}.{i}") for i in range(len(procs)))]:
        m, s, st = read_timing(log, suffix)
        ms, sizes, statuses = ms + m, sizes + s, statuses + st
    bad = [s for s in statuses if s >= 300]
    elapsed = t_done - sent["t_first_send"]
    return {
        "target": target,
        "clients": clients,
        "replicas": len(procs),
        "database": "postgresql" if db_url else "sqlite",
        "runs_per_s": round(total_runs / elapsed, 1),
        "elapsed_s": round(elapsed, 3),
        # paced: how long after the last run was due the store held them all (what the target fell behind)
        "lag_s": round(t_done - sent["t_first_send"] - (n - 1) / rate, 3) if rate > 0 else None,
        "enqueue_s": round(sent["t_enqueued"] - sent["t_first_send"], 3),
        "requests": len(ms),
        "non_2xx": len(bad),
        "p50_ms": pct(ms, 0.5),
        "p99_ms": pct(ms, 0.99),
        "max_ms": round(max(ms), 2) if ms else None,
        "server_cpu_us_per_run": round(cpu_used / total_runs * 1e6, 1) if cpu_used is not None else None,
        "client_p50_ms": pct(sent["client_ms"], 0.5),
        "client_p99_ms": pct(sent["client_ms"], 0.99),
        "zstd_body_kib_mean": round(statistics.mean(sizes) / 1024, 1) if sizes else None,
        "mode": sent["mode"],
        "stored": stored,
        "sdk_warnings": sent["sdk_warnings"],
    }


def wire_bytes_per_run(seed: int) -> int:
    import orjson
    from _runs import _as_wire, sdk_runs  # type: ignore[import-not-found]

    sample = sdk_runs(200, seed=seed, project="bench")
    total = sum(len(orjson.dumps(_as_wire(a))) + len(orjson.dumps(_as_wire(b))) for a, b in sample)
    return total // len(sample)


# -- part 2: list ------------------------------------------------------------------------------------------


def load_store(home: Path, n_runs: int, project: str, db_url: str | None = None) -> dict[str, Any]:
    from _runs import store_traces  # type: ignore[import-not-found]

    from tracetune.ingest.feedback_records import feedback_record
    from tracetune.ingest.records import merge_records, run_record
    from tracetune.store import open_store
    from tracetune.store.workspaces import DEFAULT_WORKSPACE

    home.mkdir(parents=True)
    store = open_store(db_url or f"sqlite:///{home / 'tracetune.db'}", sqlite_synchronous="NORMAL")
    try:
        ws = store.workspaces.ensure(DEFAULT_WORKSPACE)
        posts, patches, feedback = store_traces(n_runs, seed=7, project=project)
        t0 = time.perf_counter()
        batch = 5000
        by_id = {p["id"]: i for i, p in enumerate(posts)}
        patch_batches: dict[int, list] = {}
        for p in patches:
            patch_batches.setdefault(by_id[p["id"]] // batch, []).append(p)
        for b, i in enumerate(range(0, len(posts), batch)):
            post_recs = merge_records([run_record(r, "post", "post") for r in posts[i : i + batch]], "post")
            patch_recs = merge_records([run_record(r, "patch", "patch") for r in patch_batches.get(b, [])], "patch")
            store.runs.apply(ws.id, post_recs, patch_recs)
        store.feedback.create_many(ws.id, [feedback_record(f, "feedback") for f in feedback], ignore_existing=True)
        load_s = time.perf_counter() - t0
        if store.db.dialect == "postgresql":  # what autovacuum does a while after a bulk load: plans need the stats
            from sqlalchemy import text

            with store.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
        plans = explain_plans(store, ws.id, project)
    finally:
        store.close()
    return {"runs": len(posts), "feedback": len(feedback), "load_s": round(load_s, 1), "plans": plans}


def explain_plans(store: Any, workspace_id: uuid.UUID, project: str) -> dict[str, list[str]]:
    """EXPLAIN QUERY PLAN of the statements the first page of each filter really runs (captured SQL)."""
    from sqlalchemy import event

    from tracetune.query.runs_query import RunQuery, query_runs

    if store.db.dialect != "sqlite":
        return {}
    pid = store.projects.list(workspace_id, name=project, limit=1)[0]["id"]
    plans: dict[str, list[str]] = {}
    captured: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    for name, f in FILTERS.items():
        captured.clear()
        event.listen(store.db.engine, "before_cursor_execute", grab)
        try:
            query_runs(store, workspace_id, RunQuery(project_ids=[pid], limit=100, **f))
        finally:
            event.remove(store.db.engine, "before_cursor_execute", grab)
        lines = []
        raw = store.db.engine.raw_connection()
        try:
            cur = raw.cursor()
            for i, (sql, params) in enumerate(captured):
                for row in cur.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall():
                    lines.append(f"q{i}: {row[-1]}")
        finally:
            raw.close()
        plans[name] = lines
    return plans


def list_case(home: Path, project: str, reps: int, work: Path, db_url: str | None = None) -> dict[str, Any]:
    import httpx

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    timing = work / "list-timing.log"
    proc = start(
        [
            WORKERS,
            "serve",
            "--timing-log",
            str(timing),
            "--",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--home",
            str(home),
        ],
        work / "list-server.log",
        {"TRACETUNE_LOG_LEVEL": "warning", **({"TRACETUNE_DATABASE_URL": db_url} if db_url else {})},
    )
    out: dict[str, Any] = {}
    try:
        wait_http(base + "/healthz", proc)
        http = httpx.Client(base_url=base + "/api/v1", timeout=60)
        http_v2 = httpx.Client(base_url=base + "/api/v2", timeout=60)  # kept alive, like ``http``
        pid = http.get("/sessions", params={"name": project, "limit": 1}).json()[0]["id"]
        import warnings

        import langsmith

        warnings.filterwarnings("ignore")
        client = langsmith.Client(api_url=base + "/api/v1", api_key="bench-key", auto_batch_tracing=False)
        for name, f in FILTERS.items():
            v1_body = {"session": [pid], "limit": 100, **f}
            v2_body = {"project_ids": [pid], "min_start_time": "2000-01-01T00:00:00Z", "page_size": 100, **f}
            times, r = timed(partial(posted, http, "/runs/query", v1_body), reps)
            page = r.json()["runs"]
            check_page(name, page)
            sdk_times, got = timed(partial(sdk_page, client, project, f), reps)
            if len(got) != len(page):
                raise RuntimeError(f"{name}: the SDK got {len(got)} runs, HTTP {len(page)}")
            v2_times, r2 = timed(partial(posted, http_v2, "/runs/query", {**v2_body, "selects": V2_SELECTS}), reps)
            v2_page = [{**run, "run_type": run["run_type"].lower()} for run in r2.json()["items"]]
            check_page(name, v2_page)
            if [r["id"] for r in v2_page] != [r["id"] for r in page]:
                raise RuntimeError(f"{name}: v2's first page is not v1's")
            out[name] = {
                "http_p50_ms": median(times),
                "v2_http_p50_ms": median(v2_times),
                "sdk_p50_ms": median(sdk_times),
                "page_runs": len(page),
                "response_kib": round(len(r.content) / 1024, 1),
            }
        http.close()
        http_v2.close()
    finally:
        stop(proc)
    server_ms, _, _ = read_timing(timing, "/runs/query")
    out["server_query_p50_ms_all"] = pct(server_ms, 0.5)
    return out


def posted(http: Any, path: str, body: dict[str, Any]) -> Any:
    response = http.post(path, json=body)
    response.raise_for_status()
    return response


def sdk_page(client: Any, project: str, conditions: dict[str, Any]) -> list[Any]:
    return list(client.list_runs(project_name=project, limit=100, **conditions))


def timed(call: Any, reps: int) -> tuple[list[float], Any]:
    """``reps`` timings (ms) of ``call`` after two warm-up calls, and its last answer."""
    times, answer = [], None
    for i in range(reps + 2):
        t0 = time.perf_counter()
        answer = call()
        if i >= 2:
            times.append((time.perf_counter() - t0) * 1000)
    return times, answer


def check_page(name: str, page: list[dict]) -> None:
    if len(page) != 100:
        raise RuntimeError(f"{name}: first page has {len(page)} runs, expected 100")
    if name != "none":
        bad = [r for r in page if r["run_type"] != "llm" or not (r["total_tokens"] or 0) > 100]
        if bad:
            raise RuntimeError(f"{name}: {len(bad)} runs on the page do not match the filter")
    starts = [r["start_time"] for r in page]
    if starts != sorted(starts, reverse=True):
        raise RuntimeError(f"{name}: page is not newest first")


# -- main --------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=None, help="runs sent per ingest rep (default 20000; quick 1000)")
    ap.add_argument("--reps", type=int, default=None, help="ingest reps per target, median reported (default 3)")
    ap.add_argument("--quick", action="store_true", help="smoke run: small N, 1 rep, 5k runs for the list part")
    ap.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"], help="SQLite synchronous")
    ap.add_argument(
        "--inflight",
        type=int,
        default=100,
        help="runs open at a time: run i ends (its patch is "
        "sent) right after run i+K starts; 100 puts every post and its patch in different requests",
    )
    ap.add_argument("--list-runs", type=int, default=None, help="runs stored for the list part (default 100000)")
    ap.add_argument("--query-reps", type=int, default=None, help="timed calls per filter (default 20)")
    ap.add_argument(
        "--sdk-batch-size",
        type=int,
        default=None,
        help="operations per SDK request instead of "
        "/info's size_limit (sets LANGSMITH_BATCH_INGEST_SIZE_LIMIT for the sender; an experiment)",
    )
    ap.add_argument("--replicas", type=int, default=1, help="also measure this many tracetune serve processes")
    ap.add_argument("--postgres", default=None, help="PostgreSQL admin URL: the store of the tracetune cases")
    ap.add_argument("--pin", action="store_true", help="pin server process i to CPU i (taskset)")
    ap.add_argument("--skip-list", action="store_true")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the tracetune server (needs py-spy and "
        "--workdir; writes <workdir>/tracetune-<rep>/profile.txt, collapsed stacks)",
    )
    ap.add_argument("--skip-ingest", action="store_true")
    ap.add_argument(
        "--clients", type=int, default=1, help="SDK processes sending at once, N runs each (the sink and tracetune)"
    )
    ap.add_argument(
        "--rate",
        type=float,
        default=0,
        help="runs a second each client starts (an offered load, the same for every target); 0: as fast as the "
        "SDK takes them",
    )
    ap.add_argument("--workdir", default=None, help="keep homes and logs here (default: a temp dir, removed)")
    ap.add_argument("--json-out", default=None, help="also write the JSON line to this file")
    args = ap.parse_args()
    n = args.n or (1000 if args.quick else 20000)
    reps = args.reps or (1 if args.quick else 3)
    list_runs = args.list_runs or (5000 if args.quick else 100_000)
    query_reps = args.query_reps or (5 if args.quick else 20)

    tmp = None
    if args.workdir:
        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="tt-bench-")
        work = Path(tmp.name)
    result: dict[str, Any] = {
        "bench": "ingest",
        "n": n,
        "reps": reps,
        "synchronous": args.synchronous,
        "inflight": args.inflight,
        "clients": args.clients,
        "offered_runs_per_s": args.rate * args.clients if args.rate > 0 else None,
        "sdk_batch_size": args.sdk_batch_size or "from /info",
        "loadavg_start": os.getloadavg()[0],
    }
    try:
        if not args.skip_ingest:
            cases: dict[str, list[dict]] = {"sink": [], "tracetune": [], "otlp": [], "replicas": []}
            targets = ["sink", "tracetune", "otlp"] if args.clients == 1 else ["sink", "tracetune"]
            if args.replicas > 1:
                targets = ["sink", "tracetune", "replicas"]
            for rep in range(reps):
                for target in targets:
                    cases[target].append(
                        ingest_case(
                            "tracetune" if target == "replicas" else target,
                            n,
                            seed=rep + 1,
                            work=work / target,
                            synchronous=args.synchronous,
                            inflight=args.inflight,
                            profile=args.profile,
                            sdk_batch=args.sdk_batch_size,
                            clients=args.clients,
                            replicas=args.replicas if target == "replicas" else 1,
                            postgres=args.postgres if target != "sink" else None,
                            pin=args.pin,
                            rate=args.rate,
                        )
                    )
            if args.replicas > 1:
                one, many = cases["tracetune"], cases["replicas"]
                result["replicas"] = {
                    "replicas": args.replicas,
                    "database": "postgresql" if args.postgres else "sqlite",
                    "pinned": args.pin,
                    "runs_per_s": median([c["runs_per_s"] for c in many]),
                    "one_runs_per_s": median([c["runs_per_s"] for c in one]),
                    "replica_scaling": round(
                        median([c["runs_per_s"] for c in many]) / median([c["runs_per_s"] for c in one]), 3
                    ),
                    "server_cpu_us_per_run": median([c["server_cpu_us_per_run"] for c in many]),
                    "one_server_cpu_us_per_run": median([c["server_cpu_us_per_run"] for c in one]),
                    "client_p50_ms": median([c["client_p50_ms"] for c in many]),
                    "client_p99_ms": median([c["client_p99_ms"] for c in many]),
                    "reps": many,
                }
            tt, sk, otlp = cases["tracetune"], cases["sink"], cases["otlp"]
            rate, sink_rate = median([c["runs_per_s"] for c in tt]), median([c["runs_per_s"] for c in sk])
            otlp_rate = median([c["runs_per_s"] for c in otlp])
            result.update(
                {
                    "runs_per_s": rate,
                    "sink_runs_per_s": sink_rate,
                    "ratio": round(rate / sink_rate, 3) if rate and sink_rate else None,
                    "p50_ms": median([c["p50_ms"] for c in tt]),
                    "p99_ms": median([c["p99_ms"] for c in tt]),
                    "client_p50_ms": median([c["client_p50_ms"] for c in tt]),
                    "client_p99_ms": median([c["client_p99_ms"] for c in tt]),
                    "lag_s": median([c["lag_s"] for c in tt]),
                    "sink_lag_s": median([c["lag_s"] for c in sk]),
                    "sink_client_p99_ms": median([c["client_p99_ms"] for c in sk]),
                    "sink_p50_ms": median([c["p50_ms"] for c in sk]),
                    "sink_client_p50_ms": median([c["client_p50_ms"] for c in sk]),
                    "requests_per_rep": median([c["requests"] for c in tt]),
                    "server_cpu_us_per_run": median([c["server_cpu_us_per_run"] for c in tt]),
                    "sink_cpu_us_per_run": median([c["server_cpu_us_per_run"] for c in sk]),
                    "wire_bytes_per_run": wire_bytes_per_run(1),
                    "otlp_spans_per_s": otlp_rate,
                    "otlp_over_multipart": round(otlp_rate / rate, 3) if otlp_rate and rate else None,
                    "otlp_p50_ms": median([c["p50_ms"] for c in otlp]),
                    "otlp_server_cpu_us_per_span": median([c["server_cpu_us_per_run"] for c in otlp]),
                    "ingest_reps": {"tracetune": tt, "sink": sk, "otlp": otlp},
                }
            )
        if not args.skip_list:
            home = work / "list-home"
            project = "bench-list"
            db_url, pg_name = make_postgres_database(args.postgres) if args.postgres else (None, None)
            try:
                loaded = load_store(home, list_runs, project, db_url)
                timings = list_case(home, project, query_reps, work, db_url)
            finally:
                if pg_name is not None:
                    drop_postgres_database(args.postgres, pg_name)
            result["list_first_page_p50_ms"] = {
                name: {
                    "http": timings[name]["http_p50_ms"],
                    "sdk": timings[name]["sdk_p50_ms"],
                    "v2_http": timings[name]["v2_http_p50_ms"],
                    "v2_over_v1": round(timings[name]["v2_http_p50_ms"] / timings[name]["http_p50_ms"], 3),
                }
                for name in FILTERS
            }
            result["list"] = {
                "database": "postgresql" if db_url else "sqlite",
                "stored_runs": loaded["runs"],
                "feedback": loaded["feedback"],
                "load_s": loaded["load_s"],
                "query_reps": query_reps,
                "filters": FILTERS,
                "detail": timings,
                "plans": loaded["plans"],
            }
        result["loadavg_end"] = os.getloadavg()[0]
        result["machine"] = machine_info()
    finally:
        if tmp is not None:
            tmp.cleanup()
    line = json.dumps(result)
    print(line)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")


if __name__ == "__main__":
    main()
