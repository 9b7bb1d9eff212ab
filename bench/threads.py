#!/usr/bin/env python
"""Benchmark (issue 20, item 4): a fine-tune beside a serving load, with the thread policy and without it.

The same fine-tune (SmolLM2, the 20 calculator records of tests/train/fixtures, batch 4, --epochs) runs as the job
runner runs it (``python -m tracetune.train.recipe`` in its own process, the environment from
``tracetune.train.runner.training_env``), three ways:

  alone        every usable core for training (a ``tracetune worker``: TRACETUNE_TRAIN_THREADS = cores)
  policy       beside a serving load, with tracetune's policy: the engine (llama.cpp) takes
               ``engine_threads()`` (1 on 2 cores), training the rest (``training_env(serving=True)``: 1)
  oversubscribed  beside the same load, each side taking every core (training cores threads, the engine cores
               threads): what happened before the policy

The serving load: --clients requests at a time on the llama.cpp engine (64 greedy tokens each, the calculator
prompts), for as long as the training runs. Figures: the training's seconds per optimizer step (after the first
step) and wall time, the serving load's tokens/s during it, and the ratios against ``alone``. Goal: ``policy``
loses no more than the cores it gives up (step time ratio <= cores / training threads: 2.0 on 2 cores).

  .venv/bin/python bench/threads.py            # ~4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from _engines import prompts, request, run_engine  # noqa: E402

TRAIN = ROOT / "tests" / "train" / "fixtures" / "calculator_train.jsonl"


def fine_tune(home: Path, work: Path, threads: int, epochs: int) -> dict[str, float]:
    """One fine-tune in its own process with ``threads`` threads: wall seconds and seconds per step."""
    from tracetune.threads import thread_env

    config = {"training_file": str(TRAIN), "output_dir": str(work), "home": str(home), "n_epochs": epochs,
              "batch_size": 4, "learning_rate_multiplier": 2.0, "task_eval_records": 0,
              "checkpoint_every_epoch": False}  # fmt: skip
    path = work.with_suffix(".json")
    path.write_text(json.dumps(config))
    env = {**os.environ, **thread_env(threads), "TRACETUNE_TRAIN_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tracetune.train.recipe", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, text=True)  # fmt: skip
    assert proc.stdout is not None
    steps: list[float] = []
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("type") == "metrics":
            steps.append(time.perf_counter())
        if event.get("type") == "error":
            raise RuntimeError(event["message"])
    proc.wait()
    wall = time.perf_counter() - started
    per_step = (steps[-1] - steps[0]) / (len(steps) - 1) if len(steps) > 1 else wall
    return {"wall_s": round(wall, 1), "step_s": round(per_step, 2), "steps": len(steps)}


class ServingLoad:
    """``clients`` requests at a time on ``engine`` until stopped; counts the tokens served."""

    def __init__(self, engine: Any, cases: list[list[int]], clients: int) -> None:
        self.engine, self.cases, self.clients = engine, cases, clients
        self.tokens = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            batch = [request(self.cases[(i + k) % len(self.cases)], 64) for k in range(self.clients)]
            _, timings = run_engine(self.engine, batch)
            self.tokens += sum(t.tokens for t in timings)
            i += self.clients

    def __enter__(self) -> ServingLoad:
        self.started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.seconds = time.perf_counter() - self.started

    @property
    def tokens_per_s(self) -> float:
        return round(self.tokens / self.seconds, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", default="/tmp/tracetune-bench-serve-home")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tracetune.config import Settings
    from tracetune.models import DEFAULT_MODEL_ID
    from tracetune.serve.engine.llamacpp import LlamaCppEngine
    from tracetune.threads import engine_threads, usable_cores
    from tracetune.train.runner import training_env

    home = Path(args.home)
    cores = usable_cores()
    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    policy_train = int(training_env(Settings(home=home), serving=True)["TRACETUNE_TRAIN_THREADS"])
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tt-threads-") as tmp:
        figures["alone"] = fine_tune(home, Path(tmp, "alone"), cores, args.epochs)
        for name, train_threads, serve_threads in (
            ("policy", policy_train, engine_threads()),
            ("oversubscribed", cores, cores),
        ):
            engine = LlamaCppEngine.load(home, DEFAULT_MODEL_ID, slots=args.clients, threads=serve_threads)
            cases = [c[0] for c in prompts(engine.tokenizer)]
            with ServingLoad(engine, cases, args.clients) as load:
                figures[name] = fine_tune(home, Path(tmp, name), train_threads, args.epochs)
            engine.close()
            figures[name].update(train_threads=train_threads, engine_threads=serve_threads,
                                 serving_tokens_per_s=load.tokens_per_s)  # fmt: skip
    alone = figures["alone"]["step_s"]
    result = {
        "bench": "threads",
        "cores": cores,
        "epochs": args.epochs,
        "clients": args.clients,
        **figures,
        "policy_step_vs_alone": round(figures["policy"]["step_s"] / alone, 2),
        "oversubscribed_step_vs_alone": round(figures["oversubscribed"]["step_s"] / alone, 2),
        "goal": f"policy_step_vs_alone <= {cores / policy_train:g} (the cores training gives up)",
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
