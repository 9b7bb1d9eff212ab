"""The OpenAI API shapes of files, models and fine-tuning jobs, field by field (the openai client validates them
strictly). Chat completions have theirs in :mod:`tracetune.serve.protocol`, beside the class that serves them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from tracetune.models.registry import ModelSpec
from tracetune.store.rows import (
    CheckpointRow,
    EventLevel,
    EventType,
    FilePurpose,
    FileRow,
    FileStatus,
    JobEventRow,
    JobRow,
    JobStatus,
    ModelRow,
)


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: FilePurpose
    status: FileStatus
    expires_at: int | None = None
    status_details: str | None = None


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class FileList(BaseModel):
    """A cursor page: the client asks for the next one with ``after=<last_id>`` while ``has_more``."""

    object: Literal["list"] = "list"
    data: list[FileObject]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "tracetune"
    engine: str | None = None  # tracetune's: the inference engine that serves it (llamacpp, transformers)


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


def file_object(row: FileRow) -> FileObject:
    return FileObject(
        id=row["id"],
        bytes=row["bytes"],
        created_at=row["created_at"],
        filename=row["filename"],
        purpose=row["purpose"],
        status=row["status"],
        expires_at=row["expires_at"],
        status_details=row["status_details"],
    )


def file_list(rows: list[FileRow], has_more: bool) -> FileList:
    data = [file_object(r) for r in rows]
    return FileList(
        data=data, has_more=has_more, first_id=data[0].id if data else None, last_id=data[-1].id if data else None
    )


def model_object(spec: ModelSpec, engine: str | None = None) -> Model:
    """A base model; ``created`` is when its weights were written (0 when they cannot be read)."""
    try:
        created = int(spec.weights_path.stat().st_mtime)
    except OSError:
        created = 0
    return Model(id=spec.id, created=created, engine=engine)


def fine_tuned_model_object(row: ModelRow, owner: str, engine: str | None = None) -> Model:
    return Model(id=row["id"], created=row["created_at"], owned_by=owner, engine=engine)


class ModelDeleted(BaseModel):
    id: str
    object: Literal["model"] = "model"
    deleted: bool = True


# -- fine-tuning jobs ------------------------------------------------------------------------------------------

Auto = Literal["auto"]


class Hyperparameters(BaseModel):
    n_epochs: int | Auto = "auto"
    batch_size: int | Auto = "auto"
    learning_rate_multiplier: float | Auto = "auto"


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class FineTuningJob(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    model: str
    status: JobStatus
    fine_tuned_model: str | None
    finished_at: int | None
    hyperparameters: Hyperparameters
    organization_id: str
    result_files: list[str]
    seed: int
    trained_tokens: int | None
    training_file: str
    validation_file: str | None
    error: JobError | None
    estimated_finish: int | None = None
    metadata: dict[str, str] | None = None
    method: dict[str, Any] | None = None
    integrations: list[Any] | None = None


class FineTuningJobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJob]
    has_more: bool


class FineTuningJobEvent(BaseModel):
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    id: str
    created_at: int
    level: EventLevel
    message: str
    type: EventType | None = None
    data: dict[str, Any] | None = None


class FineTuningJobEventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJobEvent]
    has_more: bool


class CheckpointMetrics(BaseModel):
    step: float | None = None
    train_loss: float | None = None
    train_mean_token_accuracy: float | None = None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    full_valid_loss: float | None = None
    full_valid_mean_token_accuracy: float | None = None
    # tracetune's task score of the epoch (greedy replies to the validation prompts: tracetune.train.task_eval)
    valid_accuracy: float | None = None
    valid_tool_name_accuracy: float | None = None
    valid_tool_args_exact: float | None = None
    valid_json_rate: float | None = None
    valid_text_exact: float | None = None


class FineTuningJobCheckpoint(BaseModel):
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    id: str
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    step_number: int
    metrics: CheckpointMetrics


class FineTuningJobCheckpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJobCheckpoint]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


def fine_tuning_job(row: JobRow, organization: str) -> FineTuningJob:
    return FineTuningJob(
        id=row["id"],
        created_at=row["created_at"],
        model=row["model"],
        status=row["status"],
        fine_tuned_model=row["fine_tuned_model"],
        finished_at=row["finished_at"],
        hyperparameters=Hyperparameters(**row["hyperparameters"]),
        organization_id=organization,
        result_files=list(row["result_files"] or []),
        seed=row["seed"],
        trained_tokens=row["trained_tokens"],
        training_file=row["training_file"],
        validation_file=row["validation_file"],
        error=JobError(**row["error"]) if row["error"] else None,
        estimated_finish=row["estimated_finish"] if row["status"] not in ("succeeded", "failed", "cancelled") else None,
        metadata=row["user_metadata"],
        method=row["method"],
        integrations=[],
    )


def job_event(row: JobEventRow, event_id: str) -> FineTuningJobEvent:
    return FineTuningJobEvent(
        id=event_id,
        created_at=row["created_at"],
        level=row["level"],
        message=row["message"],
        type=row["type"],
        data=row["data"],
    )


def job_checkpoint(row: CheckpointRow) -> FineTuningJobCheckpoint:
    return FineTuningJobCheckpoint(
        id=row["id"],
        created_at=row["created_at"],
        fine_tuned_model_checkpoint=row["fine_tuned_model_checkpoint"],
        fine_tuning_job_id=row["job_id"],
        step_number=row["step_number"],
        metrics=CheckpointMetrics(**row["metrics"]),
    )
