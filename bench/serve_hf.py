#!/usr/bin/env python
"""Benchmark: the transformers engine (tracetune.serve.engine.hf, the reference engine) against plain
``transformers.generate``, same run.

Model: the built-in SmolLM2-135M-Instruct, float32 on CPU (the weights de-quantized from the GGUF, cached in
--home). Prompt: the calculator function-calling prompt of the held-out set (system prompt + the Calculator tool
rendered by tracetune.chat.format + one question; ~200 tokens), as in the reference baseline
(../shared/reference/baselines/serve_baseline.py: 31.6 decode tok/s with generate, 110 with llama.cpp).

Figures (medians over --reps; the two batch-1 contenders alternate inside each rep):

  generate.batch1     model.generate(do_sample=False, max_new_tokens=N, min_new_tokens=N): ttft_s (tokenizing →
                      first logits processor call), tokens_per_s (N / total), decode_tokens_per_s ((N-1) / (total -
                      ttft))
  engine.batch1       one request through HFEngine (greedy, ignore_eos, N tokens), prefix cache off: ttft_s
                      (submit → first token event), the same two rates
  engine.batch1_warm_prefix   ttft_s of another question once the shared system prompt + tool schema is in the
                      engine's prefix cache (what an app that calls tools sees from its second request on)
  batch1_decode_vs_generate   engine decode tok/s / generate decode tok/s (target ≥ 1)
  engine.concurrent   --clients requests with different questions submitted at once (as concurrent clients
                      would), prefix cache off: aggregate_tokens_per_s = all tokens / (first submit → last
                      token), decode_aggregate_tokens_per_s = tokens after each first one / (last first token →
                      last token), ttft p50/max; ``concurrent_prefix_cache``: the same with the prefix cache on
                      (emptied before each rep: the first request computes the shared prefix, the others reuse it)
  concurrent_vs_batch1        aggregate tok/s / engine batch-1 tok/s, prefill included in both (target ≥ 3);
                      ``…_prefix_cache`` the same with the prefix cache on for the concurrent run
  constraint          the forced Calculator call (tool_choice named: llguidance via tracetune.serve.constrain)
                      decoded greedily, against the same number of free tokens from the same prompt: decode
                      ms per token of each (fastest rep) and overhead_pct (target ≤ 20), jump-forward off (one
                      step per token); forced_call_s: the whole call (submit → last token) without and with
                      jump-forward (forced tokens run together in one forward pass), and how many passes it took

Prints ONE JSON line (``--json-out FILE`` writes it too). The machine's load average at the start and the end
is recorded: on the 2-core project machine another busy process moves every figure a lot.

  .venv/bin/python bench/serve_hf.py                  # ~2-3 minutes on 2 idle cores once the weights are cached
  .venv/bin/python bench/serve_hf.py --quick          # 1 rep, 24 tokens
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(HERE))

from _engines import Timing, machine_info, prompts, request, rounded, run_engine  # noqa: E402


def bench_generate(model: Any, ids: list[int], new: int) -> dict[str, float]:
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    class FirstCall(LogitsProcessor):
        at: float | None = None

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if self.at is None:
                self.at = time.perf_counter()
            return scores

    first = FirstCall()
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            do_sample=False,
            max_new_tokens=new,
            min_new_tokens=new,
            logits_processor=LogitsProcessorList([first]),
            pad_token_id=2,
        )
    total = time.perf_counter() - t0
    assert out.shape[1] - len(ids) == new and first.at is not None
    ttft = first.at - t0
    return {"ttft_s": ttft, "tokens_per_s": new / total, "decode_tokens_per_s": (new - 1) / (total - ttft)}


def bench_engine_batch1(engine: Any, ids: list[int], new: int) -> dict[str, float]:
    t0, (timing,) = run_engine(engine, [request(ids, new)])
    assert timing.tokens == new and timing.first is not None
    total, ttft = timing.last - t0, timing.first - t0
    return {"ttft_s": ttft, "tokens_per_s": new / total, "decode_tokens_per_s": (new - 1) / (total - ttft)}


def prefix_cache(engine: Any, on: bool) -> None:
    """Empty the engine's prefix cache, and switch it on or off."""
    engine.prefix_cache = type(engine.prefix_cache)(max_entries=8 if on else 0)
    engine.adapters.on_evict = engine.prefix_cache.drop_adapter


def bench_concurrent(engine: Any, all_ids: list[list[int]], new: int, clients: int, cache: bool) -> dict[str, Any]:
    prefix_cache(engine, cache)
    t0, timings = run_engine(engine, [request(all_ids[i % len(all_ids)], new) for i in range(clients)])
    end = max(t.last for t in timings)
    ttfts = sorted((t.first or end) - t0 for t in timings)
    return {
        "aggregate_tokens_per_s": sum(t.tokens for t in timings) / (end - t0),
        "decode_aggregate_tokens_per_s": sum(t.tokens - 1 for t in timings) / (end - (t0 + ttfts[-1])),
        "ttft_p50_s": statistics.median(ttfts),
        "ttft_max_s": ttfts[-1],
        "wall_s": end - t0,
    }


def bench_warm_prefix(engine: Any, cases: list[list[int]]) -> dict[str, float]:
    prefix_cache(engine, True)
    run_engine(engine, [request(cases[1], 1)])
    t0, (timing,) = run_engine(engine, [request(cases[2], 1)])
    assert timing.first is not None and engine.prefix_cache.hits >= 1
    return {"ttft_s": timing.first - t0, "reused_prompt_tokens": float(engine.prefix_cache.reused_tokens)}


