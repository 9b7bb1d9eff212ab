#!/usr/bin/env python
"""Benchmark: LangSmith LLM runs → fine-tuning JSONL, tracetune against LangChain's documented path.

Input: N runs made by ``bench/_convert_runs.py`` (deterministic; shaped like the baseline's, ``reference/
baselines`` §1: ChatOpenAI runs with lc-serialized messages, function calls in the history of half of them, a
function call as the answer, 3 functions offered; ~4.2 KB each), written untimed to a JSONL file and loaded
untimed into a fresh SQLite store (through the real ingest service).

Cases, each (N, rep) in a fresh subprocess so that its peak RSS (``ru_maxrss``) is its own:

  baseline         read the file, ``langsmith.schemas.Run`` objects, ``LangSmithRunChatLoader(runs).lazy_load()``,
                   ``convert_messages_for_finetuning``, write ``{"messages": …}`` lines (LangChain's documented
                   path, as the baseline script measures it). ``runs_per_s`` = N / (load + convert + write), the
                   baseline's headline figure; ``e2e_runs_per_s`` = N / (all of it: file in → file out).
  file_to_file     ``tracetune.convert.export.export_runs(FILE, …)``: streamed read, conversion, trajectory
                   merge, validation, target-model check (render + exact token count with SmolLM2's tokenizer
                   + tool-call round trip), split, write. runs_per_s = N / wall time of the call (file in →
                   file out). The tokenizer is loaded before the clock starts (like the baseline's imports).
  store_to_file    ``export_dataset(store, …)`` on the loaded store: one streamed SELECT (yield_per 500)
                   ordered by trace, then the same pipeline. runs_per_s = N / wall time of the call.

Both sizes (``--small`` and ``--n``) run every case, so the peak RSS at the two sizes shows whether memory is
flat in N. Figures are medians over ``--reps``. Prints ONE JSON line (``--json-out FILE`` writes it too).

  .venv/bin/python bench/convert.py --n 10000          # + N=1000, 3 reps: about 2 minutes on 2 cores
  .venv/bin/python bench/convert.py --n 2000 --small 500 --reps 1
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

CASES = ("baseline", "file_to_file", "store_to_file")
PROJECT = "bench"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# -- workers (one case, one process) -------------------------------------------------------------------------


def work_baseline(args: argparse.Namespace) -> dict[str, Any]:
    import warnings

    warnings.simplefilter("ignore")  # load() warns on every call; langchain-community announces its sunset
    from langchain_community.adapters.openai import convert_messages_for_finetuning
    from langchain_community.chat_loaders.langsmith import LangSmithRunChatLoader
    from langsmith import Client
    from langsmith.schemas import Run

    rss_imports = peak_rss_mib()
    # A client that never leaves the machine (the loader only needs one to fetch runs given by id).
    client = Client(api_url="http://127.0.0.1:9", api_key="offline-bench", auto_batch_tracing=False)
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    with open(args.runs_file) as f:
        dicts = [json.loads(line) for line in f]
    t["read_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    runs = [Run(**d) for d in dicts]
    t["to_runs_s"] = time.perf_counter() - t0
    del dicts
    t0 = time.perf_counter()
    sessions = list(LangSmithRunChatLoader(runs=runs, client=client).lazy_load())
    t["load_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = convert_messages_for_finetuning(sessions)
    t["convert_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with open(args.out_file, "w") as f:
        for dialog in data:
            f.write(json.dumps({"messages": dialog}) + "\n")
    t["write_s"] = time.perf_counter() - t0
    core = t["load_s"] + t["convert_s"] + t["write_s"]
    return {
        "runs_per_s": args.n / core,
        "e2e_runs_per_s": args.n / sum(t.values()),
        "examples": len(data),
        "stages_s": t,
        "peak_rss_mib": peak_rss_mib(),
        "rss_after_imports_mib": rss_imports,
    }


def work_tracetune(args: argparse.Namespace) -> dict[str, Any]:
    from tracetune.convert.dataset_builder import ExportOptions, Selection
    from tracetune.convert.export import export_dataset, export_runs, load_target

    target = load_target(Path(args.home))
    store = None
    if args.case == "store_to_file":
        from tracetune.store import open_store

        store = open_store(args.db_url)
    rss_ready = peak_rss_mib()
    t0 = time.perf_counter()
    if store is None:
        result = export_runs(Path(args.runs_file), ExportOptions(), out=Path(args.out_file), target=target)
    else:
        ws = store.workspaces.ensure("default").id
        result = export_dataset(
            store, ws, Selection(project=PROJECT), ExportOptions(), out=Path(args.out_file), target=target
        )
    wall = time.perf_counter() - t0
    return {
        "runs_per_s": args.n / wall,
        "wall_s": wall,
        "examples": result.summary["examples"],
        "summary": result.summary,
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_export_mib": rss_ready,
    }


def work_prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Untimed: convert the tokenizer into the home (once), write the runs file, load the store."""
    from _convert_runs import make_runs

    from tracetune.convert.export import load_target
    from tracetune.ingest.service import IngestService
    from tracetune.store import open_store
    from tracetune.store.blobs import Blobs

    load_target(Path(args.home))
    runs = make_runs(args.n)
    with open(args.runs_file, "w") as f:
        for run in runs:
            f.write(json.dumps(run) + "\n")
    store = open_store(args.db_url, sqlite_synchronous="OFF")
    ws = store.workspaces.ensure("default").id
    service = IngestService(store, Blobs(Path(args.home)))
    for i in range(0, len(runs), 500):
        service.batch(ws, {"post": [{**r, "session_name": PROJECT} for r in runs[i : i + 500]]})
    store.close()
    return {"input_bytes": os.path.getsize(args.runs_file)}


