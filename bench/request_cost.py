#!/usr/bin/env python
"""What one ingest request costs the server, apart from the runs in it: server CPU per request as the number of
runs per request varies, through a real ``tracetune serve``.

An app that makes a few LLM calls a second does not send 100 runs a request: the langsmith SDK's background
thread sends what has queued since its last send, often one or two operations. Then the request's fixed cost
(HTTP, authentication, thread crossings, the transaction and its commit) is the server's cost, whatever a run
costs. ``bench/ingest.py`` measures full batches; this measures the other end.

The bodies are real: the SDK sends ``--n`` runs to the capture sink (as ``bench/ingest_stages.py`` does, or
``--bodies D`` reuses a capture). Their parts are regrouped, in the order they came, into requests of K runs
(2K operations: a post and a patch per run), zstd-compressed as the SDK does. For each K of ``--sizes``, a fresh
``tracetune serve`` (fresh home, SQLite, synchronous FULL) receives every request in turn from one kept-alive
httpx client; the figure is the server process's CPU time (user + system, /proc) over those requests.

``--baseline-ref REF`` measures a checkout of the git revision REF the same way, alternating with this tree
(fresh processes each), and reports ours / baseline per K. ``fixed_ms`` and ``per_run_us`` are a least-squares
line through (K, CPU per request): what a request costs with no run in it, and what each run adds.

  .venv/bin/python bench/request_cost.py --baseline-ref HEAD~1 [--sizes 1,10,100] [--reps 2] [--bodies D]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from ingest import cpu_seconds, free_port, machine_info, start, stop, wait_http  # type: ignore[import-not-found]  # noqa: E402
from ingest_stages import bodies_in  # type: ignore[import-not-found]  # noqa: E402

# ``tracetune serve`` from the checkout at sys.argv[1] (this tree or a baseline worktree), same interpreter
SERVE = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); from tracetune.cli import app; sys.argv[0] = 'tracetune'; app()"
)


Operations = dict[tuple[str, ...], list[tuple[str, bytes]]]  # (kind, run id) → its parts (name, JSON), in order


def operations(bodies: list[tuple[bytes, dict[str, str]]]) -> Operations:
    """The captured bodies' parts grouped by operation (``post.<id>``, ``patch.<id>``), in the order they came."""
    from tracetune.ingest.encoding import decode_body
    from tracetune.ingest.multipart import split_parts

    ops: Operations = {}
    for body, headers in bodies:
        data = decode_body(body, headers.get("content-encoding"), 1 << 30)
        for part in split_parts(data, headers["content-type"]):
            ops.setdefault(tuple(part.name.split(".")[:2]), []).append((part.name, bytes(part.data)))
    return ops


def requests_of(ops: Operations, runs_per_request: int) -> list[tuple[bytes, str]]:
    """``ops`` regrouped into zstd multipart bodies of ``2 * runs_per_request`` operations."""
    import zstandard

    keys = list(ops)
    per = 2 * runs_per_request
    out = []
    compressor = zstandard.ZstdCompressor()
    for i in range(0, len(keys), per):
        boundary = uuid.uuid4().hex
        chunks = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n'
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            + data
            + b"\r\n"
            for key in keys[i : i + per]
            for name, data in ops[key]
        ]
        chunks.append(f"--{boundary}--\r\n".encode())
        out.append((compressor.compress(b"".join(chunks)), f"multipart/form-data; boundary={boundary}"))
    return out


