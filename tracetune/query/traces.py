"""LangSmith v2 runs and traces: ``POST /api/v2/runs/query`` (``query_runs_v2``), ``POST /api/v2/traces/query``
(``query_traces``: root runs with trace-wide aggregates) and ``GET /api/v2/traces/{id}/runs`` (``trace_runs``).
All of them are the v1 selection (``RunQuery``, same filters, indexes and keyset cursors) with v2's shapes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from sqlalchemy import select

from tracetune.ingest.usage import usage_fields
from tracetune.query.runs_query import MAX_LIMIT, RunQuery, query_runs
from tracetune.query.v2_runs import v1_fields, v2_run
from tracetune.store import Store
from tracetune.store.schema import runs
from tracetune.timeutil import us_to_time

Prices = Mapping[str, tuple[float, float]] | None
# The selects a trace answers under ``trace_aggregates`` (sums over every run of the trace), not ``root_run``.
AGGREGATES: Final = frozenset({"TOTAL_TOKENS", "TOTAL_COST", "FIRST_TOKEN_TIME"})


def query_runs_v2(
    store: Store, workspace_id: uuid.UUID, q: RunQuery, selects: list[str], prices: Prices = None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of v2 runs for ``q`` and the next page's cursor (None on the last)."""
    page = query_runs(store, workspace_id, replace(q, select=v1_fields(selects)), prices=prices)
    return [v2_run(view, selects) for view in page.runs], page.next_cursor


def query_traces(
    store: Store, workspace_id: uuid.UUID, q: RunQuery, selects: list[str], prices: Prices = None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of traces — ``{"root_run": …, "trace_aggregates": …}`` — of the root runs ``q`` selects."""
    root_selects = [s for s in selects if s not in AGGREGATES]
    aggregate_selects = [s for s in selects if s in AGGREGATES]
    roots, cursor = query_runs_v2(store, workspace_id, replace(q, is_root=True), root_selects, prices)
    aggregates = (
        trace_aggregates(store, workspace_id, [uuid.UUID(r["id"]) for r in roots], aggregate_selects, prices)
        if aggregate_selects
        else {}
    )
    items = [
        {"root_run": root, "trace_aggregates": aggregates.get(root["id"]) if aggregate_selects else None}
        for root in roots
    ]
    return items, cursor


def trace_aggregates(
    store: Store, workspace_id: uuid.UUID, trace_ids: list[uuid.UUID], selects: list[str], prices: Prices
) -> dict[str, dict[str, Any]]:
    """Per trace (by id): the selected sums over all its runs — tokens, cost — and the earliest first token."""
    if not trace_ids:
        return {}
    cols = [runs.c.trace_id, runs.c.total_tokens, runs.c.first_token_us]
    if "TOTAL_COST" in selects:
        cols += [runs.c.outputs, runs.c.extra]
    rows = store.runs.fetch(select(*cols).where(runs.c.workspace_id == workspace_id, runs.c.trace_id.in_(trace_ids)))
    tokens: dict[str, int | None] = {}
    costs: dict[str, float | None] = {}
    first: dict[str, int | None] = {}
    for row in rows:
        tid = str(row["trace_id"])
        if row["total_tokens"] is not None:
            tokens[tid] = (tokens.get(tid) or 0) + row["total_tokens"]
        if row["first_token_us"] is not None:
            earliest = first.get(tid)
            first[tid] = row["first_token_us"] if earliest is None else min(earliest, row["first_token_us"])
        if "TOTAL_COST" in selects:
            cost = usage_fields(row["outputs"], row["extra"], prices)["total_cost"]
            if cost is not None:
                costs[tid] = (costs.get(tid) or 0.0) + cost
    out: dict[str, dict[str, Any]] = {}
    for trace_id in trace_ids:
        tid = str(trace_id)
        agg: dict[str, Any] = {}
        if "TOTAL_TOKENS" in selects:
            agg["total_tokens"] = tokens.get(tid)
        if "TOTAL_COST" in selects:
            agg["total_cost"] = costs.get(tid)
        if "FIRST_TOKEN_TIME" in selects:
            when = us_to_time(first.get(tid))
            agg["first_token_time"] = when.isoformat() if when else None
        out[tid] = agg
    return out


def trace_runs(
    store: Store, workspace_id: uuid.UUID, q: RunQuery, selects: list[str], prices: Prices = None
) -> list[dict[str, Any]]:
    """Every run of one trace (``q.trace_id``) that ``q`` selects, in execution order (start time)."""
    q = replace(q, order="asc", limit=MAX_LIMIT, cursor=None, select=v1_fields(selects))
    out: list[dict[str, Any]] = []
    while True:
        page = query_runs(store, workspace_id, q, prices=prices)
        out += [v2_run(view, selects) for view in page.runs]
        if page.next_cursor is None:
            return out
        q = replace(q, cursor=page.next_cursor)
