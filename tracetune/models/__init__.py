"""Base models: ``registry`` (ids → local weights: ``ModelSpec``, ``resolve``, ``list_models``, ``register``),
``tokenizer`` (``load_tokenizer``: the GGUF's tokenizer, no torch; ``stop_token_ids``), ``weights`` (loading the
weights, which does import torch, on first use only), ``engines`` (``choose_engine``: which inference engine serves a
model, and why), ``lora_gguf`` (a PEFT LoRA adapter written as a GGUF adapter for llama.cpp), ``gguf_quant`` (a
Q4_1 GGUF re-quantized once to Q8_0 for llama.cpp's matrix kernels) and ``compat`` (workarounds for upstream
deprecations, named).
Importing this package never imports torch."""

from tracetune.models.registry import DEFAULT_MODEL_ID, ModelSpec, list_models, register, resolve
from tracetune.models.tokenizer import ModelTokenizer, load_tokenizer

__all__ = ["DEFAULT_MODEL_ID", "ModelSpec", "ModelTokenizer", "list_models", "load_tokenizer", "register", "resolve"]
