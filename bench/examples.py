#!/usr/bin/env python
"""Benchmark: LangSmith dataset examples — ``create_examples`` of N examples and ``list_examples`` of all of
them — beside ``create_runs`` of the same payloads, in the same run, against one ``tracetune serve`` (fresh
SQLite home, synchronous=FULL unless --synchronous).

Payloads: N LLM runs of bench/_runs.py (~4 KB of JSON each: lc-serialized messages in, an AIMessage with a tool
call out). The examples are ``{"inputs": run inputs, "reference_outputs": run outputs}``; the runs are the same
inputs and outputs as complete runs (post with end time and outputs).

* ``create_examples``: the real SDK's ``Client.create_examples(dataset_id=…, examples=…)`` (it batches by size and
  posts ``/examples/bulk``: our /info does not advertise multipart examples); timed until it returns (every
  example is committed before the server answers).
* ``list_examples``: ``list(Client.list_examples(dataset_id=…))``, all N (pages of 100).
* ``create_runs`` (the baseline named in issue 15): ``Client.batch_ingest_runs(create=…)`` in chunks of 500
  (``/runs/multipart``), the SDK's synchronous batch path, timed until it returns. Sent first: the SDK looks up
  its tenant id with ``GET /sessions?limit=1`` for every object it builds until a project exists, which would
  make ``list_examples`` on an empty server a request per example.

Prints ONE JSON line: examples_per_s / list_examples_per_s / runs_per_s and ``create_ratio`` (examples/s ÷
runs/s). Usage:
  .venv/bin/python bench/examples.py               # N=10000, 3 reps
  .venv/bin/python bench/examples.py --quick       # N=1000, 1 rep
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _runs import _as_wire, sdk_runs  # noqa: E402
from ingest import free_port, machine_info, start, stop, wait_http  # noqa: E402


def one_rep(n: int, seed: int, synchronous: str, work: Path) -> dict[str, float]:
    from langsmith import Client

    project = f"bench-{uuid.uuid4().hex[:8]}"
    pairs = sdk_runs(n, seed=seed, project=project)
    port = free_port()
    env = {"TRACETUNE_SQLITE_SYNCHRONOUS": synchronous, "TRACETUNE_LOG_LEVEL": "warning"}
    args = ["-m", "tracetune", "serve", "--host", "127.0.0.1", "--port", str(port), "--home", str(work / "home")]
    proc = start(args, work / "server.log", env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/api/v1/info", proc)
        client = Client(api_url=f"{base}/api/v1", api_key="bench", auto_batch_tracing=False)
        runs = [_as_wire({**post, **patch}) for post, patch in pairs]
        t0 = time.perf_counter()
        for i in range(0, n, 500):
            client.batch_ingest_runs(create=runs[i : i + 500])
        runs_s = time.perf_counter() - t0
        assert sum(1 for _ in client.list_runs(project_name=project, limit=n)) == n

        examples = [{"inputs": post["inputs"], "reference_outputs": patch["outputs"]} for post, patch in pairs]
        dataset = client.create_dataset(f"bench-{uuid.uuid4().hex[:8]}")
        t0 = time.perf_counter()
        made = client.create_examples(dataset_id=dataset.id, examples=examples)
        create_s = time.perf_counter() - t0
        assert made["count"] == n, made
        t0 = time.perf_counter()
        listed = list(client.list_examples(dataset_id=dataset.id))
        list_s = time.perf_counter() - t0
        assert len(listed) == n and listed[0].inputs == examples[0]["inputs"]
    finally:
        stop(proc)
    return {
        "examples_per_s": n / create_s,
        "list_examples_per_s": n / list_s,
        "runs_per_s": n / runs_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="N=1000, 1 rep")
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument("--json-out", type=Path)
    a = parser.parse_args()
    if a.quick:
        a.n, a.reps = 1000, 1
    load_start = os.getloadavg()[0]
    reps = []
    for rep in range(a.reps):
        with tempfile.TemporaryDirectory(prefix="tt-bench-examples-") as tmp:
            reps.append(one_rep(a.n, 42 + rep, a.synchronous, Path(tmp)))
    med: dict[str, Any] = {k: round(statistics.median(r[k] for r in reps), 1) for k in reps[0]}
    out = {
        "bench": "examples",
        "n": a.n,
        "reps": a.reps,
        "synchronous": a.synchronous,
        **med,
        "create_ratio": round(med["examples_per_s"] / med["runs_per_s"], 3),
        "per_rep": [{k: round(v, 1) for k, v in r.items()} for r in reps],
        "load_avg": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "machine": machine_info(),
    }
    line = json.dumps(out)
    print(line)
    if a.json_out:
        a.json_out.write_text(line + "\n")


if __name__ == "__main__":
    main()
