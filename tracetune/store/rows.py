"""The rows the repositories hand to the layers above, one TypedDict per table (keys are the columns of
:mod:`tracetune.store.schema`; a JSON column is whatever JSON was stored). Checked by mypy where they are read."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, TypedDict

FilePurpose = Literal[
    "assistants", "assistants_output", "batch", "batch_output", "fine-tune", "fine-tune-results", "vision", "user_data"
]
FileStatus = Literal["uploaded", "processed", "error"]
JobStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
EventLevel = Literal["info", "warn", "error"]
EventType = Literal["message", "metrics"]


class RunRow(TypedDict):
    workspace_id: uuid.UUID
    id: uuid.UUID
    project_id: uuid.UUID | None
    trace_id: uuid.UUID | None
    parent_run_id: uuid.UUID | None
    dotted_order: str | None
    name: str | None
    run_type: str | None
    start_us: int
    end_us: int | None
    first_token_us: int | None
    error: str | None
    inputs: Any
    outputs: Any
    extra: Any
    serialized: Any
    events: Any
    tags: Any
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    thread_id: str | None
    reference_example_id: uuid.UUID | None


class FeedbackRow(TypedDict):
    id: uuid.UUID
    workspace_id: uuid.UUID
    run_id: uuid.UUID | None
    trace_id: uuid.UUID | None
    session_id: uuid.UUID | None
    key: str
    score: float | None
    value: Any
    comment: str | None
    correction: Any
    feedback_source: Any
    extra: Any
    created_at: datetime  # UTC
    modified_at: datetime  # UTC


class QueueRow(TypedDict):
    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    description: str | None
    rubric_instructions: str | None
    rubric_items: Any  # [{"feedback_key": …, "description": …, …}]
    created_at: datetime  # UTC
    updated_at: datetime  # UTC


class QueueItemRow(TypedDict):
    id: uuid.UUID
    queue_id: uuid.UUID
    workspace_id: uuid.UUID
    item_type: Literal["RUN", "THREAD"]
    run_id: uuid.UUID | None
    project_id: uuid.UUID | None
    thread_id: str | None
    start_time: datetime | None  # UTC
    added_at: datetime  # UTC
    last_reviewed_time: datetime | None  # UTC
    completed_at: datetime | None  # UTC: set once reviewed to the end


class FeedbackConfigRow(TypedDict):
    id: uuid.UUID
    workspace_id: uuid.UUID
    feedback_key: str
    feedback_config: Any  # {"type": "continuous" | "categorical" | "freeform", "min", "max", "categories", …}
    is_lower_score_better: bool | None
    modified_at: datetime  # UTC


class FeedbackTokenRow(TypedDict):
    id: uuid.UUID
    workspace_id: uuid.UUID
    run_id: uuid.UUID
    feedback_key: str
    feedback_config: Any
    feedback_id: uuid.UUID | None
    expires_at: datetime  # UTC
    created_at: datetime  # UTC


class FileRow(TypedDict):
    id: str  # file-<24 hex>
    workspace_id: uuid.UUID
    filename: str
    purpose: FilePurpose
    bytes: int
    created_at: int  # unix seconds
    expires_at: int | None
    status: FileStatus
    status_details: str | None
    blob_path: str  # relative to <home>/files


class JobRow(TypedDict):
    id: str  # ftjob-<24 hex>
    workspace_id: uuid.UUID
    created_at: int
    model: str  # the base model id
    training_file: str
    validation_file: str | None
    suffix: str | None
    seed: int
    method: dict[str, Any]
    hyperparameters: dict[str, Any]  # requested (numbers or "auto"); resolved once known
    user_metadata: dict[str, str] | None
    status: JobStatus
    fine_tuned_model: str | None
    output_model: str
    trained_tokens: int | None
    error: dict[str, Any] | None  # {code, message, param}
    result_files: list[str]
    estimated_finish: int | None
    started_at: int | None
    finished_at: int | None
    cancel_requested: int
    worker_id: str | None
    heartbeat_at: float | None
    attempts: int


class JobEventRow(TypedDict):
    seq: int
    job_id: str
    created_at: int
    level: EventLevel
    type: EventType
    message: str
    data: dict[str, Any] | None


class CheckpointRow(TypedDict):
    id: str  # ftckpt-<24 hex>
    job_id: str
    created_at: int
    step_number: int
    metrics: dict[str, Any]
    fine_tuned_model_checkpoint: str
    path: str  # relative to the home


class ModelRow(TypedDict):
    workspace_id: uuid.UUID
    id: str  # ft:<base>:<workspace>:<suffix>:<short id>
    base_model: str
    job_id: str | None
    adapter_dir: str  # relative to the home
    created_at: int


class AliasRow(TypedDict):
    workspace_id: uuid.UUID
    name: str
    version: int
    model: str | None  # None: the alias was removed at this version
    note: str | None
    created_at: datetime


class DatasetRow(TypedDict):
    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    description: str | None
    data_type: str  # kv | llm | chat
    metadata: dict[str, Any] | None
    inputs_schema: dict[str, Any] | None
    outputs_schema: dict[str, Any] | None
    transformations: list[Any] | None
    version: int  # the newest version; 0 until something is written
    created_at: datetime
    modified_at: datetime


class DatasetVersionRow(TypedDict):
    id: uuid.UUID
    dataset_id: uuid.UUID
    workspace_id: uuid.UUID
    version: int
    as_of: datetime
    tags: list[str]
    source: str  # export | api
    selection: dict[str, Any] | None
    options: dict[str, Any] | None
    summary: dict[str, Any] | None
    record_count: int
    train_count: int
    validation_count: int


class ExampleRow(TypedDict):
    row_id: int
    id: uuid.UUID
    dataset_id: uuid.UUID
    workspace_id: uuid.UUID
    line: int
    inputs: dict[str, Any] | None
    outputs: dict[str, Any] | None
    metadata: dict[str, Any] | None
    splits: list[str]
    source_run_id: uuid.UUID | None
    run_ids: list[str] | None
    trace_id: uuid.UUID | None
    created_at: datetime
    modified_at: datetime
    valid_from: int
    valid_to: int | None


class ComparativeExperimentRow(TypedDict):
    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str | None
    description: str | None
    reference_dataset_id: uuid.UUID
    experiment_ids: list[str]
    extra: dict[str, Any] | None
    created_at: datetime
    modified_at: datetime


class AutomationRow(TypedDict):
    workspace_id: uuid.UUID
    id: uuid.UUID
    name: str
    rule: dict[str, Any]  # tracetune.loop.rules.Rule as a dict
    paused: bool
    created_at: datetime
    updated_at: datetime


class FiringRow(TypedDict):
    id: uuid.UUID
    workspace_id: uuid.UUID
    automation_id: uuid.UUID
    number: int
    trigger: str
    status: str  # queued, running, succeeded, failed
    step: str | None  # dataset, train, evaluate, decide
    attempts: int
    steps: list[dict[str, Any]]  # the firing's log: {step, status, message, at}
    runs_selected: int | None
    dataset_version_id: uuid.UUID | None
    job_id: str | None
    candidate_model: str | None
    current_model: str | None
    evaluation: dict[str, Any] | None
    decision: str | None  # promoted, refused
    reason: str | None
    alias_version: int | None
    worker_id: str | None
    heartbeat_at: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
