"""Tests of tracetune.train: helpers shared by the modules (tiny random model, calculator evaluation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"
CALCULATOR_TRAIN = FIXTURES / "calculator_train.jsonl"
CALCULATOR_HELDOUT = FIXTURES / "calculator_heldout.jsonl"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def tiny_llama(vocab_size: int, seed: int = 0) -> Any:
    """A 2-layer Llama with random weights, identical for a given seed (fast enough for many training runs)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=vocab_size,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.eval()
    return model


def expected_call(record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The (name, arguments) of a record's final assistant tool call."""
    fn = record["messages"][-1]["tool_calls"][0]["function"]
    return fn["name"], json.loads(fn["arguments"])


def same_call(got: tuple[str, dict[str, Any]] | None, want: tuple[str, dict[str, Any]]) -> bool:
    """Same function name and arguments, numbers compared as numbers (``12`` equals ``12.0``)."""
    if got is None or got[0] != want[0] or set(got[1]) != set(want[1]):
        return False
    for key, value in want[1].items():
        other = got[1][key]
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (value, other))
        if (numbers and float(other) != float(value)) or (not numbers and other != value):
            return False
    return True


def first_calls(model: Any, tokenizer: Any, records: list[dict[str, Any]], max_new_tokens: int = 48) -> list[Any]:
    """Greedy-decode every record's prompt (its messages but the last, and its tools) in one left-padded batch;
    the first parsed tool call of each reply as ``(name, arguments)``, or None, and the reply text."""
    import torch

    from tracetune.chat.format import parse_assistant, render_prompt

    prompts = [tokenizer.encode(render_prompt(r["messages"][:-1], tools=r.get("tools"))) for r in records]
    width = max(len(p) for p in prompts)
    pad = tokenizer.eos_token_id
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    model.eval()
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=pad,
        )
    results = []
    for row in out:
        text = tokenizer.decode(row[width:].tolist())
        parsed = parse_assistant(text.split("<|im_end|>")[0])
        call = parsed["tool_calls"][0]["function"] if parsed["tool_calls"] else None
        results.append(((call["name"], json.loads(call["arguments"])) if call else None, text))
    return results


_first_load: dict[str, Any] = {}


def first_smollm2_load(tmp_path_factory: Any) -> tuple[Any, Any, list[str], Path]:
    """The session's first load of the real SmolLM2 (de-quantizes the GGUF, ~20 s, and caches it), done once per
    session whichever test asks first: ``(model de-quantized from the GGUF, tokenizer, log messages, home)``. Its
    home is its own, not ``smollm2_home``'s: other tests (the slow ones run first) cache weights there, and this
    load must be the first of its home whatever ran before it in the worker."""
    import logging

    from tracetune.models import DEFAULT_MODEL_ID
    from tracetune.models.weights import load_base_model, weights_dir

    home = tmp_path_factory.getbasetemp() / "smollm2-first-load-home"
    home.mkdir(exist_ok=True)
    key = str(home)
    if key not in _first_load:
        assert not weights_dir(home, DEFAULT_MODEL_ID).exists()
        messages: list[str] = []
        handler = logging.Handler(logging.INFO)
        handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
        logger = logging.getLogger("tracetune.models.weights")
        old_level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            model, tokenizer = load_base_model(home, DEFAULT_MODEL_ID)
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old_level)
        _first_load[key] = (model, tokenizer, messages, home)
    return _first_load[key]


def make_tiny_home(directory: Path, tokenizer: Any, model_id: str = "tiny") -> Path:
    """A data home under ``directory`` where ``model_id`` is a registered Hugging Face directory holding a tiny
    random Llama and the SmolLM2 tokenizer (fast to train, loads like any local model)."""
    import shutil

    from tracetune.models import register

    model_dir = directory / f"{model_id}-model"
    shutil.copytree(tokenizer.path, model_dir)
    tiny_llama(tokenizer.vocab_size).save_pretrained(str(model_dir))
    home = directory / "home"
    register(home, model_id, model_dir)
    return home


def training_processes(job_id: str) -> list[int]:
    """Pids of the live training processes (``python -m tracetune.train.recipe``) of fine-tuning job ``job_id``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and b"tracetune.train.recipe" in cmdline and any(job_id.encode() in a for a in cmdline):
            pids.append(int(proc.name))
    return pids


def preference_line(record: dict[str, Any]) -> dict[str, Any]:
    """A DPO line from a calculator record: its call preferred over the same call with the operands swapped (the
    mistake a subtraction or division must not make)."""
    *prompt, answer = record["messages"]
    fn = answer["tool_calls"][0]["function"]
    args = json.loads(fn["arguments"])
    swapped = {**args, "num1": args["num2"], "num2": args["num1"]}
    if swapped == args:
        swapped["num2"] = args["num2"] + 1
    wrong_call = {**answer["tool_calls"][0], "function": {**fn, "arguments": json.dumps(swapped)}}
    wrong = {**answer, "tool_calls": [wrong_call]}
    source = {"messages": prompt, "tools": record["tools"]}
    return {"input": source, "preferred_output": [answer], "non_preferred_output": [wrong]}


def write_preference_file(source: Path, target: Path) -> Path:
    """``source``'s calculator records as DPO lines (:func:`preference_line`) in ``target``."""
    target.write_text("".join(json.dumps(preference_line(r)) + "\n" for r in read_jsonl(source)), encoding="utf-8")
    return target
