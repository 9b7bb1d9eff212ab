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
    store: Store,
    workspace_id: uuid.UUID,
    q: RunQuery,
    selects: list[str],
    prices: Prices = None,
    *,
    subtree_usage: bool = False,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of v2 runs for ``q`` and the next page's cursor (None on the last). ``subtree_usage``: a run with
    runs below it has its selected token, cost and first-token fields summed over its subtree (v2's
    ``include_subtree_usage``)."""
    page = query_runs(store, workspace_id, replace(q, select=v1_fields(selects)), prices=prices)
    items = [v2_run(view, selects) for view in page.runs]
    enriched = [s.lower() for s in selects if s.lower() in (*_SUMMED, *_COSTS, "first_token_time")]
    if subtree_usage and enriched and items:
        targets: list[Target] = [(v["id"], v["trace_id"], v["dotted_order"]) for v in page.runs]
        totals = subtree_totals(store, workspace_id, targets, any(k in _COSTS for k in enriched), prices)
        for item in items:
            mine = totals[item["id"]]
            if mine["descendants"]:
                item.update({k: mine[k] for k in enriched})
    return items, page.next_cursor


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


Target = tuple[str, str, str | None]  # (run id, trace id, dotted order)
_SUMMED: Final = ("total_tokens", "prompt_tokens", "completion_tokens")
_COSTS: Final = ("total_cost", "prompt_cost", "completion_cost")


def subtree_totals(
    store: Store, workspace_id: uuid.UUID, targets: list[Target], costs: bool, prices: Prices
) -> dict[str, dict[str, Any]]:
    """Per target run (by id): token counts (and costs when ``costs``) summed over the run and every run below it,
    the earliest first-token time among them, and how many runs below it were seen (``descendants``). A root's
    subtree is its whole trace (runs still waiting for their parent included)."""
    if not targets:
        return {}
    cols = [runs.c.id, runs.c.trace_id, runs.c.dotted_order, runs.c.first_token_us, *(runs.c[k] for k in _SUMMED)]
    if costs:
        cols += [runs.c.outputs, runs.c.extra]
    traces = {uuid.UUID(t[1]) for t in targets}
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for row in store.runs.fetch(select(*cols).where(runs.c.workspace_id == workspace_id, runs.c.trace_id.in_(traces))):
        if costs:
            row.update({k: usage_fields(row["outputs"], row["extra"], prices)[k] for k in _COSTS})
        by_trace.setdefault(str(row["trace_id"]), []).append(row)
    out: dict[str, dict[str, Any]] = {}
    for run_id, trace_id, dotted in targets:
        rows = by_trace.get(trace_id, [])
        if run_id != trace_id:  # not the root: the run and the runs under it by dotted order
            rows = [r for r in rows if dotted and _under(r["dotted_order"], dotted)]
        totals: dict[str, Any] = {"descendants": sum(1 for r in rows if str(r["id"]) != run_id)}
        for key in (*_SUMMED, *(_COSTS if costs else ())):
            values = [r[key] for r in rows if r[key] is not None]
            totals[key] = sum(values) if values else None
        firsts = [r["first_token_us"] for r in rows if r["first_token_us"] is not None]
        when = us_to_time(min(firsts)) if firsts else None
        totals["first_token_time"] = when.isoformat() if when else None
        out[run_id] = totals
    return out


def _under(dotted: str | None, ancestor: str) -> bool:
    return dotted is not None and (dotted == ancestor or dotted.startswith(ancestor + "."))


def trace_aggregates(
    store: Store, workspace_id: uuid.UUID, trace_ids: list[uuid.UUID], selects: list[str], prices: Prices
) -> dict[str, dict[str, Any]]:
    """Per trace (by id): the selected ``AGGREGATES`` over all its runs — tokens, cost, the earliest first token."""
    targets: list[Target] = [(str(t), str(t), None) for t in trace_ids]
    totals = subtree_totals(store, workspace_id, targets, "TOTAL_COST" in selects, prices)
    return {tid: {s.lower(): t[s.lower()] for s in selects if s in AGGREGATES} for tid, t in totals.items()}


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
