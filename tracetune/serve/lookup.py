"""The ONE lookup of a served model id: alias → base model id + LoRA adapter directory (or none).

* an alias (``model_aliases`` setting, ``--model-alias``) is replaced by what it names first;
* ``ft:<base>:<workspace>:<suffix>:<shortid>`` is a fine-tuned model of the caller's workspace, looked up in the
  store (``store.models``): its base model and adapter directory (relative to the data home);
* anything else is a base model id of the registry (:func:`tracetune.models.registry.resolve`).

An unknown id is :class:`~tracetune.errors.NotFound` with ``field="model"``, ``code="model_not_found"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracetune.errors import NotFound
from tracetune.models.registry import resolve, resolve_alias

FINE_TUNED_PREFIX = "ft:"


@dataclass(frozen=True)
class ServedModel:
    requested: str  # the id as the caller sent it (answered back in "model")
    id: str  # after alias resolution
    base_id: str
    adapter_dir: Path | None


def lookup_model(
    model_id: str,
    *,
    home: Path,
    store: Any,
    workspace_id: Any,
    aliases: Mapping[str, str] | None = None,
) -> ServedModel:
    """What serving ``model_id`` for ``workspace_id`` takes (see the module docstring)."""
    target = resolve_alias(aliases or {}, model_id)
    if target.startswith(FINE_TUNED_PREFIX):
        row = store.models.get(workspace_id, target)
        adapter = Path(home) / str(row["adapter_dir"])
        if not (adapter / "adapter_config.json").is_file():
            raise NotFound(
                f"the adapter of model '{target}' is missing from {adapter} (deleted from the data home?)",
                field="model",
                code="model_not_found",
            )
        return ServedModel(model_id, target, str(row["base_model"]), adapter)
    try:
        spec = resolve(Path(home), target)
    except NotFound:
        shown = model_id if target == model_id else f"{model_id}' (alias of '{target}"
        raise NotFound(
            f"The model '{shown}' does not exist or you do not have access to it.",
            field="model",
            code="model_not_found",
        ) from None
    return ServedModel(model_id, target, spec.id, None)
