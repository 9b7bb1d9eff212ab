#!/usr/bin/env python
"""Benchmark (issue 20): the default CPU engine (llama.cpp, tracetune.serve.engine.llamacpp) against raw llama.cpp on
the same GGUF and against the transformers engine (tracetune.serve.engine.hf, the engine before issue 20), one run.

Model: the built-in SmolLM2-135M-Instruct. The llama.cpp contenders read the same GGUF: the engine's default, the
shipped Q4_1 file re-quantized once to Q8_0 (``--weights as-shipped``: the Q4_1 file itself); the transformers
engine its float32 de-quantization. Prompt: the calculator function-calling prompt of the held-out
set (~200 tokens, rendered by tracetune.chat.format). Every engine runs with ONE thread (``--threads``), the
setting on a 2-core machine (TRACETUNE_ENGINE_THREADS's default).

Contenders:
  default       LlamaCppEngine through the Engine protocol (what /v1/chat/completions uses)
  raw_llamacpp  llama.cpp's own server (the same xllamacpp binding, the same GGUF and sampling), driven directly:
                what the default engine would be without tracetune's layer (llama-cpp-python has no wheel on PyPI,
                so the raw baseline is llama.cpp's server in the binding the engine uses)
  transformers  HFEngine (prefix cache off)

Figures (medians over --reps; the batch-1 contenders alternate inside each rep):
  <contender>.batch1       greedy, ignore_eos, N tokens: ttft_s, decode_tokens_per_s ((N-1) / (total - ttft))
  <contender>.concurrent   --clients requests at once (different questions): aggregate_tokens_per_s (all tokens
                           / wall), ttft p50/max, after one such round (``concurrent_cold``: that first round,
                           when no cache holds the prompts' shared system prompt + tool schema yet); the raw
                           server picks its own slots (by prompt similarity), the transformers engine's prefix
                           cache is off
  default.adapter_batch1   the same request through a LoRA adapter (r=8 on every projection, random weights
                           unless --adapter names a fine-tuned model's adapter directory), converted to GGUF once
Ratios and their goals (issue 20): default_vs_transformers_decode >= 2.5, default_vs_raw_llamacpp_decode >= 0.9,
adapter_vs_base_decode >= 0.8, default_concurrent_vs_batch1 >= 3 (aggregate / own batch-1 tok/s).

Prints ONE JSON line (``--json-out FILE`` too), with the load average at the start and the end.

  .venv/bin/python bench/serve.py            # ~3 minutes on 2 idle cores once the weights are cached
  .venv/bin/python bench/serve.py --quick    # 1 rep, 24 tokens
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from _engines import machine_info, prompts, request, rounded, run_engine  # noqa: E402

# between measurements: torch's OpenMP workers spin ~200 ms after the transformers engine's last step and would take
# the core from whichever contender runs next
SETTLE_S = 0.5


def engine_batch1(engine: Any, ids: list[int], new: int, adapter: str | None = None) -> dict[str, float]:
    req = request(ids, new)
    req.adapter_dir = adapter
    t0, (timing,) = run_engine(engine, [req])
    assert timing.tokens == new and timing.first is not None, (timing.tokens, new)
    total, ttft = timing.last - t0, timing.first - t0
    return {"ttft_s": ttft, "decode_tokens_per_s": (new - 1) / (total - ttft), "tokens_per_s": new / total}


def engine_concurrent(engine: Any, all_ids: list[list[int]], new: int, clients: int) -> dict[str, float]:
    t0, timings = run_engine(engine, [request(all_ids[i % len(all_ids)], new) for i in range(clients)])
    end = max(t.last for t in timings)
    ttfts = sorted((t.first or end) - t0 for t in timings)
    return {
        "aggregate_tokens_per_s": sum(t.tokens for t in timings) / (end - t0),
        "ttft_p50_s": statistics.median(ttfts),
        "ttft_max_s": ttfts[-1],
    }


class RawLlamaCpp:
    """llama.cpp's server without tracetune: token ids in, streamed completions out, same sampling as the engine."""

    def __init__(self, gguf: Path, slots: int, threads: int, context: int) -> None:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(gguf)
        params.n_ctx = context
        params.n_parallel = slots
        params.kv_unified = True
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.warmup = False
        params.verbosity = -1
        params.cache_ram_mib = 0
        self.server = xllamacpp.Server(params)

    cache = False  # cache_prompt of every request (the server's own slot choice and prefix reuse)

    def one(self, ids: list[int], new: int) -> tuple[float, float, int]:
        """(ttft, total, tokens) of one greedy completion."""
        # the sampler chain the engine sends for a greedy request (top-p left out: it cannot change a greedy draw)
        body = {"prompt": ids, "max_tokens": new, "temperature": 0, "ignore_eos": True, "stream": True,
                "cache_prompt": self.cache, "samplers": ["temperature"], "top_k": 0, "min_p": 0.0}  # fmt: skip
        first: list[float] = []
        t0 = time.perf_counter()
        usage: dict[str, Any] = {}

        def on_chunk(chunk: dict[str, Any]) -> bool:
            if not first:
                first.append(time.perf_counter())
            usage.update(chunk.get("usage") or {})
            return False

        self.server.handle_completions(body, on_chunk)
        return first[0] - t0, time.perf_counter() - t0, int(usage.get("completion_tokens", 0))

    def batch1(self, ids: list[int], new: int) -> dict[str, float]:
        ttft, total, tokens = self.one(ids, new)
        assert tokens == new, (tokens, new)
        return {"ttft_s": ttft, "decode_tokens_per_s": (new - 1) / (total - ttft), "tokens_per_s": new / total}

    def concurrent(self, all_ids: list[list[int]], new: int, clients: int) -> dict[str, float]:
        results: list[tuple[float, float, int]] = []
        t0 = time.perf_counter()

        def run(i: int) -> None:
            results.append(self.one(all_ids[i % len(all_ids)], new))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        ttfts = sorted(r[0] for r in results)
        return {"aggregate_tokens_per_s": sum(r[2] for r in results) / wall, "ttft_p50_s": statistics.median(ttfts),
                "ttft_max_s": ttfts[-1]}  # fmt: skip