def bench_constraint(engine: Any, ids: list[int], tools: list[dict[str, Any]], reps: int) -> dict[str, Any]:
    from tracetune.serve.constrain import constraint_for_request
    from tracetune.serve.engine.grammar import compile_constraint

    name = tools[0]["function"]["name"]
    spec = constraint_for_request(tools=tools, tool_choice={"type": "function", "function": {"name": name}})
    assert spec is not None
    constraint = compile_constraint(engine.tokenizer, spec)

    def ms_per_token(constrained: bool, new: int) -> tuple[float, Timing]:
        req = request(ids, new, constraint if constrained else None, ignore_eos=not constrained)
        _, (timing,) = run_engine(engine, [req])
        assert timing.first is not None
        return (timing.last - timing.first) * 1000 / max(timing.tokens - 1, 1), timing

    def whole_call_s() -> float:
        t0, (timing,) = run_engine(engine, [request(ids, 96, constraint, ignore_eos=False)])
        return timing.last - t0

    engine.jump_forward = False  # the mask's own cost: every token sampled, one step each
    _, sample = ms_per_token(True, 96)  # warm-up; how long the forced call is
    tokens = sample.tokens
    plain, forced, stepwise, jumping = [], [], [], []
    for _ in range(reps):
        plain.append(ms_per_token(False, tokens)[0])
        forced.append(ms_per_token(True, 96)[0])
        stepwise.append(whole_call_s())
        engine.jump_forward = True
        steps = engine.steps
        jumping.append(whole_call_s())
        jump_steps = engine.steps - steps
        engine.jump_forward = False
    return {
        "tokens": tokens,
        "text": "".join(sample.text),
        "constrained_ms_per_token": round(min(forced), 2),
        "plain_ms_per_token": round(min(plain), 2),
        "overhead_pct": round((min(forced) / min(plain) - 1) * 100, 1),
        "forced_call_s": round(min(stepwise), 3),
        "forced_call_jump_forward_s": round(min(jumping), 3),
        "jump_forward_forward_passes": jump_steps + 1,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", default="/tmp/tracetune-bench-serve-home", help="data home (model caches)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="1 rep, 24 new tokens")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()
    if args.quick:
        args.reps, args.new_tokens = 1, 24

    from tracetune.models import DEFAULT_MODEL_ID
    from tracetune.serve.engine.hf import HFEngine

    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    t0 = time.perf_counter()
    engine = HFEngine.load(Path(args.home), DEFAULT_MODEL_ID, max_batch_size=max(16, args.clients))
    load_s = time.perf_counter() - t0
    model = engine.adapters.model  # the same weights: generate runs while the engine is idle
    cases = prompts(engine.tokenizer)
    ids, tools = cases[0]
    new = args.new_tokens
    prefix_cache(engine, False)
    bench_generate(model, ids, new)  # warm-up both
    bench_engine_batch1(engine, ids, new)
    gen, eng = [], []
    for _ in range(args.reps):
        gen.append(bench_generate(model, ids, new))
        eng.append(bench_engine_batch1(engine, ids, new))
    warm = rounded([bench_warm_prefix(engine, [c[0] for c in cases]) for _ in range(args.reps)])
    all_ids = [c[0] for c in cases]
    bench_concurrent(engine, all_ids, new, args.clients, False)  # warm-up
    concurrent, cached = [], []
    for _ in range(args.reps):
        concurrent.append(bench_concurrent(engine, all_ids, new, args.clients, False))
        cached.append(bench_concurrent(engine, all_ids, new, args.clients, True))
    prefix_cache(engine, False)
    constraint = bench_constraint(engine, ids, tools, args.reps)
    engine.close()

    generate_fig, engine_fig = rounded(gen), rounded(eng)
    concurrent_fig, cached_fig = rounded(concurrent), rounded(cached)
    result = {
        "bench": "serve",
        "model": DEFAULT_MODEL_ID,
        "new_tokens": new,
        "prompt_tokens": len(ids),
        "reps": args.reps,
        "load_s": round(load_s, 2),
        "generate": {"batch1": generate_fig},
        "engine": {
            "batch1": engine_fig,
            "batch1_warm_prefix": warm,
            "concurrent": {"clients": args.clients, **concurrent_fig},
            "concurrent_prefix_cache": {"clients": args.clients, **cached_fig},
        },
        "batch1_decode_vs_generate": round(engine_fig["decode_tokens_per_s"] / generate_fig["decode_tokens_per_s"], 2),
        "concurrent_vs_batch1": round(concurrent_fig["aggregate_tokens_per_s"] / engine_fig["tokens_per_s"], 2),
        "concurrent_vs_batch1_prefix_cache": round(
            cached_fig["aggregate_tokens_per_s"] / engine_fig["tokens_per_s"], 2
        ),
        "concurrent_decode_vs_batch1_decode": round(
            concurrent_fig["decode_aggregate_tokens_per_s"] / engine_fig["decode_tokens_per_s"], 2
        ),
        "constraint": constraint,
        "targets": {"batch1_decode_vs_generate": ">= 1", "concurrent_vs_batch1": ">= 3", "overhead_pct": "<= 20"},
        "reference_baseline": {"generate_decode_tokens_per_s": 31.6, "llamacpp_decode_tokens_per_s": 110},
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg()[0],
        "wall_s": round(time.perf_counter() - started, 1),
        "machine": machine_info(),
    }
    line = json.dumps(result)
    print(line)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")


if __name__ == "__main__":
    main()
