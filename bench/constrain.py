#!/usr/bin/env python
"""Benchmark: constrained decoding libraries on SmolLM2's tokenizer, against an unconstrained decode step.

Candidates (each skipped with its error when not installed or when it fails):

  llguidance          tracetune.serve.constrain itself (Lark grammar built from the schema, llguidance underneath)
  xgrammar            GrammarCompiler: EBNF prefix/suffix concatenated with its JSON-schema grammar
                      (separators ", " / ": ", no other whitespace)
  outlines-core       regex from build_regex_from_schema (whitespace_pattern " ?": exact separators are not
                      available) with the literal prefix/suffix, compiled to an Index over the vocabulary
  lm-format-enforcer  SequenceParser(StringParser(prefix), JsonSchemaParser(schema), StringParser(suffix))

Two grammars: (a) a forced Calculator call (``<tool_call>{"name": "Calculator", "arguments": {…}}</tool_call>``
with an enum), (b) a json_schema response with enums, a nested object and an array. Figures per candidate:

  compile_ms        grammar → ready-to-mask object, median of --reps fresh compiles (caches cleared); the
                    tokenizer set-up each library needs once per tokenizer is ``tokenizer_setup_ms``
  mask_us           per token: compute the allowed set and apply it to a logits tensor of the model's
                    vocabulary (-inf where disallowed), median over the tokens of realistic outputs (3 calls,
                    2 JSON answers, each pass with fresh random logits), in CPU time of the calling thread
                    (all four do this work on the caller's thread), so a busy machine moves it little
  step_us           mask_us + consuming the token (advance): all the constraint adds to a decode step
                    (``step_wall_us`` is the same in wall time)
  step_us_mean      the mean of the same: what a whole output pays per token (``fastest_per_token_mean`` ranks
                    the candidates by it, summed over both grammars)
  overhead_pct      step_us / decode_step_ms (``overhead_pct_vs_fastest_step``: / decode_step_min_ms)

The baseline is measured in the same run: one greedy decode step of SmolLM2-135M fp32 with KV cache after the
192-token calculator prompt: ``decode_step_ms`` (median wall time over --decode-steps), ``decode_step_min_ms``
(fastest), ``decode_step_cpu_ms`` (median CPU time of all the process's threads). ``e2e_llguidance`` decodes
the forced call with the real model greedily, with and without the constraint, alternating --reps times, and
compares the fastest run of each (ms per token).

Prints ONE JSON line (``--json-out FILE`` writes it too).

  .venv/bin/python bench/constrain.py                      # ~2 minutes on 2 idle cores (model cached in --home)
  .venv/bin/python bench/constrain.py --home /tmp/tt-home --reps 3 --only llguidance,xgrammar
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

CALCULATOR = {
    "type": "function",
    "function": {
        "name": "Calculator",
        "description": "Evaluate a basic arithmetic operation on two numbers.",
        "parameters": {
            "type": "object",
            "properties": {
                "num1": {"type": "number"},
                "num2": {"type": "number"},
                "operation": {"type": "string", "enum": ["+", "-", "*", "/"]},
            },
            "required": ["num1", "num2", "operation"],
        },
    },
}
TICKET = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["billing", "bug", "feature_request", "other"]},
        "priority": {"type": "integer"},
        "summary": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "customer": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "plan": {"type": "string", "enum": ["free", "pro", "team"]}},
            "required": ["name", "plan"],
            "additionalProperties": False,
        },
    },
    "required": ["category", "priority", "summary", "tags", "customer"],
    "additionalProperties": False,
}
CALL_ARGS = [
    {"num1": 12, "num2": 7, "operation": "*"},
    {"num1": 1250.5, "num2": 0.25, "operation": "/"},
    {"num1": -48, "num2": 1999, "operation": "+"},
]
TICKETS = [
    {
        "category": "bug",
        "priority": 2,
        "summary": "Exporting a project with more than 10k runs crashes the web UI",
        "tags": ["export", "ui", "crash"],
        "customer": {"name": "Ada Lovelace", "plan": "pro"},
    },
    {
        "category": "billing",
        "priority": 1,
        "summary": "Charged twice for the March invoice",
        "tags": ["invoice"],
        "customer": {"name": "Grace Hopper", "plan": "team"},
    },
]
SEPARATORS = (", ", ": ")


def call_text(args: dict[str, Any]) -> str:
    from tracetune.chat.format import tool_call_to_block

    return tool_call_to_block("Calculator", args)


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=SEPARATORS)


def call_prefix_suffix() -> tuple[str, str]:
    from tracetune.chat.format import tool_call_to_block

    head, tail = tool_call_to_block("Calculator", {}).rsplit("{}", 1)
    return head, tail


def median_ms(fn: Callable[[], Any], reps: int) -> float:
    times = []
    for _ in range(reps):
        gc.collect()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 3)


class Candidate:
    """One library behind three calls: compile(case) → object; start(obj) → state; step(state, logits, token)."""

    name = ""
    package = ""

    def setup(self, tokenizer: Any, hf_tokenizer: Any, vocab_size: int) -> None: ...
    def compile(self, case: str) -> Any: ...
    def start(self, compiled: Any) -> Any: ...
    def mask(self, state: Any, logits: Any) -> None: ...
    def advance(self, state: Any, token: int) -> None: ...


def apply_bitmask(words: Any, logits: Any, tokenizer_vocab: int) -> None:
    """The packed 32-bit mask (numpy) → -inf in place over ``logits``, the way tracetune.serve.constrain does it
    (numpy on the tensor's memory: torch's masked_fill_ wakes its thread pool for one row)."""
    import numpy as np

    arr = logits.numpy()
    arr[tokenizer_vocab:] = -np.inf
    denied = np.unpackbits((~words).view(np.uint8), count=tokenizer_vocab, bitorder="little").view(np.bool_)
    np.copyto(arr[:tokenizer_vocab], -np.inf, where=denied)


class Llguidance(Candidate):
    name, package = "llguidance", "llguidance"

    def setup(self, tokenizer: Any, hf_tokenizer: Any, vocab_size: int) -> None:
        from tracetune.serve import constrain
        from tracetune.serve.engine import grammar

        self.constrain = constrain
        self.grammar = grammar
        self.tokenizer = tokenizer
        grammar._tokenizer_info(tokenizer)

    def compile(self, case: str) -> Any:
        c = self.constrain
        c._compile.cache_clear()
        if case == "call":
            choice = {"type": "function", "function": {"name": "Calculator"}}
            spec = c.constraint_for_request(tools=[CALCULATOR], tool_choice=choice)
        else:
            fmt = {"type": "json_schema", "json_schema": {"name": "ticket", "schema": TICKET, "strict": True}}
            spec = c.constraint_for_request(response_format=fmt)
        assert spec is not None
        return c.compile_constraint(self.tokenizer, spec)

    def start(self, compiled: Any) -> Any:
        return compiled.start()

    def mask(self, state: Any, logits: Any) -> None:
        state.mask_logits(logits)

    def advance(self, state: Any, token: int) -> None:
        state.advance(token)


class Xgrammar(Candidate):
    name, package = "xgrammar", "xgrammar"

    def setup(self, tokenizer: Any, hf_tokenizer: Any, vocab_size: int) -> None:
        import xgrammar as xgr

        self.xgr = xgr
        self.vocab_size = vocab_size
        info = xgr.TokenizerInfo.from_huggingface(hf_tokenizer, vocab_size=vocab_size, stop_token_ids=[2])
        self.compiler = xgr.GrammarCompiler(info, cache_enabled=False)

    def compile(self, case: str) -> Any:
        xgr = self.xgr
        if case == "call":
            head, tail = call_prefix_suffix()
            params = CALCULATOR["function"]["parameters"]  # type: ignore[index]
            grammar = xgr.Grammar.concat(
                xgr.Grammar.from_ebnf(f"root ::= {json.dumps(head)}"),
                xgr.Grammar.from_json_schema(params, any_whitespace=False, separators=SEPARATORS),
                xgr.Grammar.from_ebnf(f"root ::= {json.dumps(tail)}"),
            )
            return self.compiler.compile_grammar(grammar)
        return self.compiler.compile_json_schema(TICKET, any_whitespace=False, separators=SEPARATORS)

    def start(self, compiled: Any) -> Any:
        return (self.xgr.GrammarMatcher(compiled), self.xgr.allocate_token_bitmask(1, self.vocab_size))

    def mask(self, state: Any, logits: Any) -> None:
        matcher, bitmask = state
        matcher.fill_next_token_bitmask(bitmask)
        self.xgr.apply_token_bitmask_inplace(logits, bitmask[0])

    def advance(self, state: Any, token: int) -> None:
        if not state[0].accept_token(token):
            raise RuntimeError(f"xgrammar rejected token {token}")


class OutlinesCore(Candidate):
    name, package = "outlines-core", "outlines_core"

    def setup(self, tokenizer: Any, hf_tokenizer: Any, vocab_size: int) -> None:
        import outlines_core

        self.oc = outlines_core
        self.tokenizer_vocab = tokenizer.vocab_size
        self.vocabulary = outlines_core.Vocabulary(tokenizer.eos_token_id, byte_vocabulary(tokenizer))

    def compile(self, case: str) -> Any:
        oc = self.oc
        if case == "call":
            head, tail = call_prefix_suffix()
            params = json.dumps(CALCULATOR["function"]["parameters"])  # type: ignore[index]
            body = oc.json_schema.build_regex_from_schema(params, whitespace_pattern=" ?")
            regex = re.escape(head) + body + re.escape(tail)
        else:
            regex = oc.json_schema.build_regex_from_schema(json.dumps(TICKET), whitespace_pattern=" ?")
        return oc.Index(regex, self.vocabulary)

    def start(self, compiled: Any) -> Any:
        import numpy as np

        return self.oc.Guide(compiled), np.zeros((self.tokenizer_vocab + 31) // 32, dtype=np.uint32)

    def mask(self, state: Any, logits: Any) -> None:
        guide, words = state
        guide.write_mask_into(words.ctypes.data, words.size, 4)
        apply_bitmask(words, logits, self.tokenizer_vocab)

    def advance(self, state: Any, token: int) -> None:
        state[0].advance(token)


class LmFormatEnforcer(Candidate):
    name, package = "lm-format-enforcer", "lm-format-enforcer"

    def setup(self, tokenizer: Any, hf_tokenizer: Any, vocab_size: int) -> None:
        from lmformatenforcer import TokenEnforcerTokenizerData

        # lmformatenforcer.integrations.transformers does not import under transformers 5 (it imports
        # transformers.tokenization_utils): the same construction as its build_token_enforcer_tokenizer_data
        zero = hf_tokenizer.encode("0")[-1]
        special = set(hf_tokenizer.all_special_ids)
        regular = []
        for index in range(tokenizer.vocab_size):
            if index in special:
                continue
            after_zero = hf_tokenizer.decode([zero, index])[1:]
            regular.append((index, after_zero, len(after_zero) > len(hf_tokenizer.decode([index]))))

        def decode(tokens: list[int]) -> str:
            return str(hf_tokenizer.decode(tokens)).rstrip("\ufffd")

        self.data = TokenEnforcerTokenizerData(regular, decode, tokenizer.eos_token_id, False, vocab_size)

    def compile(self, case: str) -> Any:
        from lmformatenforcer import JsonSchemaParser, SequenceParser, StringParser, TokenEnforcer

        if case == "call":
            head, tail = call_prefix_suffix()
            params = CALCULATOR["function"]["parameters"]  # type: ignore[index]
            parser = SequenceParser([StringParser(head), JsonSchemaParser(params), StringParser(tail)])
        else:
            parser = JsonSchemaParser(TICKET)
        return lambda: TokenEnforcer(self.data, parser)

    def start(self, compiled: Any) -> Any:
        return compiled(), []

    def mask(self, state: Any, logits: Any) -> None:
        import numpy as np

        enforcer, ids = state
        allowed = np.asarray(enforcer.get_allowed_tokens(ids).allowed_tokens, dtype=np.int64)
        arr = logits.numpy()
        keep = arr[allowed]
        arr.fill(-np.inf)
        arr[allowed] = keep

    def advance(self, state: Any, token: int) -> None:
        state[1].append(token)


CANDIDATES: list[type[Candidate]] = [Llguidance, Xgrammar, OutlinesCore, LmFormatEnforcer]


def byte_vocabulary(tokenizer: Any) -> dict[bytes, list[int]]:
    """token bytes → ids for a byte-level BPE tokenizer (GPT-2 byte ↔ unicode table); special tokens left out."""
    table = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    table += list(range(ord("®"), ord("ÿ") + 1))
    codes = table[:]
    n = 0
    for b in range(256):
        if b not in table:
            table.append(b)
            codes.append(256 + n)
            n += 1
    decoder = {chr(c): b for b, c in zip(table, codes, strict=True)}
    out: dict[bytes, list[int]] = {}
    specials = {t.content for t in tokenizer.backend.get_added_tokens_decoder().values()}
    for token, index in tokenizer.backend.get_vocab(with_added_tokens=False).items():
        if token in specials:
            continue
        out.setdefault(bytes(decoder[ch] for ch in token), []).append(index)
    return out


def measure(
    candidate: Candidate, case: str, outputs: list[list[int]], model_vocab: int, eos: int, reps: int
) -> dict[str, Any]:
    import numpy as np
    import torch

    compiled = candidate.compile(case)
    compile_ms = median_ms(lambda: candidate.compile(case), reps)
    rng = np.random.default_rng(0)
    wall: dict[str, list[float]] = {"mask": [], "step": []}
    cpu: dict[str, list[float]] = {"mask": [], "step": []}
    for _ in range(reps):
        for ids in outputs:
            state = candidate.start(compiled)
            for token in ids:
                logits = torch.from_numpy(rng.standard_normal(model_vocab, dtype=np.float32))
                w0, c0 = time.perf_counter(), time.thread_time()
                candidate.mask(state, logits)
                w1, c1 = time.perf_counter(), time.thread_time()
                if logits[token] == float("-inf"):
                    raise RuntimeError(f"{candidate.name} masked the expected token {token} ({case})")
                w2, c2 = time.perf_counter(), time.thread_time()
                if token != eos:  # the engine stops at end-of-turn: it is masked for, never consumed
                    candidate.advance(state, token)
                w3, c3 = time.perf_counter(), time.thread_time()
                wall["mask"].append((w1 - w0) * 1e6)
                wall["step"].append((w1 - w0 + w3 - w2) * 1e6)
                cpu["mask"].append((c1 - c0) * 1e6)
                cpu["step"].append((c1 - c0 + c3 - c2) * 1e6)
    return {
        "compile_ms": compile_ms,
        "mask_us": round(statistics.median(cpu["mask"]), 1),
        "step_us": round(statistics.median(cpu["step"]), 1),
        "step_us_mean": round(statistics.fmean(cpu["step"]), 1),
        "step_us_p90": round(statistics.quantiles(cpu["step"], n=10)[-1], 1),
        "step_wall_us": round(statistics.median(wall["step"]), 1),
        "tokens": len(cpu["step"]) // reps,
    }


def decode_baseline(model: Any, prompt_ids: list[int], steps: int) -> tuple[float, float, float]:
    """(median, fastest, median CPU time of all threads) ms of one greedy decode step with KV cache, after
    prefilling ``prompt_ids``."""
    import torch

    times, cpu = [], []
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
        past = out.past_key_values
        token = int(out.logits[0, -1].argmax())
        for _ in range(steps):
            started, cpu_started = time.perf_counter(), time.process_time()
            out = model(input_ids=torch.tensor([[token]]), past_key_values=past, use_cache=True)
            past = out.past_key_values
            token = int(out.logits[0, -1].argmax())
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
    return statistics.median(times) * 1000, min(times) * 1000, statistics.median(cpu) * 1000


def e2e(model: Any, tokenizer: Any, prompt_ids: list[int], constraint: Any, max_new: int, reps: int) -> dict[str, Any]:
    """Greedy decode of the forced call, constrained and not (same number of steps): ms per token of the fastest
    of ``reps`` alternating runs each."""
    import torch

    def run(constrained: bool, steps: int) -> tuple[float, list[int]]:
        state = constraint.start() if constrained else None
        ids: list[int] = []
        with torch.inference_mode():
            started = time.perf_counter()
            out = model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
            prefill = time.perf_counter() - started
            past = out.past_key_values
            logits = out.logits[0, -1]
            started = time.perf_counter()
            for _ in range(steps):
                if state is not None:
                    state.mask_logits(logits)
                token = int(logits.argmax())
                ids.append(token)
                if state is not None:
                    state.advance(token)
                    if token == tokenizer.eos_token_id or state.is_finished():
                        break
                out = model(input_ids=torch.tensor([[token]]), past_key_values=past, use_cache=True)
                past = out.past_key_values
                logits = out.logits[0, -1]
            elapsed = time.perf_counter() - started
        del prefill
        return elapsed * 1000 / max(len(ids), 1), ids

    _, ids = run(True, max_new)  # warm-up; fixes the number of steps
    plain, constrained = [], []
    for _ in range(reps):  # alternating, so both see the same background load; the fastest run of each counts
        plain.append(run(False, len(ids))[0])
        constrained.append(run(True, max_new)[0])
    return {
        "tokens": len(ids),
        "constrained_ms_per_token": round(min(constrained), 2),
        "plain_ms_per_token": round(min(plain), 2),
        "overhead_pct": round((min(constrained) / min(plain) - 1) * 100, 1),
        "text": tokenizer.decode(ids),
    }


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
    for name in [*("torch", "transformers", "tokenizers"), *(c.package for c in CANDIDATES)]:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "tracetune"], cwd=ROOT, capture_output=True, text=True)
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "torch_threads": __import__("torch").get_num_threads(),
        "platform": platform.platform(),
        "versions": versions,
        "git": git.stdout.strip() + ("+dirty" if dirty.stdout.strip() else ""),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", default=None, help="data home holding (or getting) the SmolLM2 tokenizer and weights")
    ap.add_argument("--reps", type=int, default=5, help="compiles timed, and passes over the outputs, per case")
    ap.add_argument("--decode-steps", type=int, default=40)
    ap.add_argument("--only", default=None, help="comma-separated candidate names")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()

    load_start = os.getloadavg()[0]
    import torch
    from transformers import PreTrainedTokenizerFast

    from tracetune.chat.format import render_prompt
    from tracetune.config import load_settings
    from tracetune.models import DEFAULT_MODEL_ID
    from tracetune.models.weights import load_base_model

    torch.manual_seed(0)
    home = Path(args.home) if args.home else load_settings().home
    model, tokenizer = load_base_model(home, DEFAULT_MODEL_ID, device="cpu")
    model_vocab = int(model.config.vocab_size)
    hf_tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer.path / "tokenizer.json"))
    hf_tokenizer.eos_token = tokenizer.eos_token
    eos = tokenizer.eos_token_id
    outputs = {
        "call": [[*tokenizer.encode(call_text(a)), eos] for a in CALL_ARGS],
        "json_schema": [[*tokenizer.encode(json_text(t)), eos] for t in TICKETS],
    }
    prompt = render_prompt([{"role": "user", "content": "What is 12 times 7?"}], tools=[CALCULATOR])
    prompt_ids = tokenizer.encode(prompt)

    step_ms, step_min_ms, step_cpu_ms = decode_baseline(model, prompt_ids, args.decode_steps)
    wanted = set(args.only.split(",")) if args.only else None
    candidates: dict[str, Any] = {}
    for cls in CANDIDATES:
        if wanted and cls.name not in wanted:
            continue
        cand = cls()
        entry: dict[str, Any] = {}
        try:
            entry["version"] = importlib.metadata.version(cls.package)
            started = time.perf_counter()
            cand.setup(tokenizer, hf_tokenizer, model_vocab)
            entry["tokenizer_setup_ms"] = round((time.perf_counter() - started) * 1000, 1)
            for case in ("call", "json_schema"):
                fig = measure(cand, case, outputs[case], model_vocab, eos, args.reps)
                fig["overhead_pct"] = round(fig["step_us"] / 1000 / step_ms * 100, 2)
                fig["overhead_pct_vs_fastest_step"] = round(fig["step_us"] / 1000 / step_min_ms * 100, 2)
                entry[case] = fig
        except Exception as exc:  # a candidate that fails is reported, not fatal
            entry["error"] = f"{type(exc).__name__}: {exc}"[:300]
        candidates[cls.name] = entry

    from tracetune.serve.constrain import constraint_for_request
    from tracetune.serve.engine.grammar import compile_constraint

    spec = constraint_for_request(tools=[CALCULATOR], tool_choice="required", parallel_tool_calls=False)
    assert spec is not None
    end_to_end = e2e(model, tokenizer, prompt_ids, compile_constraint(tokenizer, spec), 64, args.reps)

    ok = {n: e for n, e in candidates.items() if "error" not in e}
    # mean, not median: the mean is what a whole sequence pays (a median hides a slow tail, e.g. DFA states
    # built lazily on first visit)
    fastest = (
        min(ok, key=lambda n: ok[n]["call"]["step_us_mean"] + ok[n]["json_schema"]["step_us_mean"]) if ok else None
    )
    result = {
        "bench": "constrain",
        "decode_step_ms": round(step_ms, 2),
        "decode_step_min_ms": round(step_min_ms, 2),
        "decode_step_cpu_ms": round(step_cpu_ms, 2),
        "prompt_tokens": len(prompt_ids),
        "model_vocab": model_vocab,
        "tokenizer_vocab": tokenizer.vocab_size,
        "candidates": candidates,
        "fastest_per_token_mean": fastest,
        "chosen": "llguidance",
        "e2e_llguidance": end_to_end,
        "targets": {
            "overhead_le_20pct": bool(ok.get("llguidance"))
            and all(ok["llguidance"][c]["overhead_pct"] <= 20 for c in ("call", "json_schema"))
            and end_to_end["overhead_pct"] <= 20
        },
        "reps": args.reps,
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg()[0],
        "machine": machine_info(),
    }
    line = json.dumps(result, ensure_ascii=False)
    print(line)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")


if __name__ == "__main__":
    main()
