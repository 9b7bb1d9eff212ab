"""Listing runs: the ``POST /runs/query`` selection (and the CLI's) compiled to one SQL statement, with
keyset (cursor) pagination over ``(start_time, id)``, newest first."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select

from tracetune.errors import InvalidInput
from tracetune.query.filter_sql import FeedbackWindow, filter_clause, trace_filter_clause, tree_filter_clause
from tracetune.query.run_view import run_view
from tracetune.store import Store
from tracetune.store.schema import RUN_LATENCY_US, RUN_TOTAL_TOKENS, runs

MAX_LIMIT = 1000
USAGE_FIELDS = {
    "prompt_token_details",
    "completion_token_details",
    "prompt_cost",
    "completion_cost",
    "total_cost",
    "prompt_cost_details",
    "completion_cost_details",
}
HEAVY = {
    "inputs": "inputs",
    "outputs": "outputs",
    "extra": "extra",
    "serialized": "serialized",
    "events": "events",
}


# what a page of runs can be sorted by (then by id): a pending run's latency and a run without usage's tokens sort
# as -1, below every finished / counted run
SORT_KEYS: dict[str, ColumnElement[int]] = {
    "start_time": runs.c.start_us,
    "latency": RUN_LATENCY_US,  # each with its index (store.schema)
    "total_tokens": RUN_TOTAL_TOKENS,
}


@dataclass
class RunQuery:
    project_ids: list[uuid.UUID] | None = None
    run_ids: list[uuid.UUID] | None = None
    run_type: str | None = None
    is_root: bool | None = None
    error: bool | None = None
    trace_id: uuid.UUID | None = None
    parent_run_id: uuid.UUID | None = None
    start_time_us: int | None = None
    end_time_us: int | None = None
    filter: str | None = None
    trace_filter: str | None = None
    tree_filter: str | None = None
    tree_includes_self: bool = False  # v2: tree_filter may match the run itself ("anywhere in the run tree")
    thread_id: str | None = None
    reference_example_ids: list[uuid.UUID] | None = None
    feedback_window: FeedbackWindow | None = None  # v2: bounds the feedback rows that feedback_* conditions match
    select: list[str] | None = None
    limit: int = 100
    cursor: str | None = None
    order: str = "desc"
    sort: str = "start_time"  # one of SORT_KEYS (the UI's runs table; LangSmith's API pages by start time only)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunPage:
    runs: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(start_us: int, key: uuid.UUID | str) -> str:
    """An opaque keyset cursor: the last item's start time and key (a run id, or a thread id)."""
    return base64.urlsafe_b64encode(f"{start_us}:{key}".encode()).decode().rstrip("=")


