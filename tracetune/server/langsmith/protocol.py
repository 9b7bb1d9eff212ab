"""Pydantic models mirroring the LangSmith API shapes we accept and return.

Compatible surfaces accept unknown fields (real SDKs send more than we model); they are kept in
``model_extra`` and ignored. Response builders here are pure functions over store rows.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, cast

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from tracetune.errors import InvalidInput, shown
from tracetune.query.run_view import SELECTABLE
from tracetune.query.runs_query import MAX_LIMIT, RunQuery
from tracetune.store.rows import (
    ComparativeExperimentRow,
    DatasetRow,
    DatasetVersionRow,
    ExampleRow,
    FeedbackConfigRow,
    FeedbackRow,
    FeedbackTokenRow,
    QueueItemRow,
    QueueRow,
)
from tracetune.timeutil import time_to_us, us_to_time

# What the SDK compares against its minimums: >= 0.8.10 sends feedback inside /runs/multipart; >= 0.16 is the v2
# read API (client.runs / traces / threads); 0.17 its thread filters. Not 0.18: addresses (client.sessions) are
# not served, and the SDK rightly warns before using them.
VERSION = "0.17.0"

INFO: dict[str, Any] = {
    "version": VERSION,
    "license_expiration_time": None,
    # All six keys, or none: a partial batch_ingest_config kills the SDK's tracing thread (wire-protocols §1.14).
    "batch_ingest_config": {
        "use_multipart_endpoint": True,
        "size_limit": 100,
        "size_limit_bytes": 20_971_520,
        "scale_up_qsize_trigger": 1000,
        "scale_up_nthreads_limit": 16,
        "scale_down_nempty_trigger": 4,
    },
    # Both query backends (the SDK's "dual"): v1 /runs/query and the v2 API serve the same store, so the SDK keeps
    # its v1 methods working and routes evaluate()/RunTree.url to v2 as it does on LangSmith.
    "instance_flags": {"zstd_compression_enabled": True, "ch_query_enabled": True, "sdb_query_enabled": True},
}


class Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


def _selectable(name: str) -> str:
    if name not in SELECTABLE:
        raise ValueError(f"{shown(name)} is not a run field that select can name (e.g. inputs, outputs)")
    return name


SelectField = Annotated[str, AfterValidator(_selectable)]


class RunQueryBody(Lenient):
    session: list[uuid.UUID] | None = None
    session_id: uuid.UUID | None = None
    id: list[uuid.UUID] | None = None
    run_type: str | None = None
    is_root: bool | None = None
    execution_order: int | None = Field(default=None, ge=1)
    error: bool | None = None
    trace: uuid.UUID | None = None
    parent_run: uuid.UUID | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    filter: str | None = None
    trace_filter: str | None = None
    tree_filter: str | None = None
    select: list[SelectField] | None = None
    reference_example: list[uuid.UUID] | None = None
    query: str | None = None  # LangSmith's old full-text search: search(query) over name, error, inputs, outputs
    # The SDK sends list_runs(limit=N) as the page size and follows cursors until it has N: a page holds at
    # most MAX_LIMIT runs and its cursor leads to the rest (a 422 would break list_runs(limit=5000)).
    limit: Annotated[int, Field(default=100, ge=1), AfterValidator(lambda n: min(n, MAX_LIMIT))] = 100
    cursor: str | None = None
    order: Literal["asc", "desc"] = "desc"

    def to_query(self) -> RunQuery:
        projects = list(self.session or [])
        if self.session_id:
            projects.append(self.session_id)
        is_root = self.is_root
        if self.execution_order == 1 and is_root is None:
            is_root = True  # the SDK no longer has execution_order; old code passes 1 meaning "roots"
        return RunQuery(
            project_ids=projects or None,
            run_ids=self.id,
            run_type=self.run_type,
            is_root=is_root,
            error=self.error,
            trace_id=self.trace,
            parent_run_id=self.parent_run,
            start_time_us=time_to_us(self.start_time, "start_time") if self.start_time else None,
            end_time_us=time_to_us(self.end_time, "end_time") if self.end_time else None,
            filter=self._filter(),
            trace_filter=self.trace_filter,
            tree_filter=self.tree_filter,
            reference_example_ids=self.reference_example,
            select=self.select,
            limit=self.limit,
            cursor=self.cursor,
            order=self.order,
        )

    def _filter(self) -> str | None:
        if not self.query:
            return self.filter
        searched = f"search({orjson.dumps(self.query).decode()})"
        return f"and({self.filter}, {searched})" if self.filter else searched


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text may not contain NUL (\\u0000) characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
ProjectName = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_no_nul)]


class SessionCreate(Lenient):
    name: ProjectName
    id: uuid.UUID | None = None
    description: Text | None = None
    extra: dict[str, Any] | None = None
    reference_dataset_id: uuid.UUID | None = None  # an experiment: a project run over a dataset (evaluate())


class SessionUpdate(Lenient):
    """``PATCH /sessions/{id}`` (``Client.update_project``): null means unchanged, as the SDK sends every key."""

    name: ProjectName | None = None
    description: Text | None = None
    extra: dict[str, Any] | None = None
    end_time: datetime | None = None


class FeedbackCategory(Lenient):
    value: float
    label: str | None = None


class FeedbackConfigBody(Lenient):
    """LangSmith's ``FeedbackConfig``: how a key's scores read."""

    type: Literal["continuous", "categorical", "freeform"]
    min: float | None = None
    max: float | None = None
    categories: list[FeedbackCategory] | None = None
    allows_multiple_categories: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> FeedbackConfigBody:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is above max")
        if self.type == "categorical" and not self.categories:
            raise ValueError("a categorical config needs categories")
        return self

    def stored(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


FeedbackKey = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_no_nul)]


class TimeDelta(Lenient):
    days: int = Field(default=0, ge=0)
    hours: int = Field(default=0, ge=0)
    minutes: int = Field(default=0, ge=0)


DEFAULT_TOKEN_LIFETIME = timedelta(hours=3)  # the SDK's default too


class FeedbackTokenCreate(Lenient):
    """One pre-signed feedback URL to make (``Client.create_presigned_feedback_token[s]``)."""

    run_id: uuid.UUID
    feedback_key: FeedbackKey
    feedback_config: FeedbackConfigBody | None = None
    id: uuid.UUID | None = None  # the feedback every use of the token writes
    expires_in: TimeDelta | None = None
    expires_at: datetime | None = None

    def expiry(self, now: datetime) -> datetime:
        if self.expires_at is not None:
            at = self.expires_at if self.expires_at.tzinfo else self.expires_at.replace(tzinfo=UTC)
            if at <= now:
                raise InvalidInput("expires_at is in the past", field="expires_at")
            return at
        if self.expires_in is not None:
            span = timedelta(days=self.expires_in.days, hours=self.expires_in.hours, minutes=self.expires_in.minutes)
            if span <= timedelta(0):
                raise InvalidInput("expires_in must be longer than zero", field="expires_in")
            return now + span
        return now + DEFAULT_TOKEN_LIFETIME


class TokenFeedback(Lenient):
    """What a pre-signed URL records (``Client.create_feedback_from_token``, or the query string of a GET)."""

    score: float | bool | None = None
    value: Any = None
    comment: str | None = None
    correction: Any = None
    metadata: dict[str, Any] | None = None


def token_view(row: FeedbackTokenRow, base_url: str) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "url": f"{base_url.rstrip('/')}/api/v1/feedback/tokens/{row['id']}",
        "expires_at": row["expires_at"].isoformat(),
    }


class FeedbackConfigCreate(Lenient):
    feedback_key: FeedbackKey
    feedback_config: FeedbackConfigBody
    is_lower_score_better: bool | None = None
    is_enforced: bool = False


class FeedbackConfigPatch(Lenient):
    """``update_feedback_config`` / ``add_feedback_categories`` / ``remove_feedback_categories``."""

    feedback_key: FeedbackKey
    id: uuid.UUID | None = None
    feedback_config: FeedbackConfigBody | None = None
    is_lower_score_better: bool | None = None
    add_categories: list[FeedbackCategory] | None = None
    remove_categories: list[float] | None = None

    def changes(self, current: dict[str, Any]) -> dict[str, Any]:
        """The columns this patch changes, given the key's ``current`` config."""
        out: dict[str, Any] = {}
        if self.is_lower_score_better is not None:
            out["is_lower_score_better"] = self.is_lower_score_better
        config = self.feedback_config.stored() if self.feedback_config else dict(current)
        if self.add_categories or self.remove_categories:
            if config.get("type") != "categorical":
                raise InvalidInput("only a categorical config has categories", field="add_categories")
            removed = set(self.remove_categories or [])
            kept = [c for c in config.get("categories") or [] if c.get("value") not in removed]
            known = {c.get("value") for c in kept}
            kept += [c.model_dump(exclude_none=True) for c in self.add_categories or [] if c.value not in known]
            config["categories"] = kept
        if self.feedback_config or self.add_categories or self.remove_categories:
            out["feedback_config"] = config
        return out


