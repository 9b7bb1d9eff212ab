"""The ONE lookup of a served model id: alias → base model id + LoRA adapter directory (or none).

* an alias is replaced by what it names first: a static one (``model_aliases`` setting, ``--model-alias``), then
  the workspace's stored aliases (``/tt/v1/aliases``, ``tracetune aliases``), read on every request;
* ``ft:<base>:<workspace>:<suffix>:<shortid>`` is a fine-tuned model of the caller's workspace, looked up in the
  store (``store.models``): its base model and adapter directory (a blob, :mod:`tracetune.store.blobs`: fetched into
  this data home from the shared object store when another machine trained it);
* ``ft:…:ckpt-step-<n>`` is a checkpoint of one of the workspace's jobs (as OpenAI serves them): the adapter saved
  at that step, over the job's base model;
* anything else is a base model id of the registry (:func:`tracetune.models.registry.resolve`).

An unknown id is :class:`~tracetune.errors.NotFound` with ``field="model"``, ``code="model_not_found"``.

:func:`set_alias` is the one way a stored alias changes (API, CLI, UI): its name must not be a model id itself,
and what it names must be served (looked up as above, so an alias of an alias works and a cycle is refused).
:func:`delete_model` is the one way a fine-tuned model is deleted (API, UI): never a base model, never one that a
stored alias names (the app calling the alias would break).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracetune.errors import Conflict, Forbidden, InvalidInput, NotFound
from tracetune.models.registry import resolve, resolve_alias
from tracetune.store.blobs import Blobs

FINE_TUNED_PREFIX = "ft:"
CHECKPOINT_MARK = ":ckpt-step-"


@dataclass(frozen=True)
class ServedModel:
    requested: str  # the id as the caller sent it (answered back in "model")
    id: str  # after alias resolution
    base_id: str
    adapter_dir: Path | None


def lookup_model(
    model_id: str,
    *,
    blobs: Blobs,
    store: Any,
    workspace_id: Any,
    aliases: Mapping[str, str] | None = None,
) -> ServedModel:
    """What serving ``model_id`` for ``workspace_id`` takes (see the module docstring)."""
    target = resolve_alias(aliases or {}, model_id, store, workspace_id)
    if target.startswith(FINE_TUNED_PREFIX) and CHECKPOINT_MARK in target:
        try:
            checkpoint, job = store.jobs.checkpoint_by_model(workspace_id, target)
        except NotFound:
            raise _no_such_model(model_id, target) from None
        start = str(job["model"])  # a base model, or a fine-tuned one the job trained further
        base = store.models.get(workspace_id, start)["base_model"] if start.startswith(FINE_TUNED_PREFIX) else start
        return ServedModel(model_id, target, str(base), _adapter(blobs.path(checkpoint["path"]), target))
    if target.startswith(FINE_TUNED_PREFIX):
        row = store.models.get(workspace_id, target)
        return ServedModel(model_id, target, str(row["base_model"]), _adapter(blobs.path(row["adapter_dir"]), target))
    try:
        spec = resolve(blobs.home, target)
    except NotFound:
        raise _no_such_model(model_id, target) from None
    return ServedModel(model_id, target, spec.id, None)


def _no_such_model(model_id: str, target: str) -> NotFound:
    shown = f"'{model_id}'" if target == model_id else f"'{model_id}' (an alias of '{target}')"
    return NotFound(
        f"The model {shown} does not exist or you do not have access to it.", field="model", code="model_not_found"
    )


def _adapter(directory: Path, model_id: str) -> Path:
    if not (directory / "adapter_config.json").is_file():
        raise NotFound(
            f"the adapter of model '{model_id}' is missing from {directory} (deleted from the data home, or from the "
            "shared object store?)",
            field="model",
            code="model_not_found",
        )
    return directory


ALIAS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,199}$")


def set_alias(
    name: str,
    model: str,
    *,
    blobs: Blobs,
    store: Any,
    workspace_id: Any,
    aliases: Mapping[str, str] | None = None,
    note: str = "set",
) -> Any:
    """Point the stored alias ``name`` at ``model`` (a new version of it; see the module docstring); the row."""
    if not ALIAS_NAME.match(name) or name.startswith(FINE_TUNED_PREFIX):
        raise InvalidInput(
            "an alias name is 1 to 200 letters, digits and . _ : @ + - (starting with a letter or digit), not ft:…",
            field="name",
        )
    if name in (aliases or {}):
        raise Conflict(
            f"{name!r} is a static alias (--model-alias / TRACETUNE_MODEL_ALIASES), which would override this one",
            field="name",
        )
    try:
        resolve(blobs.home, name)
    except (NotFound, InvalidInput):
        pass
    else:
        raise Conflict(f"{name!r} is a base model's id: an alias may not hide it", field="name")
    return store.aliases.set(workspace_id, name, model, note, check=served_check(blobs, store, workspace_id, aliases))


def served_check(blobs: Blobs, store: Any, workspace_id: Any, aliases: Mapping[str, str] | None) -> Any:
    """``check(model)`` for the alias store: NotFound unless ``model`` is served (see :func:`lookup_model`)."""
    return lambda model: lookup_model(model, blobs=blobs, store=store, workspace_id=workspace_id, aliases=aliases)


def delete_model(model_id: str, *, home: Path, store: Any, workspace_id: Any) -> None:
    """Delete a fine-tuned model of the workspace (its adapter files stay with the job that made them).
    :class:`Forbidden` for a base model, :class:`Conflict` while a stored alias names it, NotFound otherwise."""
    from tracetune.models.registry import list_models

    if not model_id.startswith("ft:"):
        if any(spec.id == model_id for spec in list_models(home)):
            raise Forbidden(
                f"'{model_id}' is a base model; only fine-tuned models can be deleted", field="model",
                code="model_not_deletable",
            )  # fmt: skip
        raise NotFound(f"The model '{model_id}' does not exist", field="model", code="model_not_found")
    naming = sorted(row["name"] for row in store.aliases.list(workspace_id) if row["model"] == model_id)
    if naming:
        raise Conflict(
            f"'{model_id}' is what alias {', '.join(naming)} names: point the alias elsewhere (or roll it back) "
            "before deleting the model", field="model",
        )  # fmt: skip
    store.models.delete(workspace_id, model_id)