def measure(tree: Path, requests: list[tuple[bytes, str]], runs: int, work: Path) -> dict[str, float]:
    """Server CPU for ``requests`` sent one after another to a fresh ``tracetune serve`` of ``tree``."""
    import httpx

    home = Path(tempfile.mkdtemp(dir=work))
    port = free_port()
    env = {"TRACETUNE_LOG_LEVEL": "warning", "TRACETUNE_SQLITE_SYNCHRONOUS": "FULL"}
    argv = ["-c", SERVE, str(tree), "serve", "--host", "127.0.0.1", "--port", str(port), "--home", str(home)]
    proc = start(argv, home / "server.log", env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz", proc)
        with httpx.Client(base_url=base, timeout=120) as client:
            before = cpu_seconds(proc.pid)
            for data, content_type in requests:
                headers = {"content-type": content_type, "content-encoding": "zstd", "x-api-key": "bench"}
                response = client.post("/api/v1/runs/multipart", content=data, headers=headers)
                if response.status_code != 202:
                    raise RuntimeError(f"{response.status_code}: {response.text[:500]}")
            after = cpu_seconds(proc.pid)
    finally:
        stop(proc)
    if before is None or after is None:
        raise RuntimeError("no /proc CPU times on this platform")
    used = after - before
    return {"cpu_ms_per_request": used / len(requests) * 1e3, "cpu_us_per_run": used / runs * 1e6}


def fit(points: list[tuple[int, float]]) -> tuple[float | None, float | None]:
    """(intercept, slope) of the least-squares line through ``points`` (None, None for a single size)."""
    if len(points) < 2:
        return None, None
    slope, intercept = statistics.linear_regression([k for k, _ in points], [v for _, v in points])
    return intercept, slope


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000, help="runs captured from the SDK (each size sends them all)")
    ap.add_argument("--sizes", default="1,10,100", help="runs per request, comma-separated")
    ap.add_argument("--reps", type=int, default=2, help="fresh servers per size and tree; the median is reported")
    ap.add_argument("--bodies", default=None, help="keep (or reuse) the captured bodies in this folder")
    ap.add_argument("--baseline-ref", default=None, help="also measure this git revision (a temporary worktree)")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tt-reqcost-") as tmp:
        work = Path(tmp)
        ops = operations(bodies_in(Path(args.bodies) if args.bodies else work / "bodies", args.n))
        runs = sum(1 for kind, _ in ops if kind == "post")  # distinct runs posted
        trees = {"tracetune": ROOT}
        if args.baseline_ref:
            base = work / "baseline"
            git = ["git", "-C", str(ROOT), "worktree"]
            subprocess.run([*git, "add", "-q", "--detach", str(base), args.baseline_ref], check=True)
            trees["baseline"] = base
        try:
            results: dict[str, dict[str, list[dict[str, float]]]] = {t: {} for t in trees}
            for k in sizes:
                requests = requests_of(ops, k)
                for rep in range(args.reps):
                    order = list(trees) if rep % 2 == 0 else list(reversed(trees))
                    for name in order:
                        results[name].setdefault(str(k), []).append(measure(trees[name], requests, runs, work))
        finally:
            if args.baseline_ref:
                subprocess.run([*git, "remove", "--force", str(work / "baseline")], check=False)
    out: dict[str, object] = {"bench": "request_cost", "runs": runs, "sizes": sizes, "reps": args.reps}
    for name, by_size in results.items():
        med = {k: {m: round(statistics.median(r[m] for r in reps), 3) for m in reps[0]} for k, reps in by_size.items()}
        fixed, per_run = fit([(int(k), v["cpu_ms_per_request"]) for k, v in med.items()])
        out[name] = {
            "by_size": med,
            "fixed_ms": None if fixed is None else round(fixed, 3),
            "per_run_us": None if per_run is None else round(per_run * 1e3, 1),
        }
    if "baseline" in results:
        ours, theirs = out["tracetune"], out["baseline"]
        out["ratio_vs_baseline"] = {  # ours / baseline, CPU per request at each size (< 1: cheaper)
            k: round(ours["by_size"][k]["cpu_ms_per_request"] / theirs["by_size"][k]["cpu_ms_per_request"], 3)  # type: ignore[index]
            for k in ours["by_size"]  # type: ignore[index]
        }
        out["baseline_ref"] = args.baseline_ref
    out["loadavg_start"], out["loadavg_end"] = load_start, os.getloadavg()[0]
    out["machine"] = machine_info()
    line = json.dumps(out)
    print(line)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")


if __name__ == "__main__":
    main()