def feedback_config_view(row: FeedbackConfigRow) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "feedback_key": row["feedback_key"],
        "feedback_config": row["feedback_config"],
        "tenant_id": str(row["workspace_id"]),
        "modified_at": row["modified_at"].isoformat(),
        "is_lower_score_better": row["is_lower_score_better"],
        "is_enforced": False,
        "is_first": True,
    }


class QueueCreate(Lenient):
    name: ProjectName
    description: Text | None = None
    id: uuid.UUID | None = None
    rubric_instructions: Text | None = None
    rubric_items: list[dict[str, Any]] | None = None


class QueueUpdate(Lenient):
    name: ProjectName | None = None
    description: Text | None = None
    rubric_instructions: Text | None = None
    rubric_items: list[dict[str, Any]] | None = None


class QueueRunKey(Lenient):
    run_id: uuid.UUID
    session_id: uuid.UUID | None = None
    start_time: datetime | None = None


class QueueItemCreate(Lenient):
    item_type: Literal["RUN", "THREAD"] = "RUN"
    run_id: uuid.UUID | None = None
    project_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    thread_id: Annotated[str, Field(max_length=500)] | None = None
    start_time: datetime | None = None

    def wanted(self) -> dict[str, Any]:
        if self.item_type == "RUN" and self.run_id is None:
            raise InvalidInput("a RUN item needs run_id", field="items.run_id")
        return {
            "item_type": self.item_type,
            "run_id": self.run_id,
            "thread_id": self.thread_id,
            "project_id": self.project_id or self.session_id,
            "start_time": self.start_time,
        }


