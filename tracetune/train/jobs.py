"""Creating fine-tuning jobs: everything a request can get wrong is refused here, before a row is written.

Checked at creation (each a 4xx naming the parameter): the body's types and values by
:class:`FineTuningJobCreate` (the suffix, the seed, the method, the hyperparameters — numbers in range or ``"auto"``,
given either top-level or in the method's block, ``method.supervised`` or ``method.dpo`` (which adds ``beta``) — and
the metadata); then what needs the store and settings in :func:`create_job`: the model to start from (an alias
resolves first; a base model, or a fine-tuned model of the workspace, trained further from its adapter) and the
training / validation file (this workspace's, purpose ``fine-tune``, within ``fine_tune_max_file_bytes``).
The *content* of the files is validated afterwards by the job runner (status ``validating_files``), as OpenAI does:
a job over a bad file fails with ``error.code = "invalid_training_file"`` and every bad line listed.

The fine-tuned model's id is fixed at creation: ``ft:<base>:<workspace>:<suffix>:<short id>``.
"""

from __future__ import annotations

import re
import secrets
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from tracetune.convert.examples import iter_dataset_records
from tracetune.errors import InvalidInput, NotFound, invalid_input
from tracetune.models.registry import resolve, resolve_alias
from tracetune.store.blobs import blobs_from_settings
from tracetune.store.jobs import new_id
from tracetune.store.rows import JobRow
from tracetune.train.graders import validate_grader
from tracetune.train.hyperparams import (
    RequestedDpoHyperparameters,
    RequestedHyperparameters,
    RequestedReinforcementHyperparameters,
)

if TYPE_CHECKING:
    from tracetune.config import Settings
    from tracetune.store import Store
    from tracetune.store.workspaces import Workspace

METHODS = ("supervised", "dpo", "reinforcement")
UNSUPPORTED_METHODS: tuple[str, ...] = ()
FORBIDDEN_IN_MODEL_ID = ("codex", "gpt-5", "gpt-6")  # names clients special-case (design.md)
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
_SUFFIX = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_METADATA = 16
MAX_SEED = 2**31 - 1
SUPERVISED_HYPERPARAMETERS = ("n_epochs", "batch_size", "learning_rate_multiplier")
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MetadataValue = Annotated[str, StringConstraints(max_length=512)]


class SupervisedMethod(BaseModel):
    model_config = ConfigDict(extra="allow")
    hyperparameters: RequestedHyperparameters | None = None


class DpoMethod(BaseModel):
    model_config = ConfigDict(extra="allow")
    hyperparameters: RequestedDpoHyperparameters | None = None


class ReinforcementMethod(BaseModel):
    model_config = ConfigDict(extra="allow")
    grader: dict[str, Any] | None = None
    hyperparameters: RequestedReinforcementHyperparameters | None = None


class Method(BaseModel):
    """``{"type": "supervised", "supervised": {"hyperparameters": {…}}}`` or ``{"type": "dpo", "dpo": {…}}`` (the
    hyperparameters add ``beta``; the files hold preference pairs)."""

    model_config = ConfigDict(extra="allow")
    type: str
    supervised: SupervisedMethod | None = None
    dpo: DpoMethod | None = None
    reinforcement: ReinforcementMethod | None = None

    @field_validator("type")
    @classmethod
    def _known(cls, kind: str) -> str:
        if kind in UNSUPPORTED_METHODS:
            raise PydanticCustomError(
                "unsupported_method",
                "method '{kind}' is not supported by tracetune yet; use 'supervised', 'dpo' or 'reinforcement'",
                {"kind": kind},
            )
        if kind not in METHODS:
            raise PydanticCustomError(
                "invalid_value",
                "unknown method type '{kind}'; use 'supervised', 'dpo' or 'reinforcement'",
                {"kind": kind},
            )
        return kind

    def hyperparameters(self) -> RequestedHyperparameters | None:
        """The hyperparameters given in the block of the method's type (``method.dpo`` for ``dpo``…)."""
        block = {"dpo": self.dpo, "reinforcement": self.reinforcement}.get(self.type, self.supervised)
        return block.hyperparameters if block is not None else None


