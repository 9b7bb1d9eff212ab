"""The built-in GGUF de-quantized once, cached as safetensors, and loaded from the cache in seconds."""

from __future__ import annotations

import json
import time

import pytest
import torch

from tests.train import first_smollm2_load
from tracetune.chat.format import render_prompt
from tracetune.models import DEFAULT_MODEL_ID
from tracetune.models.weights import load_base_model, weights_dir

PROMPT = render_prompt([{"role": "user", "content": "What is 12 times 7?"}])


@pytest.fixture(scope="session")
def first_load(tmp_path_factory):
    return first_smollm2_load(tmp_path_factory)


def test_first_load_dequantizes_and_caches(first_load):
    model, _, messages, home = first_load
    cache = weights_dir(home, DEFAULT_MODEL_ID)
    assert (cache / "model.safetensors").is_file()
    config = json.loads((cache / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float32"
    assert messages[0].startswith(f"dequantizing {DEFAULT_MODEL_ID}") and "(first use, ~20 s)" in messages[0]
    assert messages[-1].startswith(f"{DEFAULT_MODEL_ID} cached at {cache} in ")
    assert getattr(model, "hf_quantizer", None) is None and not getattr(model.config, "quantization_config", None)
    assert not [p for p in cache.parent.iterdir() if p.name.startswith(".")]  # no scratch directory left


def test_warm_load_is_fast_and_gives_the_same_logits(first_load):
    gguf_model, tokenizer, _, home = first_load
    started = time.perf_counter()
    model, same_tokenizer = load_base_model(home, DEFAULT_MODEL_ID)
    elapsed = time.perf_counter() - started
    assert elapsed <= 3.0, f"warm load took {elapsed:.2f} s"
    assert same_tokenizer is tokenizer
    assert next(model.parameters()).dtype == torch.float32 and not model.training
    ids = torch.tensor([tokenizer.encode(PROMPT)])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, gguf_model(input_ids=ids).logits)


def test_peft_accepts_the_loaded_model(first_load):
    from peft import LoraConfig, get_peft_model

    model, _ = load_base_model(first_load[3], DEFAULT_MODEL_ID)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    assert sum(p.numel() for p in peft_model.parameters() if p.requires_grad) == 30 * 4 * (576 + 576)


def test_load_base_model_never_imports_torch_at_import():
    import subprocess
    import sys

    code = "import sys, tracetune.models.weights, tracetune.train; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
