"""Creating fine-tuning jobs: everything a request can get wrong is refused here, before a row is written.

Checked at creation (each a 4xx naming the parameter): the base model (an alias resolves first; a fine-tuned
model as base is not supported yet), the training / validation file (this workspace's, purpose ``fine-tune``,
within ``fine_tune_max_file_bytes``), the suffix, the seed, the hyperparameters (numbers in range or
``"auto"``; given either top-level or under ``method.supervised``) and the metadata. The *content* of the files is
validated afterwards by the job runner (status ``validating_files``), as OpenAI does: a job over a bad file fails
with ``error.code = "invalid_training_file"`` and every bad line listed.

The fine-tuned model's id is fixed at creation: ``ft:<base>:<workspace>:<suffix>:<short id>``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tracetune.errors import InvalidInput, NotFound
from tracetune.models.registry import resolve, resolve_alias
from tracetune.store.jobs import new_id
from tracetune.train.hyperparams import AUTO, LIMITS, hyperparameters_from

if TYPE_CHECKING:
    from tracetune.config import Settings
    from tracetune.store import Store
    from tracetune.store.workspaces import Workspace

HYPERPARAMETERS = tuple(LIMITS)  # n_epochs, batch_size, learning_rate_multiplier
METHODS = ("supervised",)
UNSUPPORTED_METHODS = ("dpo", "reinforcement")
FORBIDDEN_IN_MODEL_ID = ("codex", "gpt-5", "gpt-6")  # names clients special-case (design.md)
_SUFFIX = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
MAX_METADATA = 16
MAX_SEED = 2**31 - 1
MISSING = "missing_required_parameter"


def create_job(store: Store, settings: Settings, ws: Workspace, request: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``request`` (an OpenAI ``fine_tuning.jobs.create`` body) and store the job; the new row."""
    model = _base_model(settings, request.get("model"))
    training = _file(store, settings, ws, request.get("training_file"), "training_file", required=True)
    validation = _file(store, settings, ws, request.get("validation_file"), "validation_file", required=False)
    suffix = _suffix(request.get("suffix"))
    seed = _seed(request.get("seed"))
    method, hyperparameters = _method(request.get("method"), request.get("hyperparameters"))
    metadata = _metadata(request.get("metadata"))
    job_id = new_id("ftjob")
    output_model = fine_tuned_model_id(model, ws.name, suffix, job_id)
    events = [f"Created fine-tuning job: {job_id}", f"Validating training file: {training}"]
    if validation:
        events.append(f"Validating validation file: {validation}")
    if request.get("integrations"):
        events.append("Integrations (e.g. wandb) are not supported by tracetune and were ignored")
    return store.jobs.create(
        {
            "id": job_id, "workspace_id": ws.id, "model": model, "training_file": training,
            "validation_file": validation, "suffix": suffix, "seed": seed, "method": method,
            "hyperparameters": hyperparameters, "user_metadata": metadata, "output_model": output_model,
        },
        events,
    )  # fmt: skip


def fine_tuned_model_id(base: str, workspace: str, suffix: str | None, job_id: str) -> str:
    """``ft:<base>:<workspace>:<suffix>:<short id>`` (the workspace name made id-safe; the short id is the job
    id's random tail). Refuses an id containing a name clients special-case."""
    model_id = f"ft:{base}:{_SLUG.sub('-', workspace).strip('-') or 'workspace'}:{suffix or ''}:{job_id[-8:]}"
    lowered = model_id.lower()
    for bad in FORBIDDEN_IN_MODEL_ID:
        if bad in lowered:
            culprit = "suffix" if suffix and bad in suffix.lower() else "model"
            raise InvalidInput(
                f"the fine-tuned model id {model_id!r} would contain {bad!r}, which clients treat specially; "
                f"choose another {culprit}",
                field=culprit,
                code="invalid_value",
            )
    return model_id


def checkpoint_model_id(output_model: str, step: int) -> str:
    return f"{output_model}:ckpt-step-{step}"