def decode_key_cursor(cursor: str) -> tuple[int, str]:
    """``(start_us, key)`` of a cursor ``encode_cursor`` made; 400 naming ``cursor`` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        start, sep, key = raw.partition(":")
        if not sep or not key:
            raise ValueError(cursor)
        return int(start), key
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("not a cursor this server issued", field="cursor") from None


def decode_cursor(cursor: str) -> tuple[int, uuid.UUID]:
    start, key = decode_key_cursor(cursor)
    try:
        return start, uuid.UUID(key)
    except ValueError:
        raise InvalidInput("not a cursor this server issued", field="cursor") from None


def where_clauses(workspace_id: uuid.UUID, q: RunQuery) -> list[ColumnElement[bool]]:
    """The WHERE conditions of a selection (everything but paging): shared by ``build_statement`` (one page)
    and the dataset export (one streamed statement over the whole selection)."""
    clauses: list[ColumnElement[bool]] = [runs.c.workspace_id == workspace_id]
    if q.project_ids:
        clauses.append(runs.c.project_id.in_(q.project_ids))
    if q.run_ids:
        clauses.append(runs.c.id.in_(q.run_ids))
    if q.run_type:
        clauses.append(runs.c.run_type == q.run_type)
    if q.is_root is not None:
        clauses.append(runs.c.parent_run_id.is_(None) if q.is_root else runs.c.parent_run_id.is_not(None))
    if q.error is not None:
        clauses.append(runs.c.error.is_not(None) if q.error else runs.c.error.is_(None))
    if q.trace_id:
        clauses.append(runs.c.trace_id == q.trace_id)
    if q.parent_run_id:
        clauses.append(runs.c.parent_run_id == q.parent_run_id)
    if q.start_time_us is not None:
        clauses.append(runs.c.start_us >= q.start_time_us)
    if q.end_time_us is not None:
        clauses.append(runs.c.start_us <= q.end_time_us)
    if q.thread_id is not None:
        clauses.append(runs.c.thread_id == q.thread_id)
    if q.reference_example_ids:
        clauses.append(runs.c.reference_example_id.in_(q.reference_example_ids))
    window = q.feedback_window
    if q.filter:
        clauses.append(filter_clause(q.filter, runs, window=window))
    if q.trace_filter:
        clauses.append(trace_filter_clause(q.trace_filter, runs, window=window))
    if q.tree_filter:
        clauses.append(tree_filter_clause(q.tree_filter, runs, window=window, include_self=q.tree_includes_self))
    if window is not None and not window.used:
        raise InvalidInput(
            "min/max_feedback_modified_at bound feedback conditions: give filter, trace_filter or tree_filter a "
            'feedback condition (e.g. eq(feedback_key, "correctness"))',
            field="min_feedback_modified_at" if window.min_modified is not None else "max_feedback_modified_at",
        )
    return clauses


def build_statement(workspace_id: uuid.UUID, q: RunQuery) -> Any:
    """The SELECT for one page (``limit + 1`` rows, to know whether another page exists)."""
    if not 1 <= q.limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    if q.order not in ("asc", "desc"):
        raise InvalidInput("order must be 'asc' or 'desc'", field="order")
    wanted = set(q.select) if q.select else set(HEAVY)
    if wanted & USAGE_FIELDS:  # token details and costs are read off the usage in outputs/extra
        wanted |= {"outputs", "extra"}
    columns = [c for c in runs.c if c.name not in HEAVY or c.name in wanted]
    if q.sort not in SORT_KEYS:
        raise InvalidInput(f"sort must be one of {', '.join(SORT_KEYS)}", field="sort")
    key = SORT_KEYS[q.sort]
    stmt = select(*columns, key.label("sort_key")).where(*where_clauses(workspace_id, q))
    desc = q.order == "desc"
    if q.cursor:
        c_key, c_id = decode_cursor(q.cursor)
        if desc:
            stmt = stmt.where(or_(key < c_key, and_(key == c_key, runs.c.id < c_id)))
        else:
            stmt = stmt.where(or_(key > c_key, and_(key == c_key, runs.c.id > c_id)))
    order = (key.desc(), runs.c.id.desc()) if desc else (key.asc(), runs.c.id.asc())
    return stmt.order_by(*order).limit(q.limit + 1)


def query_runs(
    store: Store, workspace_id: uuid.UUID, q: RunQuery, prices: Mapping[str, tuple[float, float]] | None = None
) -> RunPage:
    """One page of runs as LangSmith run objects, plus the cursor of the next page (None on the last);
    ``prices`` as ``run_view`` takes them."""
    rows = store.runs.fetch(build_statement(workspace_id, q))
    has_more = len(rows) > q.limit
    rows = rows[: q.limit]
    select_set = set(q.select) if q.select else None
    want_stats = select_set is None or "feedback_stats" in select_set
    want_children = select_set is not None and "child_run_ids" in select_set
    ids = [r["id"] for r in rows]
    stats = store.feedback.stats_for_runs(workspace_id, ids) if want_stats else {}
    children = store.runs.child_ids(workspace_id, ids) if want_children else {}
    views = [
        run_view(
            r,
            feedback_stats=stats.get(r["id"]),
            child_run_ids=children.get(r["id"], []) if want_children else None,
            select=select_set,
            prices=prices,
        )
        for r in rows
    ]
    next_cursor = encode_cursor(rows[-1]["sort_key"], rows[-1]["id"]) if has_more and rows else None
    return RunPage(views, next_cursor)
