"""Which inference engine can serve a base model, and why (for ``tracetune serve`` and for the job runner, which
converts a new fine-tuned adapter for the engine that will serve it). Imports no engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tracetune.errors import Unavailable

LLAMACPP_INSTALL_HINT = "pip install 'tracetune[models]' (llama.cpp comes as the xllamacpp wheel)"


VLLM_INSTALL_HINT = "pip install 'tracetune[vllm]' on a CUDA machine"


def vllm_available() -> bool:
    """Whether vLLM is installed and a CUDA device is present (imports torch only when vLLM is installed)."""
    from tracetune.capabilities import is_installed

    if not is_installed("vllm"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def llamacpp_available() -> bool:
    """Whether the llama.cpp binding (xllamacpp) is installed."""
    from tracetune.capabilities import is_installed

    return is_installed("xllamacpp")


ENGINES = ("llamacpp", "transformers")


@dataclass(frozen=True)
class EngineChoice:
    """Which engine serves a base model, and why."""

    engine: str  # "llamacpp" | "vllm" | "transformers"
    reason: str


def choose_engine(home: Path, base_id: str, wanted: str = "auto") -> EngineChoice:
    """The engine for ``base_id``: the one asked for (``wanted``), or with ``auto`` vLLM on a CUDA machine where it
    is installed, else llama.cpp for a GGUF model when it is installed, else transformers. Raises
    :class:`~tracetune.errors.Unavailable` when the engine asked for is not installed or cannot load the model."""
    from tracetune.models.registry import resolve

    spec = resolve(home, base_id)
    gguf = spec.gguf_file is not None
    if wanted == "transformers":
        return EngineChoice("transformers", "asked for (engine = transformers)")
    if wanted == "vllm":
        if not vllm_available():
            raise Unavailable(f"the vLLM engine needs vLLM and a CUDA GPU: {VLLM_INSTALL_HINT}", field="model")
        return EngineChoice("vllm", "asked for (engine = vllm)")
    if vllm_available():
        return EngineChoice("vllm", "vLLM is installed and a CUDA GPU is present")
    if wanted == "llamacpp":
        if not llamacpp_available():
            raise Unavailable(f"the llama.cpp engine is not installed: {LLAMACPP_INSTALL_HINT}", field="model")
        if not gguf:
            raise Unavailable(f"{base_id} is a Hugging Face directory; llama.cpp serves GGUF files", field="model")
        return EngineChoice("llamacpp", "asked for (engine = llamacpp)")
    if not gguf:
        return EngineChoice("transformers", "a Hugging Face directory (llama.cpp serves GGUF files)")
    if not llamacpp_available():
        return EngineChoice("transformers", f"llama.cpp is not installed ({LLAMACPP_INSTALL_HINT})")
    return EngineChoice("llamacpp", f"a GGUF model ({spec.gguf_file}) and llama.cpp is installed")
