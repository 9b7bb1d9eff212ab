"""Streaming a selection of runs for export: one statement over a project's runs (filter language, feedback),
read one trace at a time as ``run_view`` dicts with their reviewers' corrections. The converter (``convert``)
reads runs only through here: it holds no SQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Generator, Iterator
from typing import Any

import orjson
from sqlalchemy import Text, cast, func, or_, select

from tracetune.errors import InvalidInput, NotFound
from tracetune.query.filter_sql import filter_clause, trace_filter_clause
from tracetune.query.run_view import run_view
from tracetune.query.runs_query import RunQuery, where_clauses
from tracetune.store import Store
from tracetune.store.schema import automation_runs, runs

BATCH = 500  # rows per fetch from the store, and run ids per corrections query
# What the converter reads of a stored run (``run_view`` fills in the rest as None).
_COLUMNS = (
    "id",
    "trace_id",
    "parent_run_id",
    "dotted_order",
    "run_type",
    "start_us",
    "end_us",
    "error",
    "inputs",
    "outputs",
    "extra",
    "project_id",
    "thread_id",
)
_JSON_COLUMNS = ("inputs", "outputs")  # extra is packed: its column type decodes it


def selection_statement(
    store: Store,
    workspace_id: uuid.UUID,
    *,
    project: str | None,
    run_type: str | None = None,
    filter: str | None = None,
    trace_filter: str | None = None,
    feedback_key: str | None = None,
    min_score: float | None = None,
    firing_id: str | None = None,
) -> Any:
    """One statement selecting a project's runs (filters, feedback) in trace order, the columns the converter
    reads; 400 for a missing project name or a bad filter, 404 for an unknown project (before anything streams).
    With ``firing_id``, only the runs that automation firing took (and its sampling kept)."""
    if not project:
        raise InvalidInput("a project is required", field="project")
    found = store.projects.list(workspace_id, name=project, limit=1)
    if not found:
        raise NotFound(f"no project named {project!r}", field="project")
    query = RunQuery(
        project_ids=[found[0]["id"]],
        run_type=run_type,
        filter=filter,
        trace_filter=trace_filter,
    )
    clauses = where_clauses(workspace_id, query)
    if feedback_key is not None:
        parts = [f"eq(feedback_key, {json.dumps(feedback_key)})"]
        if min_score is not None:
            parts.append(f"gte(feedback_score, {float(min_score)!r})")
        expr = f"and({', '.join(parts)})"
        clauses.append(
            or_(filter_clause(expr, runs, param="feedback_key"), trace_filter_clause(expr, runs, param="feedback_key"))
        )
    elif min_score is not None:
        raise InvalidInput("min_score needs a feedback_key", field="min_score")
    if firing_id is not None:
        taken = automation_runs.c
        clauses.append(
            runs.c.id.in_(select(taken.run_id).where(taken.firing_id == uuid.UUID(firing_id), taken.sampled))
        )
    order = (runs.c.trace_id, runs.c.dotted_order, runs.c.start_us, runs.c.id)
    return select(*_columns()).where(*clauses).order_by(*order)


def _untaken(store: Store, workspace_id: uuid.UUID, automation_id: uuid.UUID, selection: dict[str, Any]) -> Any:
    stmt = selection_statement(store, workspace_id, **selection)
    taken = select(automation_runs.c.run_id).where(automation_runs.c.automation_id == automation_id)
    return stmt.with_only_columns(runs.c.id).where(runs.c.id.not_in(taken)).order_by(None)


def count_untaken_runs(
    store: Store, workspace_id: uuid.UUID, automation_id: uuid.UUID, selection: dict[str, Any]
) -> int:
    """How many runs ``selection`` (``selection_statement``'s keywords) picks that the automation has not taken."""
    stmt = select(func.count()).select_from(_untaken(store, workspace_id, automation_id, selection).subquery())
    with store.db.read() as conn:
        return int(conn.execute(stmt).scalar() or 0)


def untaken_run_ids(
    store: Store, workspace_id: uuid.UUID, automation_id: uuid.UUID, selection: dict[str, Any]
) -> list[uuid.UUID]:
    """The ids of the runs ``selection`` picks that the automation has not taken yet."""
    with store.db.read() as conn:
        return list(conn.execute(_untaken(store, workspace_id, automation_id, selection)).scalars())


def _columns() -> list[Any]:
    # JSON columns are read as text and decoded by _decoded: measured 2-3x faster than the JSON type's processing
    return [cast(runs.c[name], Text).label(name) if name in _JSON_COLUMNS else runs.c[name] for name in _COLUMNS]


def _decoded(row: Any) -> dict[str, Any]:
    values = dict(row)
    for name in _JSON_COLUMNS:
        if values[name] is not None:
            values[name] = orjson.loads(values[name])
    return values


def stream_run_groups(
    store: Store, workspace_id: uuid.UUID, stmt: Any, *, corrections: bool = False, rating_key: str | None = None
) -> Generator[tuple[list[dict[str, Any]], dict[str, Any], dict[str, float]]]:
    """The runs ``stmt`` (``selection_statement``) selects, as ``run_view`` dicts, one trace at a time, each
    trace with the corrections of its runs (with ``corrections``) and, with ``rating_key``, their ratings: a
    run's newest score under that feedback key, else its trace root's (a thumbs up or down is usually given on
    the trace; the root run's id is the trace id)."""
    group: list[dict[str, Any]] = []
    group_fixes: dict[str, Any] = {}
    group_ratings: dict[str, float] = {}
    key: Any = None
    with store.db.read() as conn:
        result = conn.execute(stmt.execution_options(yield_per=BATCH))  # streamed: server-side cursor on PG
        for partition in result.partitions():
            rows = [row._mapping for row in partition]
            ids = [r["id"] for r in rows]
            fixes = store.feedback.latest_corrections(conn, workspace_id, ids) if corrections else {}
            scores = (
                store.feedback.latest_scores(
                    conn, workspace_id, list({*ids, *(r["trace_id"] for r in rows if r["trace_id"])}), rating_key
                )
                if rating_key is not None
                else {}
            )
            for row in rows:
                k = row["trace_id"] or row["id"]
                if group and k != key:
                    yield group, group_fixes, group_ratings
                    group, group_fixes, group_ratings = [], {}, {}
                key = k
                run = run_view(_decoded(row), costs=False)
                group.append(run)
                if run["id"] in fixes:
                    group_fixes[run["id"]] = fixes[run["id"]]
                score = scores.get(run["id"], scores.get(str(k)))
                if score is not None:
                    group_ratings[run["id"]] = score
    if group:
        yield group, group_fixes, group_ratings


def recent_llm_runs(store: Store, workspace_id: uuid.UUID, limit: int) -> Iterator[dict[str, Any]]:
    """The workspace's newest ``limit`` LLM runs (any project), newest first, as ``run_view`` dicts."""
    stmt = (
        select(*_columns())
        .where(runs.c.workspace_id == workspace_id, runs.c.run_type == "llm")
        .order_by(runs.c.start_us.desc(), runs.c.id)
        .limit(limit)
    )
    for row in store.runs.fetch(stmt):
        yield run_view(_decoded(row), costs=False)