class QueueItemsCreate(Lenient):
    items: list[QueueItemCreate] = Field(min_length=1, max_length=1000)


class QueueItemStatus(Lenient):
    status: Literal["viewed", "completed"]


class QueueItemsDelete(Lenient):
    item_ids: list[uuid.UUID] | None = None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def queue_view(row: QueueRow) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "description": row["description"],
        "tenant_id": str(row["workspace_id"]),
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "rubric_instructions": row["rubric_instructions"],
        "rubric_items": row["rubric_items"],
    }


def queue_item_view(row: QueueItemRow) -> dict[str, Any]:
    """An item as the SDK's ``annotation_queues.items`` resource reads it (one reviewer: no assignments)."""
    return {
        "id": str(row["id"]),
        "queue_id": str(row["queue_id"]),
        "item_type": row["item_type"],
        "run_id": str(row["run_id"]) if row["run_id"] else None,
        "project_id": str(row["project_id"]) if row["project_id"] else None,
        "thread_id": row["thread_id"],
        "start_time": _iso(row["start_time"]),
        "added_at": row["added_at"].isoformat(),
        "effective_added_at": row["added_at"].isoformat(),
        "last_reviewed_time": _iso(row["last_reviewed_time"]),
        "status": "completed" if row["completed_at"] else "needs_my_review",
        "assigned_to": [],
        "completed_by": [],
        "reserved_by": [],
    }


class FeedbackUpdate(Lenient):
    score: float | bool | None = None
    value: Any = None
    comment: str | None = None
    correction: Any = None


def session_view(row: dict[str, Any], workspace_id: uuid.UUID) -> dict[str, Any]:
    created: datetime = row["created_at"]
    out: dict[str, Any] = {
        "id": str(row["id"]),
        "tenant_id": str(workspace_id),
        "name": row["name"],
        "description": row.get("description"),
        "extra": row.get("extra"),
        "start_time": created.isoformat(),
        "end_time": row["end_time"].isoformat() if row.get("end_time") else None,
        "reference_dataset_id": str(row["reference_dataset_id"]) if row.get("reference_dataset_id") else None,
        "default_dataset_id": None,
    }
    if "run_count" in row:
        last = us_to_time(row.get("last_start_us"))
        out["run_count"] = row["run_count"]
        out["last_run_start_time"] = last.isoformat() if last else None
    return out


def feedback_view(row: FeedbackRow) -> dict[str, Any]:
    def s(v: Any) -> str | None:
        return str(v) if v is not None else None

    return {
        "id": str(row["id"]),
        "created_at": row["created_at"].isoformat(),
        "modified_at": row["modified_at"].isoformat(),
        "run_id": s(row.get("run_id")),
        "trace_id": s(row.get("trace_id")),
        "session_id": s(row.get("session_id")),
        "key": row["key"],
        "score": row.get("score"),
        "value": row.get("value"),
        "comment": row.get("comment"),
        "correction": row.get("correction"),
        "feedback_source": row.get("feedback_source"),
        "extra": row.get("extra"),
    }


# -- datasets and examples ---------------------------------------------------------------------------------------

DatasetName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_no_nul)]
SplitName = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_no_nul)]


class DatasetCreate(Lenient):
    name: DatasetName
    id: uuid.UUID | None = None
    description: Text | None = None
    data_type: Literal["kv", "llm", "chat"] = "kv"
    inputs_schema_definition: dict[str, Any] | None = None
    outputs_schema_definition: dict[str, Any] | None = None
    transformations: list[dict[str, Any]] | None = None
    extra: dict[str, Any] | None = None

    def fields(self) -> dict[str, Any]:
        """Keyword arguments of ``DatasetStore.create_dataset``."""
        return {
            "id": self.id,
            "description": self.description,
            "metadata": (self.extra or {}).get("metadata"),
            "inputs_schema": self.inputs_schema_definition,
            "outputs_schema": self.outputs_schema_definition,
            "transformations": self.transformations,
        }


