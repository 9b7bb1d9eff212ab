"""What this installation can do, from which optional packages are importable (found, never imported here).

``pip install tracetune`` is the trace store, the APIs and the UI. Serving and fine-tuning models need the
``models`` extra (torch first, then ``pip install 'tracetune[models]'``; ``scripts/setup.sh models`` does both);
forced tool calls and ``response_format`` json_schema also need ``llguidance`` (in that extra). A request that
needs a missing package is answered 503 naming the install command (``unavailable``), never a 500, and
``tracetune serve`` says at start-up which capabilities are off.
"""

from __future__ import annotations

import importlib.util

from tracetune.errors import Unavailable

INSTALL_MODELS = "pip install torch && pip install 'tracetune[models]'  (or scripts/setup.sh models)"
# capability → the import names it needs (all in the ``models`` extra, torch installed before it)
CAPABILITIES: dict[str, tuple[str, ...]] = {
    "serving models (/v1/chat/completions)": ("torch", "transformers", "tokenizers", "gguf", "safetensors", "peft"),
    "constrained decoding (forced tool calls, response_format json_schema)": ("llguidance",),
    "fine-tuning": ("torch", "transformers", "tokenizers", "gguf", "safetensors", "peft"),
    "the llama.cpp engine (serving GGUF models on CPU; without it the transformers engine serves)": ("xllamacpp",),
}
OPTIONAL_PACKAGES = frozenset(name for names in CAPABILITIES.values() for name in names)


def is_installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing_capabilities() -> dict[str, list[str]]:
    """Each capability that is off → the packages it lacks."""
    out = {}
    for capability, names in CAPABILITIES.items():
        lacking = [name for name in names if not is_installed(name)]
        if lacking:
            out[capability] = lacking
    return out


def unavailable(exc: ModuleNotFoundError) -> Unavailable | None:
    """The 503 for a missing optional package (None when ``exc`` is about anything else: that is a bug)."""
    name = (exc.name or "").partition(".")[0]
    if name not in OPTIONAL_PACKAGES:
        return None
    needing = [capability for capability, names in CAPABILITIES.items() if name in names]
    return Unavailable(
        f"{' and '.join(needing)} need the '{name}' package, which is not installed on this server: "
        f"install it with `{INSTALL_MODELS}` and restart the server",
        code="missing_dependency",
    )
