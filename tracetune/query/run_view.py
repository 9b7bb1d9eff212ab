"""Pure functions: a stored ``runs`` row → the run object LangSmith clients read (``langsmith.schemas.Run``)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from tracetune.ingest.usage import usage_fields
from tracetune.timeutil import dotted_segment, us_to_time

# What `list_runs(select=…)` may name, beyond the columns themselves.
ALWAYS = ("id", "name", "run_type", "start_time", "trace_id", "dotted_order", "parent_run_id", "session_id")
# Every field LangSmith's ``select`` knows (its RunSelectField); another name is refused. Fields tracetune does not
# keep (previews, signed URLs, sharing, manifests) are simply absent from the answer.
SELECTABLE = frozenset(
    {
        "id", "name", "run_type", "start_time", "end_time", "status", "error", "extra", "events", "inputs",
        "inputs_preview", "inputs_s3_urls", "outputs", "outputs_preview", "outputs_s3_urls", "s3_urls", "serialized",
        "parent_run_id", "parent_run_ids", "manifest_id", "manifest_s3_id", "manifest", "session_id",
        "reference_example_id", "reference_dataset_id", "total_tokens", "prompt_tokens", "completion_tokens",
        "prompt_token_details", "completion_token_details", "total_cost", "prompt_cost", "completion_cost",
        "prompt_cost_details", "completion_cost_details", "price_model_id", "first_token_time", "trace_id",
        "dotted_order", "last_queued_at", "feedback_stats", "child_run_ids", "tags", "in_dataset", "app_path",
        "share_token", "trace_tier", "trace_first_received_at", "ttl_seconds", "trace_upgrade", "thread_id",
        "messages", "inserted_at", "latency", "error_or_signed_url", "events_or_signed_url",
        "extra_or_signed_url", "serialized_or_signed_url", "inputs_or_signed_url", "outputs_or_signed_url",
        "trace_min_start_time", "trace_max_start_time",
    }
)  # fmt: skip


def _iso(us: int | None) -> str | None:
    dt = us_to_time(us)
    return dt.isoformat() if dt else None


def status_of(row: Mapping[str, Any]) -> str:
    if row.get("error") is not None:
        return "error"
    return "success" if row.get("end_us") is not None else "pending"


def flatten_llm(run_type: str | None, inputs: Any, outputs: Any) -> tuple[Any, Any]:
    """LangChain sends LLM runs batched (``messages: [[…]]``, ``generations: [[…]]``); consumers such as
    ``LangSmithRunChatLoader`` index them flat. Single batches are unwrapped; anything else is left alone."""
    if run_type != "llm":
        return inputs, outputs
    if isinstance(inputs, dict):
        messages = inputs.get("messages")
        if isinstance(messages, list) and len(messages) == 1 and isinstance(messages[0], list):
            inputs = {**inputs, "messages": messages[0]}
    if isinstance(outputs, dict):
        gens = outputs.get("generations")
        if isinstance(gens, list) and len(gens) == 1 and isinstance(gens[0], list):
            outputs = {**outputs, "generations": gens[0]}
    return inputs, outputs


def ancestors(dotted_order: str | None) -> list[str]:
    """Ancestor run ids (root first) read off a dotted order ``<stamp>Z<id>.<stamp>Z<id>…``."""
    if not dotted_order:
        return []
    out = []
    for segment in dotted_order.split(".")[:-1]:
        _, _, rid = segment.partition("Z")
        out.append(rid)
    return out


def default_dotted_order(row: Mapping[str, Any]) -> str | None:
    """The run's own one-segment dotted order: a root's (stored before dotted orders were derived on write), or
    a child's while its parent has not arrived."""
    start = row.get("start_us")
    return None if start is None else dotted_segment(start, row["id"])


def run_view(
    row: Mapping[str, Any],
    *,
    feedback_stats: dict[str, Any] | None = None,
    child_run_ids: list[uuid.UUID] | None = None,
    select: set[str] | None = None,
    prices: Mapping[str, tuple[float, float]] | None = None,
    costs: bool = True,
) -> dict[str, Any]:
    """The LangSmith run object for ``row``. ``select`` limits the heavy fields (inputs, outputs, …); ``prices``
    (model → USD per million input/output tokens) costs runs whose usage reports no cost. ``costs=False`` leaves
    out the fields found in the run's usage (token details and costs): converting runs to records reads none of
    them, and finding them was 9% of an export's time."""
    inputs, outputs = flatten_llm(row.get("run_type"), row.get("inputs"), row.get("outputs"))
    start, end = row.get("start_us"), row.get("end_us")
    # The SDK (langsmith >= 0.15) requires a string. A child whose parent never arrived reads with its own segment
    # until the parent comes (then ``RunStore`` stores the real one).
    dotted = row.get("dotted_order") or default_dotted_order(row)
    view: dict[str, Any] = {
        "id": str(row["id"]),
        "name": row.get("name") or "",
        "run_type": row.get("run_type") or "chain",
        "start_time": _iso(start),
        "end_time": _iso(end),
        "status": status_of(row),
        "error": row.get("error"),
        "inputs": inputs if inputs is not None else {},
        "outputs": outputs,
        "extra": row.get("extra"),
        "serialized": row.get("serialized"),
        "events": row.get("events"),
        "tags": row.get("tags") or [],
        "trace_id": str(row.get("trace_id") or row["id"]),
        "dotted_order": dotted,
        "parent_run_id": str(row["parent_run_id"]) if row.get("parent_run_id") else None,
        "parent_run_ids": ancestors(dotted),
        "session_id": str(row["project_id"]) if row.get("project_id") else None,
        "reference_example_id": str(row["reference_example_id"]) if row.get("reference_example_id") else None,
        "prompt_tokens": row.get("prompt_tokens"),
        "completion_tokens": row.get("completion_tokens"),
        "total_tokens": row.get("total_tokens"),
        **(usage_fields(row.get("outputs"), row.get("extra"), prices) if costs else {}),
        "first_token_time": _iso(row.get("first_token_us")),
        "latency": (end - start) / 1e6 if start is not None and end is not None else None,
        "thread_id": row.get("thread_id"),
        "feedback_stats": feedback_stats,
        "app_path": None,
    }
    if child_run_ids is not None:
        view["child_run_ids"] = [str(c) for c in child_run_ids]
    if select is not None:
        view = {k: v for k, v in view.items() if k in select or k in ALWAYS}
    return view
