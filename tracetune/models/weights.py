"""A base model's weights as a ``transformers`` model, ready to train (LoRA) or serve.

A Hugging Face directory is loaded in place. A GGUF model (the built-in SmolLM2, or a registered ``.gguf``) is
de-quantized by ``transformers`` (``from_pretrained(dir, gguf_file=…)``, ~20 s for SmolLM2) on FIRST use only:
the float32 result is saved with ``save_pretrained`` (safetensors + ``config.json``) under
``$TRACETUNE_HOME/models/<id>/weights/``, and every later load, in any process, reads that (well under a second
for SmolLM2). The cache is written to a scratch directory and renamed into place, so a reader never sees half a
cache, and it is keyed by the GGUF's path, size and mtime (rebuilt when that changes).

transformers marks a model loaded from GGUF as quantized (``model.hf_quantizer``, ``config.quantization_config``
with ``quant_method: gguf``) although its weights are plain float32; PEFT and ``Trainer`` then refuse to train
it. The marker is removed before the weights are cached, so neither the cached config nor a loaded model has it.

Device: CUDA in bfloat16 when ``torch.cuda.is_available()``, else CPU in float32 (``device=`` overrides).
Importing this module does not import torch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracetune.models.registry import ModelSpec, resolve
from tracetune.models.tokenizer import ModelTokenizer, load_tokenizer

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

SOURCE_FILE = "source.json"  # the fingerprint of the GGUF the cache was de-quantized from


def load_base_model(
    home: Path, model_id: str, device: str | torch.device | None = None
) -> tuple[PreTrainedModel, ModelTokenizer]:
    """``(model, tokenizer)`` of base model ``model_id``: a fresh model (callers may modify it, e.g. add LoRA)
    on ``device`` (default: CUDA in bfloat16 when available, else CPU in float32), in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    spec = resolve(home, model_id)
    tokenizer = load_tokenizer(home, model_id)
    target = torch.device(device) if device is not None else default_device()
    dtype = torch.bfloat16 if target.type == "cuda" else torch.float32
    model: Any = None
    if spec.gguf_file is None:
        directory = spec.path
    else:
        cache = weights_dir(Path(home), spec.id)
        fingerprint = _fingerprint(spec)
        if _cached_fingerprint(cache) != fingerprint:
            model = _dequantize(spec, cache, fingerprint)  # first use: keep the model just de-quantized
        directory = cache
    if model is None:
        started = time.monotonic()
        with _no_progress_bars():
            model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=dtype, local_files_only=True)
        log.info("loaded %s in %.1f s", spec.id, time.monotonic() - started)
    clear_gguf_marker(model)
    model.to(device=target, dtype=dtype)
    model.eval()
    return model, tokenizer


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """transformers draws a bar per load (weights, shards: 272 tensors in a fraction of a second for SmolLM2), one
    more line of noise on every model load, in logs too; a load is reported by one log line instead (and the slow
    first conversion by a line before and after)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def weights_dir(home: Path, model_id: str) -> Path:
    """Where the de-quantized weights of GGUF model ``model_id`` are cached."""
    return Path(home) / "models" / model_id / "weights"


def cached_weights(home: Path, spec: ModelSpec) -> Path:
    """The directory of GGUF model ``spec``'s de-quantized weights, converting the GGUF first if not cached yet."""
    cache = weights_dir(home, spec.id)
    fingerprint = _fingerprint(spec)
    if _cached_fingerprint(cache) != fingerprint:
        _dequantize(spec, cache, fingerprint)
    return cache


def clear_gguf_marker(model: Any) -> None:
    """Drop the "quantized with GGUF" marker transformers leaves on a model de-quantized from GGUF, whose weights
    are plain floats (a no-op for any other model: a really quantized one keeps its marker)."""
    quantizer = getattr(model, "hf_quantizer", None)
    config = getattr(quantizer, "quantization_config", None) or getattr(model.config, "quantization_config", None)
    method = config.get("quant_method") if isinstance(config, dict) else getattr(config, "quant_method", None)
    if str(getattr(method, "value", method)).lower() != "gguf":
        return
    if quantizer is not None:
        quantizer.remove_quantization_config(model)  # drops model.hf_quantizer and config.quantization_config
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    model.is_quantized = False


def _dequantize(spec: ModelSpec, cache: Path, fingerprint: dict[str, Any]) -> PreTrainedModel:
    """De-quantize the GGUF to float32, save it into a scratch directory and rename that into place; returns the
    de-quantized model."""
    import torch
    from transformers import AutoModelForCausalLM

    log.info("dequantizing %s from %s (first use, ~20 s)…", spec.id, spec.weights_path)
    started = time.monotonic()
    with _no_progress_bars():
        model = AutoModelForCausalLM.from_pretrained(
            str(spec.path), gguf_file=spec.gguf_file, dtype=torch.float32, local_files_only=True
        )
    clear_gguf_marker(model)
    cache.parent.mkdir(parents=True, exist_ok=True)
    scratch = cache.parent / f".weights-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with _no_progress_bars():
            model.save_pretrained(str(scratch))
        config = json.loads((scratch / "config.json").read_text(encoding="utf-8"))
        if "quantization_config" in config:  # belt and braces: a cached config must never say "quantized"
            del config["quantization_config"]
            (scratch / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        (scratch / SOURCE_FILE).write_text(json.dumps(fingerprint, indent=2), encoding="utf-8")
        if _cached_fingerprint(cache) != fingerprint:  # else another process finished first: keep its copy
            if cache.exists():  # stale: the GGUF changed since
                stale = cache.parent / f".stale-{uuid.uuid4().hex[:8]}"
                os.replace(cache, stale)
                shutil.rmtree(stale, ignore_errors=True)
            try:
                os.replace(scratch, cache)
            except OSError:  # another process renamed its copy in between: keep theirs if it is complete
                if _cached_fingerprint(cache) != fingerprint:
                    raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("%s cached at %s in %.1f s", spec.id, cache, time.monotonic() - started)
    return model


def _fingerprint(spec: ModelSpec) -> dict[str, Any]:
    stat = spec.weights_path.stat()
    return {"source": str(spec.weights_path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _cached_fingerprint(cache: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((cache / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (cache / "config.json").is_file() or not any(cache.glob("*.safetensors")):
        return None
    return data if isinstance(data, dict) else None
