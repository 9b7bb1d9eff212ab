#!/usr/bin/env python
"""Benchmark (issue 20): does serving on llama.cpp (the shipped Q4_1 GGUF + the adapter converted to GGUF) keep the
held-out accuracy that the float32 transformers engine gives? Same fine-tuned model, same 20 questions.

Runs ``tracetune demo`` (its fine-tune of SmolLM2 on the traced calculator calls, evaluated on the default engine)
into --home, then serves that home three times, ``engine=llamacpp`` on its default weights (the Q4_1 file
re-quantized to Q8_0) and on the file as shipped (Q4_1), and ``engine=transformers``, and replays the demo's
held-out questions (report/heldout.jsonl) on the base and the tuned model through ``/v1/chat/completions``
(tracetune.evaluate.replay, greedy). Goal: the tuned model's accuracy on llama.cpp within 1 point (0.01) of the
transformers engine's.

Prints ONE JSON line (``--json-out FILE`` too).

  .venv/bin/python bench/serve_accuracy.py                 # ~5 minutes on 2 cores (the demo's fine-tune)
  .venv/bin/python bench/serve_accuracy.py --home H --skip-demo   # evaluate a finished demo home again
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class Quiet:
    def stage_started(self, stage: str, description: str, total: int | None = None) -> None:
        print(f"[{stage}] {description}", file=sys.stderr, flush=True)

    def progress(self, done: int, total: int | None = None, text: str | None = None) -> None:
        pass

    def stage_done(self, stage: str, seconds: float, result: str) -> None:
        print(f"[{stage}] {result} ({seconds:.0f} s)", file=sys.stderr, flush=True)


def evaluate_on(
    engine: str,
    weights: str,
    home: Path,
    models: list[str],
    records: list[tuple[int, dict[str, Any]]],
    concurrency: int,
) -> dict[str, Any]:
    from tracetune.config import load_settings
    from tracetune.demo.pipeline import openai_client
    from tracetune.evaluate.replay import evaluate
    from tracetune.server.inprocess import InProcessServer

    settings = load_settings(home=home, run_jobs=False, run_automations=False, engine=engine, llamacpp_weights=weights)
    server = InProcessServer(settings).start()
    try:
        started = time.perf_counter()
        result = evaluate(openai_client(server.url, "demo"), models, records, max_tokens=64, concurrency=concurrency)
        seconds = time.perf_counter() - started
    finally:
        server.stop()
    return {
        "accuracy": {m: result["models"][m]["summary"]["accuracy"] for m in models},
        "replay_s": round(seconds, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", default="/tmp/tracetune-bench-serve-accuracy")
    ap.add_argument("--skip-demo", action="store_true", help="reuse the demo already in --home")
    ap.add_argument("--concurrency", type=int, default=1,
                    help="requests at a time (1: every answer decoded alone, so greedy answers do not depend on "
                    "the batch they share)")  # fmt: skip
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tracetune.config import load_settings
    from tracetune.demo.pipeline import DemoOptions, run_demo

    home = Path(args.home)
    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    summary_file = home / "report" / "summary.json"
    if not args.skip_demo:
        run_demo(DemoOptions(home=home), Quiet(), settings_home=load_settings().home)
    summary = json.loads(summary_file.read_text())
    tuned, base = summary["job"]["fine_tuned_model"], summary["model"]
    lines = (home / "report" / "heldout.jsonl").read_text().splitlines()
    records = [(i, json.loads(line)) for i, line in enumerate(lines, 1)]
    runs = {"llamacpp": ("llamacpp", "q8_0"), "llamacpp_as_shipped": ("llamacpp", "as-shipped"),
            "transformers": ("transformers", "as-shipped")}  # fmt: skip
    figures = {name: evaluate_on(*how, home, [base, tuned], records, args.concurrency) for name, how in runs.items()}
    gap = figures["llamacpp"]["accuracy"][tuned] - figures["transformers"]["accuracy"][tuned]
    gap_shipped = figures["llamacpp_as_shipped"]["accuracy"][tuned] - figures["transformers"]["accuracy"][tuned]
    result = {
        "bench": "serve_accuracy",
        "questions": len(records),
        "concurrency": args.concurrency,
        "base": base,
        "tuned": tuned,
        "demo_accuracy": summary.get("accuracy"),
        "engines": figures,
        "tuned_gap_llamacpp_minus_transformers": round(gap, 4),
        "tuned_gap_llamacpp_as_shipped_minus_transformers": round(gap_shipped, 4),
        "target": "|gap| <= 0.01",
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg()[0],
        "wall_s": round(time.perf_counter() - started, 1),
    }
    line = json.dumps(result)
    print(line)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")


if __name__ == "__main__":
    main()