def _base_model(settings: Settings, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(
            "model is required: the id of a base model", field="model", code="missing_required_parameter"
        )
    model = resolve_alias(settings.model_aliases, value)
    if model.startswith("ft:"):
        raise InvalidInput(
            f"fine-tuning a fine-tuned model ({model}) is not supported yet; start from its base model",
            field="model",
            code="model_not_available",
        )
    try:
        resolve(settings.home, model)
    except (NotFound, InvalidInput) as exc:
        raise InvalidInput(
            f"Model {value} is not available for fine-tuning or does not exist: {exc.message}",
            field="model",
            code="model_not_available",
        ) from None
    return model


def _file(store: Store, settings: Settings, ws: Workspace, value: Any, field: str, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidInput(
            f"{field} is required: the id of an uploaded file", field=field, code="missing_required_parameter"
        )
    try:
        row = store.files.get(ws.id, value)
    except NotFound:
        raise InvalidInput(
            f"invalid {field}: no file {value} in this workspace", field=field, code="file_not_found"
        ) from None
    if row["purpose"] != "fine-tune":
        raise InvalidInput(
            f"invalid {field}: {value} was uploaded with purpose {row['purpose']!r}; upload it with purpose "
            "'fine-tune'",
            field=field,
            code="invalid_file_purpose",
        )
    if row["bytes"] > settings.fine_tune_max_file_bytes:
        raise InvalidInput(
            f"invalid {field}: {value} has {row['bytes']} bytes; the limit is {settings.fine_tune_max_file_bytes}",
            field=field,
            code="file_too_large",
        )
    return value


def _suffix(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _SUFFIX.fullmatch(value):
        raise InvalidInput("suffix must be 1 to 64 letters, digits, '-' or '_'", field="suffix", code="invalid_value")
    return value


def _seed(value: Any) -> int:
    if value is None:
        return secrets.randbelow(MAX_SEED + 1)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEED:
        raise InvalidInput(f"seed must be an integer from 0 to {MAX_SEED}", field="seed", code="invalid_value")
    return value


def _method(method: Any, top_level: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(method, requested hyperparameters)``; values are checked now, ``"auto"`` resolved by the recipe."""
    given: Any = top_level
    field = "hyperparameters"
    if method is not None:
        if not isinstance(method, Mapping) or not isinstance(method.get("type"), str):
            raise InvalidInput('method must be {"type": "supervised", ...}', field="method.type", code="invalid_value")
        kind = method["type"]
        if kind in UNSUPPORTED_METHODS:
            raise InvalidInput(
                f"method {kind!r} is not supported by tracetune yet; use 'supervised'",
                field="method.type",
                code="unsupported_method",
            )
        if kind not in METHODS:
            raise InvalidInput(
                f"unknown method type {kind!r}; use 'supervised'", field="method.type", code="invalid_value"
            )
        inner = method.get(kind) or {}
        if not isinstance(inner, Mapping):
            raise InvalidInput(f"method.{kind} must be an object", field=f"method.{kind}", code="invalid_value")
        nested = inner.get("hyperparameters")
        if nested is not None:
            if top_level is not None and dict(top_level) != dict(nested):
                raise InvalidInput(
                    "hyperparameters are given twice (top level and in method.supervised) with different values",
                    field="hyperparameters",
                    code="invalid_value",
                )
            given, field = nested, f"method.{kind}.hyperparameters"
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise InvalidInput(f"{field} must be an object", field=field, code="invalid_value")
    try:
        hyperparameters_from(given, 1)  # checks names, types and ranges ("auto" passes)
    except InvalidInput as exc:
        raise InvalidInput(
            exc.message, field=f"{field}.{(exc.field or '').rsplit('.', 1)[-1]}", code="invalid_value"
        ) from None
    requested = {name: given.get(name, AUTO) for name in HYPERPARAMETERS}
    return {"type": "supervised", "supervised": {"hyperparameters": requested}}, requested


def _metadata(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or len(value) > MAX_METADATA:
        raise InvalidInput(
            f"metadata must be an object of at most {MAX_METADATA} string pairs", field="metadata", code="invalid_value"
        )
    for key, item in value.items():
        if not isinstance(key, str) or not 0 < len(key) <= 64 or not isinstance(item, str) or len(item) > 512:
            raise InvalidInput(
                "metadata keys are strings of up to 64 characters, values strings of up to 512",
                field=f"metadata.{key}",
                code="invalid_value",
            )
    return dict(value)