class FineTuningJobCreate(BaseModel):
    """The body of ``POST /v1/fine_tuning/jobs`` (and of the UI's and CLI's job requests). Unknown keys are accepted
    (newer clients send more); ``integrations`` (e.g. wandb) are accepted and ignored, with an event saying so."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    training_file: str = Field(min_length=1)
    validation_file: str | None = None
    suffix: str | None = None
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED, strict=True)
    hyperparameters: RequestedHyperparameters | None = None
    method: Method | None = None
    metadata: dict[MetadataKey, MetadataValue] | None = Field(default=None, max_length=MAX_METADATA)
    integrations: list[dict[str, Any]] | None = None

    @classmethod
    def parse(cls, body: Any) -> FineTuningJobCreate:
        """``body`` (a JSON object) checked; the first problem is an :class:`InvalidInput` naming its field."""
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a JSON object", field="body")
        try:
            return cls.model_validate(body)
        except ValidationError as exc:
            raise invalid_input(exc) from None

    @field_validator("suffix")
    @classmethod
    def _suffix(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not _SUFFIX.fullmatch(value):
            raise PydanticCustomError("invalid_value", "suffix must be 1 to 64 letters, digits, '-' or '_'")
        return value

    @property
    def method_type(self) -> str:
        return self.method.type if self.method else "supervised"

    def requested_hyperparameters(self) -> RequestedHyperparameters:
        """The hyperparameters, given top-level (the older form: the supervised three) or in the method's block
        (both: they must agree on what both give)."""
        kind = self.method_type
        nested = self.method.hyperparameters() if self.method else None
        top = self.hyperparameters
        if nested is not None and top is not None:
            given = top.model_dump(exclude_defaults=True)
            if any(nested.model_dump().get(k) != v for k, v in given.items()):
                raise InvalidInput(
                    f"hyperparameters are given twice (top level and in method.{kind}) with different values",
                    field="hyperparameters",
                    code="invalid_value",
                )
        if nested is not None:
            return nested
        cls = {"dpo": RequestedDpoHyperparameters, "reinforcement": RequestedReinforcementHyperparameters}.get(
            kind, RequestedHyperparameters
        )
        return cls(**top.model_dump()) if top is not None else cls()


def create_job(store: Store, settings: Settings, ws: Workspace, request: FineTuningJobCreate) -> JobRow:
    """Check what ``request`` names (the model to start from, the files) and store the job; the new row."""
    model, base = _start_model(store, settings, ws, request.model)
    training = _file(store, settings, ws, request.training_file, "training_file")
    validation = _file(store, settings, ws, request.validation_file, "validation_file")
    kind = request.method_type
    hyperparameters = request.requested_hyperparameters().model_dump()
    block: dict[str, Any] = {"hyperparameters": hyperparameters}
    if kind == "reinforcement":  # checked before anything is stored: a bad grader is a 400 naming its field
        assert request.method is not None
        grader = request.method.reinforcement.grader if request.method.reinforcement else None
        block["grader"] = validate_grader(grader, "method.reinforcement.grader")
    seed = request.seed if request.seed is not None else secrets.randbelow(MAX_SEED + 1)
    job_id = new_id("ftjob")
    output_model = fine_tuned_model_id(base, ws.name, request.suffix, job_id)
    events = [f"Created fine-tuning job: {job_id}", f"Validating training file: {training}"]
    if validation:
        events.append(f"Validating validation file: {validation}")
    if request.integrations:
        events.append("Integrations (e.g. wandb) are not supported by tracetune and were ignored")
    return store.jobs.create(
        {
            "id": job_id, "workspace_id": ws.id, "model": model, "training_file": training,
            "validation_file": validation, "suffix": request.suffix, "seed": seed,
            "method": {"type": kind, kind: block},
            "hyperparameters": {k: hyperparameters[k] for k in SUPERVISED_HYPERPARAMETERS},
            "user_metadata": request.metadata, "output_model": output_model,
        },
        events,
    )  # fmt: skip


def method_hyperparameters(job: JobRow) -> dict[str, Any]:
    """The hyperparameters in a job's method block (requested, or resolved once training set them)."""
    method = job["method"]
    return dict(method.get(method["type"], {}).get("hyperparameters") or {})


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


def _start_model(store: Store, settings: Settings, ws: Workspace, value: str) -> tuple[str, str]:
    """``(model, base)``: the model a job starts from (an alias resolved) — a base model, or a fine-tuned model of
    this workspace, trained further (SFT then DPO) — and the base model under it."""
    model = resolve_alias(settings.model_aliases, value, store, ws.id)
    if model.startswith("ft:"):
        try:
            row = store.models.get(ws.id, model)
        except NotFound:
            raise InvalidInput(
                f"Model {value} is not available for fine-tuning or does not exist: no fine-tuned model {model} "
                "in this workspace",
                field="model",
                code="model_not_available",
            ) from None
        return model, row["base_model"]
    try:
        resolve(settings.home, model)
    except (NotFound, InvalidInput) as exc:
        raise InvalidInput(
            f"Model {value} is not available for fine-tuning or does not exist: {exc.message}",
            field="model",
            code="model_not_available",
        ) from None
    return model, model


def _file(store: Store, settings: Settings, ws: Workspace, value: str | None, field: str) -> str | None:
    if value is None:
        return None
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


def create_job_from_dataset(
    store: Store, settings: Settings, ws: Workspace, dataset_id: uuid.UUID, request: dict[str, Any]
) -> JobRow:
    """Start a fine-tuning job on a stored dataset: its train (and validation) records are uploaded as
    ``fine-tune`` files, then ``request`` (an OpenAI job body without the files) goes to ``create_job``. The
    job's metadata names the dataset, which is the lineage the models page follows (model → job → dataset)."""
    dataset = store.datasets.get(ws.id, dataset_id)
    if not dataset["train_count"]:
        raise InvalidInput("the dataset has no training records", field="dataset")
    files: dict[str, str] = {}
    for split in ("train", "validation"):
        if split == "validation" and not dataset["validation_count"]:
            continue
        data = b"".join(
            orjson.dumps(r["record"], option=orjson.OPT_APPEND_NEWLINE)
            for r in iter_dataset_records(store, ws.id, dataset_id, split=split)
        )
        row = store.files.create(
            ws.id,
            blobs_from_settings(settings),
            filename=f"{dataset['name']}-v{dataset['version']}-{split}.jsonl",
            purpose="fine-tune",
            data=data,
        )
        files[split] = row["id"]
    metadata = {
        **(request.get("metadata") or {}),
        "dataset_id": str(dataset_id),
        "dataset": f"{dataset['name']} v{dataset['version']}",
    }
    body = {**request, "training_file": files["train"], "metadata": metadata}
    if "validation" in files:
        body["validation_file"] = files["validation"]
    return create_job(store, settings, ws, FineTuningJobCreate.parse(body))
