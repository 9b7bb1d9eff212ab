"""Pydantic models of tracetune's own API (``/tt/v1``, used by the UI). Unlike the compatible surfaces these
FORBID unknown fields: a misspelt option must fail loudly (422 naming it), not be silently ignored."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tracetune.convert.dataset_builder import ExportOptions, Selection
from tracetune.store.rows import AliasRow

INT64 = 2**63


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SelectionBody(Strict):
    """Which runs: see ``tracetune.convert.dataset_builder.Selection``."""

    project: str = Field(min_length=1, max_length=500, description="Project name.")
    run_type: str | None = Field(default="llm", max_length=32)
    filter: str | None = Field(default=None, description="Filter expression on the runs.")
    trace_filter: str | None = Field(default=None, description="Filter expression on each run's root.")
    feedback_key: str | None = Field(
        default=None, max_length=500, description="Only runs whose own or root's feedback has this key."
    )
    min_score: float | None = Field(default=None, description="… with at least this score (needs feedback_key).")

    def to_selection(self) -> Selection:
        return Selection(**self.model_dump())


class OptionsBody(Strict):
    """How runs become records: see ``tracetune.convert.dataset_builder.ExportOptions``."""

    format: Literal["openai", "hf", "sharegpt", "dpo"] = Field(
        default="openai", description="Chat records, or 'dpo': preference pairs from corrections (and ratings)."
    )
    split: float | None = Field(default=None, gt=0, lt=1, description="Share of traces/threads in train.")
    seed: int = Field(default=0, ge=-INT64, lt=INT64)
    dedupe: bool = False
    scrub_pii: bool = False
    use_corrections: bool = False
    merge: bool = True
    model: str | None = Field(default=None, max_length=200, description="Target model id (default: built-in).")
    rating_key: str | None = Field(
        default=None,
        max_length=500,
        description="dpo: pair disliked with liked runs of one input by this key.",
    )
    good_score: float = Field(default=1.0, description="dpo: a run rated at least this is liked.")
    bad_score: float = Field(default=0.0, description="dpo: a run rated at most this is disliked.")

    def to_options(self, name: str) -> ExportOptions:
        return ExportOptions(**self.model_dump(), name=name)


class DatasetCreate(Strict):
    name: str = Field(min_length=1, max_length=200, description="Dataset name; an existing name gets a new version.")
    selection: SelectionBody
    options: OptionsBody = Field(default_factory=OptionsBody)


def dataset_view(row: dict[str, Any]) -> dict[str, Any]:
    """A stored dataset as the API returns it."""
    return {
        "id": str(row["id"]),
        "dataset_id": str(row["dataset_id"]),  # the dataset (all versions of the name), as LangSmith's API sees it
        "name": row["name"],
        "version": row["version"],
        "selection": row["selection"],
        "options": row["options"],
        "summary": row["summary"],
        "record_count": row["record_count"],
        "train_count": row["train_count"],
        "validation_count": row["validation_count"],
        "created_at": row["created_at"].isoformat(),
    }


class AliasSet(Strict):
    model: str = Field(min_length=1, max_length=300, description="The model (or another alias) the alias names.")


def alias_view(row: AliasRow) -> dict[str, Any]:
    """A stored alias version as the API returns it."""
    return {
        "name": row["name"],
        "model": row["model"],
        "version": row["version"],
        "note": row["note"],
        "created_at": row["created_at"].isoformat(),
    }
