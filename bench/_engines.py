"""Helpers shared by the serving benchmarks (``serve.py``, ``serve_hf.py``): the calculator prompts, per-request
event timing on any engine of the ``Engine`` protocol, medians, and the machine's description."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = ROOT / "tests" / "train" / "fixtures" / "calculator_heldout.jsonl"


def prompts(tokenizer: Any) -> list[tuple[list[int], list[dict[str, Any]]]]:
    from tracetune.chat.format import render_prompt

    out = []
    for line in HELDOUT.read_text().splitlines():
        record = json.loads(line)
        text = render_prompt(record["messages"][:-1], tools=record["tools"])
        out.append((tokenizer.encode(text), record["tools"]))
    return out


class Timing:
    """Event times of one request (the engine calls ``__call__`` from its thread)."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last = 0.0
        self.tokens = 0
        self.text: list[str] = []
        self.done = threading.Event()
        self.error: BaseException | None = None

    def __call__(self, event: Any) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now
        self.tokens = event.completion_tokens
        self.text.append(event.text)
        if event.error is not None:
            self.error = event.error
        if event.done:
            self.done.set()


def run_engine(engine: Any, requests: list[Any]) -> tuple[float, list[Timing]]:
    timings = [Timing() for _ in requests]
    t0 = time.perf_counter()
    for request, timing in zip(requests, timings, strict=True):
        engine.submit(request, timing)
    for timing in timings:
        timing.done.wait()
        if timing.error is not None:
            raise timing.error
    return t0, timings


def request(ids: list[int], new: int, constraint: Any = None, ignore_eos: bool = True) -> Any:
    from tracetune.serve.engine.protocol import GenerationRequest, SamplingParams

    params = SamplingParams(max_tokens=new, temperature=0, ignore_eos=ignore_eos)
    return GenerationRequest(list(ids), params, constraint=constraint)


def machine_info() -> dict[str, Any]:
    import torch

    cpu = ""
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    versions = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "llguidance", "xllamacpp"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "tracetune"], cwd=ROOT, capture_output=True, text=True)
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "platform": platform.platform(),
        "versions": versions,
        "git": git.stdout.strip() + ("+dirty" if dirty.stdout.strip() else ""),
    }


def rounded(figures: list[dict[str, float]]) -> dict[str, Any]:
    keys = figures[0].keys()
    out: dict[str, Any] = {k: round(statistics.median(f[k] for f in figures), 4) for k in keys}
    out["reps"] = [{k: round(f[k], 4) for k in keys} for f in figures]
    return out
