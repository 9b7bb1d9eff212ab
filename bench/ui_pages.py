#!/usr/bin/env python
"""Benchmark: server time of every UI page over a big store (issue 18: no page over 150 ms at 100k runs).

Two SQLite stores are loaded straight through ``store.runs.apply`` (``bench/ingest.py``'s ``load_store``: traces
of 5 — a chain root, two LLM runs, a tool, a parser; a fifth of the roots rated ``correctness``): the baseline,
``--small`` runs (default 1,000), and ``--runs`` (default 100,000). Each UI page is then fetched in-process
through the ASGI app (Starlette's TestClient: no socket, so the time is the server's: routing, the queries,
rendering), 1 warm-up and ``--reps`` timed fetches; p50 and max per page, on both stores, and the ratio.

Pages: the projects list; a project's runs (no facet, run type llm, errors only, a feedback filter, root runs,
slowest first, LLM runs with the most tokens first);
a trace (root and an LLM run); the review queues, datasets, jobs, models, automations and playground pages.

Prints ONE JSON line: per page ``{"small_p50_ms", "p50_ms", "max_ms", "ratio"}``, the slowest page, and
``over_budget`` (pages whose p50 at ``--runs`` is over ``--budget-ms``). Usage:
  .venv/bin/python bench/ui_pages.py                  # 100k runs: ~2 minutes (most of it loading)
  .venv/bin/python bench/ui_pages.py --runs 10000     # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROJECT = "bench-ui"
FEEDBACK_FILTER = 'and(eq(feedback_key, "correctness"), eq(feedback_score, 1))'


def pages(client: Any, store: Any) -> dict[str, str]:
    """The paths to time, found in the loaded store."""
    from tracetune.store.workspaces import DEFAULT_WORKSPACE

    ws = store.workspaces.get(DEFAULT_WORKSPACE)
    (project,) = store.projects.list(ws.id, name=PROJECT, limit=1)
    pid = project["id"]
    newest = client.get(f"/projects/{pid}").text
    root_id = newest.split('href="/runs/', 1)[1].split('"', 1)[0]
    llm_page = client.get(f"/projects/{pid}", params={"run_type": "llm"}).text
    llm_id = llm_page.split('href="/runs/', 1)[1].split('"', 1)[0]
    return {
        "projects": "/",
        "runs": f"/projects/{pid}",
        "runs_llm": f"/projects/{pid}?run_type=llm",
        "runs_errors": f"/projects/{pid}?errors=only",
        "runs_feedback_filter": f"/projects/{pid}?filter={FEEDBACK_FILTER}",
        "runs_roots": f"/projects/{pid}?root=1",
        "runs_slowest": f"/projects/{pid}?order=latency",  # sorted by a column: every selected run is read
        "runs_most_tokens_llm": f"/projects/{pid}?run_type=llm&order=tokens",
        "runs_totals": f"/projects/{pid}/stats",  # the totals fragment the runs page loads after it is shown
        "runs_totals_llm": f"/projects/{pid}/stats?run_type=llm",
        "trace_root": f"/runs/{root_id}",
        "trace_llm": f"/runs/{llm_id}",
        "queues": "/queues",
        "datasets": "/datasets",
        "jobs": "/jobs",
        "models": "/models",
        "automations": "/automations",
        "playground": "/playground",
    }


def time_pages(home: Path, reps: int) -> dict[str, list[float]]:
    from starlette.testclient import TestClient

    from tracetune.config import Settings
    from tracetune.server.app import create_app
    from tracetune.store import open_store

    settings = Settings(home=home, database_url=f"sqlite:///{home / 'tracetune.db'}", run_jobs=False,
                        run_automations=False)  # fmt: skip
    store = open_store(settings.resolved_database_url)
    try:
        with TestClient(create_app(settings, store)) as client:
            paths = pages(client, store)
            out: dict[str, list[float]] = {}
            for name, path in paths.items():
                assert client.get(path).status_code == 200, path  # warm-up, and it must render
                times = []
                for _ in range(reps):
                    started = time.perf_counter()
                    response = client.get(path)
                    times.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, (path, response.status_code)
                out[name] = times
            return out
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--budget-ms", type=float, default=150.0)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    from ingest import load_store  # type: ignore[import-not-found]

    load_avg = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tt-bench-ui-") as tmp:
        loaded = {}
        timed = {}
        for label, n in (("small", args.small), ("big", args.runs)):
            home = Path(tmp) / label
            loaded[label] = load_store(home, n, PROJECT)
            timed[label] = time_pages(home, args.reps)
    figures = {}
    for name, times in timed["big"].items():
        p50, small = statistics.median(times), statistics.median(timed["small"][name])
        figures[name] = {"small_p50_ms": round(small, 1), "p50_ms": round(p50, 1), "max_ms": round(max(times), 1),
                         "ratio": round(p50 / small, 2)}  # fmt: skip
    slowest = max(figures, key=lambda k: figures[k]["p50_ms"])
    result = {
        "bench": "ui_pages", "runs": loaded["big"]["runs"], "small_runs": loaded["small"]["runs"],
        "load_s": loaded["big"]["load_s"], "reps": args.reps, "budget_ms": args.budget_ms, "pages": figures,
        "slowest": {"page": slowest, **figures[slowest]},
        "over_budget": sorted(k for k, v in figures.items() if v["p50_ms"] > args.budget_ms),
        "load_avg": {"start": [round(x, 2) for x in load_avg], "end": [round(x, 2) for x in os.getloadavg()]},
    }  # fmt: skip
    line = json.dumps(result)
    print(line)
    if args.json_out:
        args.json_out.write_text(line + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