# -- the parent ----------------------------------------------------------------------------------------------


def run_worker(case: str, **kwargs: Any) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", case]
    for key, value in kwargs.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{case} worker failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def messages_of(path: Path) -> list[bytes]:
    return [json.dumps(json.loads(line)["messages"], sort_keys=True).encode() for line in path.open()]


def machine_info() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            "",
        )
    versions = {"python": platform.python_version()}
    for name in (
        "tokenizers",
        "orjson",
        "sqlalchemy",
        "langchain-core",
        "langchain-community",
        "langsmith",
        "pydantic",
    ):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "tracetune"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "versions": versions,
        "git": git + ("+dirty" if dirty.strip() else ""),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--small", type=int, default=1_000, help="the second size, for memory flat in N (0: skip)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--home", default=None, help="data home holding (or getting) the converted tokenizer")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--worker", choices=[*CASES, "prepare"], help=argparse.SUPPRESS)
    for hidden in ("--runs-file", "--out-file", "--db-url"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        args.case = args.worker
        work = {"prepare": work_prepare, "baseline": work_baseline}.get(args.worker, work_tracetune)
        print(json.dumps(work(args)))
        return

    work = Path(args.workdir or tempfile.mkdtemp(prefix="tt-convert-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    home = Path(args.home or work / "home")
    load_start = os.getloadavg()[0]
    sizes = [s for s in (args.small, args.n) if s]
    inputs: dict[int, dict[str, Any]] = {}
    for n in sizes:
        runs_file, db_url = work / f"runs_{n}.jsonl", f"sqlite:///{work / f'store_{n}.db'}"
        if (work / f"store_{n}.db").exists():
            (work / f"store_{n}.db").unlink()
        prepared = run_worker("prepare", n=n, home=home, runs_file=runs_file, db_url=db_url)
        inputs[n] = {"runs_file": runs_file, "db_url": db_url, **prepared}

    reps: dict[int, dict[str, list[dict[str, Any]]]] = {n: {c: [] for c in CASES} for n in sizes}
    for rep in range(args.reps):
        for n in sizes:
            for case in CASES:
                out = work / f"out_{case}_{n}.jsonl"
                res = run_worker(
                    case, n=n, home=home, runs_file=inputs[n]["runs_file"], db_url=inputs[n]["db_url"], out_file=out
                )
                reps[n][case].append(res)
                print(
                    f"# N={n} rep={rep} {case}: {res['runs_per_s']:.0f} runs/s, peak RSS {res['peak_rss_mib']:.0f} MiB",
                    file=sys.stderr,
                )

    def med(n: int, case: str, key: str) -> float:
        return round(statistics.median(r[key] for r in reps[n][case]), 1)

    n = args.n
    ours_file, ours_store = med(n, "file_to_file", "runs_per_s"), med(n, "store_to_file", "runs_per_s")
    base, base_e2e = med(n, "baseline", "runs_per_s"), med(n, "baseline", "e2e_runs_per_s")
    rss = {case: med(n, case, "peak_rss_mib") for case in CASES}
    baseline_messages = messages_of(work / f"out_baseline_{n}.jsonl")
    ours_records = [json.loads(line) for line in (work / f"out_file_to_file_{n}.jsonl").open()]
    summary = reps[n]["file_to_file"][-1]["summary"]
    result = {
        "bench": "convert",
        "n": n,
        "reps": args.reps,
        "runs_per_s": {
            "file_to_file": ours_file,
            "store_to_file": ours_store,
            "baseline": base,
            "baseline_e2e": base_e2e,
        },
        "ratio_vs_baseline": {
            "file_to_file": round(ours_file / base, 2),
            "store_to_file": round(ours_store / base, 2),
            "file_to_file_vs_baseline_e2e": round(ours_file / base_e2e, 2),
            "store_to_file_vs_baseline_e2e": round(ours_store / base_e2e, 2),
        },
        "peak_rss_mib": rss,
        "peak_rss_ratio_vs_baseline": {
            c: round(rss[c] / rss["baseline"], 2) for c in ("file_to_file", "store_to_file")
        },
        "peak_rss_mib_by_n": {str(s): {case: med(s, case, "peak_rss_mib") for case in CASES} for s in sizes},
        "runs_per_s_by_n": {str(s): {case: med(s, case, "runs_per_s") for case in CASES} for s in sizes},
        "targets": {
            "runs_per_s_10x_baseline": min(ours_file, ours_store) >= 10 * base,
            "runs_per_s_10x_baseline_e2e": min(ours_file, ours_store) >= 10 * base_e2e,
            "peak_rss_half_of_baseline": max(rss["file_to_file"], rss["store_to_file"]) <= rss["baseline"] / 2,
        },
        "same_messages_as_baseline": [json.dumps(r["messages"], sort_keys=True).encode() for r in ours_records]
        == baseline_messages,
        "store_export_same_messages_as_baseline": sorted(messages_of(work / f"out_store_to_file_{n}.jsonl"))
        == sorted(baseline_messages),
        "functions_kept": sum(1 for r in ours_records if r.get("functions")) / max(1, len(ours_records)),
        "examples": summary["examples"],
        "skipped": summary["skipped"],
        "tokens": summary["tokens"],
        "baseline_stages_s": {
            k: round(statistics.median(r["stages_s"][k] for r in reps[n]["baseline"]), 3)
            for k in reps[n]["baseline"][0]["stages_s"]
        },
        "input_bytes_per_run": round(inputs[n]["input_bytes"] / n),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg()[0],
        "machine": machine_info(),
    }
    line = json.dumps(result)
    print(line)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")


if __name__ == "__main__":
    main()