class DatasetUpdate(Lenient):
    name: DatasetName | None = None
    description: Text | None = None
    metadata: dict[str, Any] | None = None
    inputs_schema_definition: dict[str, Any] | None = None
    outputs_schema_definition: dict[str, Any] | None = None
    transformations: list[dict[str, Any]] | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "metadata": self.metadata,
            "inputs_schema": self.inputs_schema_definition,
            "outputs_schema": self.outputs_schema_definition,
            "transformations": self.transformations,
        }


class ExampleFields(Lenient):
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    split: SplitName | list[SplitName] | None = None

    def splits(self) -> list[str] | None:
        """The example's splits: ``split`` (one name or a list), else ``metadata.dataset_split`` (where LangSmith
        reports them), else None (unchanged, or ``base`` for a new example)."""
        given: Any = self.split
        if given is None and self.metadata and "dataset_split" in self.metadata:
            given = self.metadata["dataset_split"]
            if not (isinstance(given, str) or (isinstance(given, list) and all(isinstance(x, str) for x in given))):
                raise InvalidInput("metadata.dataset_split must be a split name or a list of them", field="split")
        if given is None:
            return None
        names = [given] if isinstance(given, str) else list(dict.fromkeys(given))
        return names or None

    def own_metadata(self) -> dict[str, Any] | None:
        """``metadata`` without ``dataset_split`` (splits are stored on their own)."""
        if self.metadata is None:
            return None
        return {k: v for k, v in self.metadata.items() if k != "dataset_split"}


class ExampleCreate(ExampleFields):
    dataset_id: uuid.UUID
    id: uuid.UUID | None = None
    created_at: datetime | None = None
    source_run_id: uuid.UUID | None = None
    use_source_run_io: bool = False


class ExampleUpdate(ExampleFields):
    id: uuid.UUID | None = None
    dataset_id: uuid.UUID | None = None


class SplitsUpdate(Lenient):
    split_name: SplitName
    examples: list[uuid.UUID]
    remove: bool = False


class DatasetTag(Lenient):
    as_of: datetime
    tag: Text


def dataset_view(row: DatasetRow | dict[str, Any]) -> dict[str, Any]:
    """A dataset as the SDK's ``Dataset`` reads it."""
    last = cast(datetime | None, row.get("last_session_start_time"))
    return {
        "id": str(row["id"]),
        "tenant_id": str(row["workspace_id"]),
        "name": row["name"],
        "description": row["description"],
        "data_type": row["data_type"],
        "created_at": row["created_at"].isoformat(),
        "modified_at": row["modified_at"].isoformat(),
        "example_count": row.get("example_count", 0),
        "session_count": row.get("session_count", 0),
        "last_session_start_time": last.isoformat() if last else None,
        "inputs_schema_definition": row["inputs_schema"],
        "outputs_schema_definition": row["outputs_schema"],
        "transformations": row["transformations"],
        "metadata": row["metadata"],
    }


def example_view(row: ExampleRow) -> dict[str, Any]:
    """An example as the SDK's ``Example`` reads it: its splits in ``metadata.dataset_split``, as LangSmith's."""
    return {
        "id": str(row["id"]),
        "dataset_id": str(row["dataset_id"]),
        "inputs": row["inputs"],
        "outputs": row["outputs"],
        "metadata": {**(row["metadata"] or {}), "dataset_split": row["splits"]},
        "created_at": row["created_at"].isoformat(),
        "modified_at": row["modified_at"].isoformat(),
        "source_run_id": str(row["source_run_id"]) if row["source_run_id"] else None,
        "attachment_urls": None,
    }


def version_view(row: DatasetVersionRow) -> dict[str, Any]:
    return {"as_of": row["as_of"].isoformat(), "tags": row["tags"]}


class ComparativeCreate(Lenient):
    experiment_ids: list[uuid.UUID]
    reference_dataset_id: uuid.UUID
    id: uuid.UUID | None = None
    name: Text | None = None
    description: Text | None = None
    extra: dict[str, Any] | None = None


def comparative_view(row: ComparativeExperimentRow) -> dict[str, Any]:
    """A comparison as the SDK's ``ComparativeExperiment`` reads it."""
    return {
        "id": str(row["id"]),
        "tenant_id": str(row["workspace_id"]),
        "name": row["name"],
        "description": row["description"],
        "reference_dataset_id": str(row["reference_dataset_id"]),
        "created_at": row["created_at"].isoformat(),
        "modified_at": row["modified_at"].isoformat(),
        "extra": row["extra"],
        "experiments_info": [{"id": e} for e in row["experiment_ids"]],
    }