def random_adapter(model: Any, directory: Path) -> Path:
    """A LoRA adapter (r=8 on every projection, the recipe's targets) with random non-zero weights."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tracetune.models.compat import peft_wrapping
    from tracetune.train.recipe import TARGET_MODULES

    if (directory / "adapter_model.safetensors").exists():
        return directory
    torch.manual_seed(0)
    with peft_wrapping():
        peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=list(TARGET_MODULES)))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)
    peft_model.save_pretrained(directory)
    peft_model.unload()
    return directory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", default="/tmp/tracetune-bench-serve-home", help="data home (model caches)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="threads of every engine")
    ap.add_argument("--adapter", default=None, help="a fine-tuned model's adapter directory (default: random)")
    ap.add_argument("--weights", default="q8_0", choices=["q8_0", "as-shipped"], help="TRACETUNE_LLAMACPP_WEIGHTS")
    ap.add_argument("--quick", action="store_true", help="1 rep, 24 new tokens")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()
    if args.quick:
        args.reps, args.new_tokens = 1, 24

    import torch

    from tracetune.models import DEFAULT_MODEL_ID
    from tracetune.models.registry import resolve
    from tracetune.serve.engine.hf import HFEngine
    from tracetune.serve.engine.llamacpp import LlamaCppEngine

    torch.set_num_threads(args.threads)
    home = Path(args.home)
    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    spec = resolve(home, DEFAULT_MODEL_ID)
    t0 = time.perf_counter()
    default = LlamaCppEngine.load(
        home, DEFAULT_MODEL_ID, weights=args.weights, slots=args.clients, threads=args.threads
    )
    load_default_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hf = HFEngine.load(home, DEFAULT_MODEL_ID, max_batch_size=max(16, args.clients))
    load_hf_s = time.perf_counter() - t0
    hf.prefix_cache = type(hf.prefix_cache)(max_entries=0)
    raw = RawLlamaCpp(default.gguf_path, args.clients, args.threads, spec.context_length)  # the same file
    adapter = str(args.adapter or random_adapter(hf.adapters.model, home / "bench-adapter"))

    cases = [c[0] for c in prompts(default.tokenizer)]
    ids, new = cases[0], args.new_tokens
    engine_batch1(default, ids, new, adapter)  # warm-up (and the adapter's conversion + server start)
    engine_batch1(default, ids, new)
    default.prompt_cache = False  # batch 1: every prompt computed whole, as the other two do
    raw.batch1(ids, new)
    engine_batch1(hf, ids, new)
    figs: dict[str, list[dict[str, float]]] = {k: [] for k in ("default", "adapter", "raw", "hf")}
    runs = {
        "default": lambda: engine_batch1(default, ids, new),
        "adapter": lambda: engine_batch1(default, ids, new, adapter),
        "raw": lambda: raw.batch1(ids, new),
        "hf": lambda: engine_batch1(hf, ids, new),
    }
    for rep in range(args.reps):
        order = list(runs)
        order = order[rep % len(order) :] + order[: rep % len(order)]  # each contender follows another each rep
        for name in order:
            time.sleep(SETTLE_S)
            figs[name].append(runs[name]())
    # with the prompt caches on: batch 1 on a prompt computed before (a slot holds it; the transformers engine's
    # prefix cache), then the concurrent rounds, the first cold (no slot holds the shared system prompt + tools
    # yet), reported apart
    default.prompt_cache, raw.cache = True, True
    hf.prefix_cache = type(hf.prefix_cache)(max_entries=8)
    warm: dict[str, list[dict[str, float]]] = {k: [] for k in ("default", "raw", "hf")}
    for contender, run in (("default", lambda: engine_batch1(default, ids, new)), ("raw", lambda: raw.batch1(ids, new)),
                           ("hf", lambda: engine_batch1(hf, ids, new))):  # fmt: skip
        run()
        warm[contender] = [run() for _ in range(args.reps)]
    cold = {
        "default": engine_concurrent(default, cases, new, args.clients),
        "raw": raw.concurrent(cases, new, args.clients),
        "hf": engine_concurrent(hf, cases, new, args.clients),
    }
    conc: dict[str, list[dict[str, float]]] = {k: [] for k in ("default", "raw", "hf")}
    for _ in range(args.reps):
        conc["default"].append(engine_concurrent(default, cases, new, args.clients))
        conc["raw"].append(raw.concurrent(cases, new, args.clients))
        conc["hf"].append(engine_concurrent(hf, cases, new, args.clients))
    default.close()
    hf.close()

    b = {k: rounded(v) for k, v in figs.items()}
    c = {k: rounded(v) for k, v in conc.items()}
    w = {k: rounded(v) for k, v in warm.items()}
    result = {
        "bench": "serve",
        "model": DEFAULT_MODEL_ID,
        "gguf": default.gguf_path.name,
        "new_tokens": new,
        "prompt_tokens": len(ids),
        "reps": args.reps,
        "threads": args.threads,
        "clients": args.clients,
        "load_s": {"default": round(load_default_s, 2), "transformers": round(load_hf_s, 2)},
        "default": {
            "batch1": b["default"],
            "adapter_batch1": b["adapter"],
            "batch1_cached_prompt": w["default"],
            "concurrent": c["default"],
            "concurrent_cold": cold["default"],
        },
        "raw_llamacpp": {
            "batch1": b["raw"],
            "batch1_cached_prompt": w["raw"],
            "concurrent": c["raw"],
            "concurrent_cold": cold["raw"],
        },
        "transformers": {
            "batch1": b["hf"],
            "batch1_cached_prompt": w["hf"],
            "concurrent": c["hf"],
            "concurrent_cold": cold["hf"],
        },
        "default_vs_transformers_decode": round(
            b["default"]["decode_tokens_per_s"] / b["hf"]["decode_tokens_per_s"], 2
        ),
        "default_vs_raw_llamacpp_decode": round(
            b["default"]["decode_tokens_per_s"] / b["raw"]["decode_tokens_per_s"], 2
        ),
        "adapter_vs_base_decode": round(b["adapter"]["decode_tokens_per_s"] / b["default"]["decode_tokens_per_s"], 2),
        # aggregate over the clients / one request's tok/s, both with the prompt caches on (cold: both without)
        "default_concurrent_vs_batch1": round(c["default"]["aggregate_tokens_per_s"] / w["default"]["tokens_per_s"], 2),
        "raw_concurrent_vs_batch1": round(c["raw"]["aggregate_tokens_per_s"] / w["raw"]["tokens_per_s"], 2),
        "transformers_concurrent_vs_batch1": round(c["hf"]["aggregate_tokens_per_s"] / w["hf"]["tokens_per_s"], 2),
        "default_concurrent_cold_vs_batch1": round(
            cold["default"]["aggregate_tokens_per_s"] / b["default"]["tokens_per_s"], 2
        ),
        "targets": {
            "default_vs_transformers_decode": ">= 2.5",
            "default_vs_raw_llamacpp_decode": ">= 0.9",
            "adapter_vs_base_decode": ">= 0.8",
            "default_concurrent_vs_batch1": ">= 3",
        },
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
