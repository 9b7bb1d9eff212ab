"""A PEFT LoRA adapter written as a GGUF LoRA adapter, the form llama.cpp applies over a GGUF base model.

What llama.cpp's ``convert_lora_to_gguf.py`` writes, for the architectures whose GGUF tensors we can name:
``general.type = adapter``, ``adapter.type = lora``, ``adapter.lora.alpha``, and per adapted weight
``blk.N.attn_q.weight.lora_a`` (PEFT's ``lora_A``, rank x in) and ``….lora_b`` (``lora_B``, out x rank), float32.
llama.cpp scales the product by ``alpha / rank`` as PEFT does (rsLoRA's ``alpha / sqrt(rank)`` is written as an
equivalent alpha). Llama-family GGUF files store the query and key projections with their rows permuted for
llama.cpp's rotary embedding (``convert_hf_to_gguf``'s ``permute``; transformers undoes it when it loads the GGUF,
so adapters are trained on unpermuted weights): the adapter's ``lora_B`` of those two is permuted the same way.

Importing this module is cheap; converting reads the adapter with safetensors' numpy loader (no torch).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from tracetune.errors import InvalidInput
from tracetune.models.gguf_quant import gguf_written

GGUF_ADAPTER_FILE = "adapter.gguf"
# architectures whose attention weights the GGUF converter permutes, as llama.cpp's LlamaModel does
_PERMUTED_ARCHS = frozenset({"llama", "mistral"})
_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<half>[AB])\.weight$")


class AdapterConversionError(InvalidInput):
    """The adapter cannot be written for llama.cpp (unsupported architecture or adapter layout)."""


def gguf_adapter_path(adapter_dir: Path) -> Path:
    return Path(adapter_dir) / GGUF_ADAPTER_FILE


def ensure_gguf_adapter(adapter_dir: Path, base_gguf: Path) -> Path:
    """The adapter's GGUF file, converted once (next to the PEFT files) and reused; rewritten when the PEFT
    weights are newer than it."""
    adapter_dir = Path(adapter_dir)
    out = gguf_adapter_path(adapter_dir)
    source = adapter_dir / "adapter_model.safetensors"
    if out.exists() and (not source.exists() or out.stat().st_mtime >= source.stat().st_mtime):
        return out
    convert_adapter(adapter_dir, base_gguf, out)
    return out


def convert_adapter(adapter_dir: Path, base_gguf: Path, out: Path) -> None:
    """Write the PEFT LoRA adapter in ``adapter_dir`` as a GGUF adapter for ``base_gguf`` at ``out`` (atomically).
    Raises :class:`AdapterConversionError` naming what cannot be converted."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    adapter_dir = Path(adapter_dir)
    config = _read_config(adapter_dir)
    base = _base_facts(base_gguf)
    arch = base["arch"]
    try:
        name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], base["blocks"])
    except KeyError as exc:
        raise AdapterConversionError(
            f"llama.cpp LoRA conversion does not know the architecture {arch!r} of {base_gguf}", field="model"
        ) from exc
    weights_file = adapter_dir / "adapter_model.safetensors"
    if not weights_file.exists():
        raise AdapterConversionError(f"{weights_file} is missing", field="adapter")
    pairs: dict[str, dict[str, Any]] = {}
    for key, value in load_file(str(weights_file)).items():
        match = _KEY.match(key)
        if match is None:
            raise AdapterConversionError(
                f"adapter tensor {key!r} is not a LoRA A/B weight (modules_to_save and DoRA cannot run on llama.cpp)",
                field="adapter",
            )
        pairs.setdefault(match["module"], {})[match["half"]] = value.astype(np.float32)
    if not pairs:
        raise AdapterConversionError(f"{weights_file} holds no LoRA weights", field="adapter")

    rank = int(config["r"])
    alpha = float(config["lora_alpha"])
    if config.get("use_rslora"):
        alpha = alpha * math.sqrt(rank)  # llama.cpp scales by alpha / rank; rsLoRA by alpha / sqrt(rank)
    with gguf_written(Path(out), arch) as writer:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        for module, halves in sorted(pairs.items()):
            if set(halves) != {"A", "B"}:
                raise AdapterConversionError(f"adapter module {module!r} lacks lora_A or lora_B", field="adapter")
            a, b = halves["A"], halves["B"]
            if a.shape[0] != rank or b.shape[1] != rank:
                raise AdapterConversionError(
                    f"adapter module {module!r} has rank {a.shape[0]}, not r={rank} (rank_pattern is not supported)",
                    field="adapter",
                )
            target = name_map.get_name(module)
            if target is None:
                raise AdapterConversionError(
                    f"adapter module {module!r} has no tensor in the {arch} GGUF", field="adapter"
                )
            want = base["shapes"].get(f"{target}.weight")
            if want is None or (a.shape[1], b.shape[0]) != want:
                raise AdapterConversionError(
                    f"adapter module {module!r} ({a.shape[1]} -> {b.shape[0]}) does not fit the base model's "
                    f"{target}.weight {want}: the adapter was trained on another model",
                    field="adapter",
                )
            if arch in _PERMUTED_ARCHS and module.endswith(("self_attn.q_proj", "self_attn.k_proj")):
                heads = base["heads"] if module.endswith("q_proj") else base["kv_heads"]
                b = _permute_rows(b, heads)
            writer.add_tensor(f"{target}.weight.lora_a", np.ascontiguousarray(a))
            writer.add_tensor(f"{target}.weight.lora_b", np.ascontiguousarray(b))


def _permute_rows(weights: Any, heads: int) -> Any:
    """``convert_hf_to_gguf``'s rotary permutation of an attention projection's output rows (``heads`` groups)."""
    rows = weights.shape[0]
    return weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def _read_config(adapter_dir: Path) -> dict[str, Any]:
    path = adapter_dir / "adapter_config.json"
    try:
        config: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AdapterConversionError(f"cannot read {path}: {exc}", field="adapter") from exc
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterConversionError(f"{path}: peft_type {config.get('peft_type')!r} is not LORA", field="adapter")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise AdapterConversionError(f"{path}: per-module rank/alpha patterns are not supported", field="adapter")
    if config.get("use_dora"):
        raise AdapterConversionError(f"{path}: DoRA adapters cannot run on llama.cpp", field="adapter")
    return config


def _base_facts(base_gguf: Path) -> dict[str, Any]:
    import gguf

    reader = gguf.GGUFReader(str(base_gguf))
    arch = str(reader.fields["general.architecture"].contents())

    def number(key: str) -> int:
        field = reader.fields.get(f"{arch}.{key}")
        if field is None:
            raise AdapterConversionError(f"{base_gguf} has no {arch}.{key}", field="model")
        return int(field.contents())

    heads = number("attention.head_count")
    kv = reader.fields.get(f"{arch}.attention.head_count_kv")
    # GGUF lists dimensions fastest first: a weight of in → out features is (in, out)
    shapes = {t.name: (int(t.shape[0]), int(t.shape[1])) for t in reader.tensors if len(t.shape) == 2}
    return {
        "shapes": shapes,
        "arch": arch,
        "blocks": number("block_count"),
        "heads": heads,
        "kv_heads": int(kv.contents()) if kv is not None else heads,
    }
