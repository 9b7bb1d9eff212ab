"""LangSmith v2 threads: ``POST /api/v2/threads/query`` (``query_threads``) and ``GET
/api/v2/threads/{id}/traces`` (``thread_traces``).

A thread is the root runs of one project that share a ``thread_id`` (set on ingest from the run's metadata
``thread_id`` / ``session_id`` / ``conversation_id``); each root is a turn. A thread is listed when one of its
roots in the time window passes the filters; its summary covers all of its roots in the window. Threads come
newest activity first, keyset-paged on (last turn's start, thread id); a thread's traces come in turn order.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from sqlalchemy import and_, func, or_, select

from tracetune.errors import InvalidInput, shown
from tracetune.query.runs_query import RunQuery, decode_key_cursor, encode_cursor, where_clauses
from tracetune.query.traces import Prices, query_runs_v2, trace_aggregates
from tracetune.query.v2_runs import preview
from tracetune.store import Store
from tracetune.store.schema import runs
from tracetune.timeutil import us_to_time

# ThreadTraceSelectField → the run select it is read from (and the key it has, when not the lower-cased name).
_TRACE_FIELDS: Final[dict[str, tuple[str, str]]] = {
    "THREAD_ID": ("THREAD_ID", "thread_id"),
    "TRACE_ID": ("TRACE_ID", "trace_id"),
    "NAME": ("NAME", "name"),
    "START_TIME": ("START_TIME", "start_time"),
    "END_TIME": ("END_TIME", "end_time"),
    "LATENCY": ("LATENCY_SECONDS", "latency"),
    "FIRST_TOKEN_TIME": ("FIRST_TOKEN_TIME", "first_token_time"),
    "INPUTS": ("INPUTS", "inputs"),
    "OUTPUTS": ("OUTPUTS", "outputs"),
    "INPUTS_PREVIEW": ("INPUTS_PREVIEW", "inputs_preview"),
    "OUTPUTS_PREVIEW": ("OUTPUTS_PREVIEW", "outputs_preview"),
    "ERROR": ("ERROR", "error"),
    "ERROR_PREVIEW": ("ERROR_PREVIEW", "error_preview"),
    "PROMPT_TOKENS": ("PROMPT_TOKENS", "prompt_tokens"),
    "COMPLETION_TOKENS": ("COMPLETION_TOKENS", "completion_tokens"),
    "TOTAL_TOKENS": ("TOTAL_TOKENS", "total_tokens"),
    "PROMPT_COST": ("PROMPT_COST", "prompt_cost"),
    "COMPLETION_COST": ("COMPLETION_COST", "completion_cost"),
    "TOTAL_COST": ("TOTAL_COST", "total_cost"),
    "PROMPT_TOKEN_DETAILS": ("PROMPT_TOKEN_DETAILS", "prompt_token_details"),
    "COMPLETION_TOKEN_DETAILS": ("COMPLETION_TOKEN_DETAILS", "completion_token_details"),
    "PROMPT_COST_DETAILS": ("PROMPT_COST_DETAILS", "prompt_cost_details"),
    "COMPLETION_COST_DETAILS": ("COMPLETION_COST_DETAILS", "completion_cost_details"),
}
TRACE_SELECTS: Final = frozenset({*_TRACE_FIELDS, "TURN_NUMBER", "OP"})


@dataclass
class ThreadQuery:
    project_id: uuid.UUID
    min_start_us: int
    max_start_us: int
    filter: str | None = None
    trace_filter: str | None = None
    tree_filter: str | None = None
    page_size: int = 20
    cursor: str | None = None


def _roots(q: ThreadQuery) -> RunQuery:
    return RunQuery(
        project_ids=[q.project_id],
        is_root=True,
        start_time_us=q.min_start_us,
        end_time_us=q.max_start_us,
    )


def query_threads(
    store: Store, workspace_id: uuid.UUID, q: ThreadQuery, prices: Prices = None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of thread summaries and the next page's cursor (None on the last)."""
    window = where_clauses(workspace_id, _roots(q))
    matching = select(runs.c.thread_id).where(
        *where_clauses(
            workspace_id,
            replace(
                _roots(q),
                filter=q.filter,
                trace_filter=q.trace_filter,
                tree_filter=q.tree_filter,
                tree_includes_self=True,
            ),
        ),
        runs.c.thread_id.is_not(None),
    )
    summary = (
        select(
            runs.c.thread_id,
            func.count().label("count"),
            func.min(runs.c.start_us).label("first_us"),
            func.max(runs.c.start_us).label("last_us"),
            func.count(runs.c.error).label("errored"),
        )
        .where(*window, runs.c.thread_id.in_(matching))
        .group_by(runs.c.thread_id)
        .subquery()
    )
    stmt = select(summary)
    if q.cursor:
        c_last, c_thread = decode_key_cursor(q.cursor)
        stmt = stmt.where(
            or_(summary.c.last_us < c_last, and_(summary.c.last_us == c_last, summary.c.thread_id < c_thread))
        )
    stmt = stmt.order_by(summary.c.last_us.desc(), summary.c.thread_id.desc()).limit(q.page_size + 1)
    rows = store.runs.fetch(stmt)
    more = len(rows) > q.page_size
    rows = rows[: q.page_size]
    items = _summaries(store, workspace_id, q, rows, prices)
    cursor = encode_cursor(rows[-1]["last_us"], rows[-1]["thread_id"]) if more and rows else None
    return items, cursor


def _iso(us: int | None) -> str | None:
    when = us_to_time(us)
    return when.isoformat() if when else None


def _summaries(
    store: Store, workspace_id: uuid.UUID, q: ThreadQuery, rows: list[dict[str, Any]], prices: Prices
) -> list[dict[str, Any]]:
    """The thread objects for one page of grouped rows: first/last turn, previews, errors, tokens, feedback."""
    if not rows:
        return []
    threads = [r["thread_id"] for r in rows]
    turns = store.runs.fetch(
        select(runs.c.id, runs.c.thread_id, runs.c.start_us, runs.c.error)
        .where(*where_clauses(workspace_id, _roots(q)), runs.c.thread_id.in_(threads))
        .order_by(runs.c.start_us, runs.c.id)
    )
    by_thread: dict[str, list[dict[str, Any]]] = {}
    for turn in turns:
        by_thread.setdefault(turn["thread_id"], []).append(turn)
    first_ids = [by_thread[t][0]["id"] for t in threads]
    last_ids = [by_thread[t][-1]["id"] for t in threads]
    io = {
        r["id"]: r
        for r in store.runs.fetch(
            select(runs.c.id, runs.c.inputs, runs.c.outputs).where(
                runs.c.workspace_id == workspace_id, runs.c.id.in_([*first_ids, *last_ids])
            )
        )
    }
    all_ids = [t["id"] for t in turns]
    totals = trace_aggregates(store, workspace_id, all_ids, ["TOTAL_TOKENS", "TOTAL_COST"], prices)
    stats = store.feedback.stats_for_runs(workspace_id, all_ids)
    out = []
    for row in rows:
        mine = by_thread[row["thread_id"]]
        first, last = mine[0], mine[-1]
        errored = [t for t in mine if t["error"] is not None]
        tokens = [totals[str(t["id"])]["total_tokens"] for t in mine]
        costs = [totals[str(t["id"])]["total_cost"] for t in mine]
        out.append(
            {
                "thread_id": row["thread_id"],
                "count": row["count"],
                "start_time": _iso(row["first_us"]),
                "min_start_time": _iso(row["first_us"]),
                "max_start_time": _iso(row["last_us"]),
                "first_trace_id": str(first["id"]),
                "last_trace_id": str(last["id"]),
                "trace_id": str(last["id"]),
                "first_inputs": preview(io[first["id"]]["inputs"]),
                "last_outputs": preview(io[last["id"]]["outputs"]),
                "last_error": preview(errored[-1]["error"]) if errored else None,
                "num_errored_turns": row["errored"],
                "total_tokens": _sum(tokens),
                "total_cost": _sum(costs),
                "feedback_stats": _merged_stats([stats[t["id"]] for t in mine if t["id"] in stats]),
            }
        )
    return out


def _sum(values: list[Any]) -> Any:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _merged_stats(per_run: list[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]] | None:
    """Feedback stats of several runs as one: counts summed, means weighted by their counts."""
    merged: dict[str, dict[str, Any]] = {}
    for stats in per_run:
        for key, s in stats.items():
            into = merged.setdefault(key, {"n": 0, "avg": None, "_sum": 0.0, "_scored": 0})
            into["n"] += s["n"]
            if s.get("avg") is not None:
                into["_sum"] += s["avg"] * s["n"]
                into["_scored"] += s["n"]
    for into in merged.values():
        scored = into.pop("_scored")
        total = into.pop("_sum")
        into["avg"] = total / scored if scored else None
    return merged or None


def check_trace_selects(selects: list[str] | None) -> list[str]:
    chosen = list(selects) if selects else ["TRACE_ID"]
    for name in chosen:
        if name not in TRACE_SELECTS:
            raise InvalidInput(
                f"{shown(name)} is not a thread trace field (e.g. TRACE_ID, INPUTS, OUTPUTS, TURN_NUMBER)",
                field="selects",
            )
    return chosen


def thread_traces(
    store: Store,
    workspace_id: uuid.UUID,
    thread_id: str,
    q: RunQuery,
    selects: list[str],
    prices: Prices = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a thread's traces (its root runs, filtered by ``q``) in turn order, with the next cursor."""
    q = replace(q, is_root=True, thread_id=thread_id, order="asc")
    run_selects = sorted({"TRACE_ID", "START_TIME", *(_TRACE_FIELDS[s][0] for s in selects if s in _TRACE_FIELDS)})
    roots, cursor = query_runs_v2(store, workspace_id, q, run_selects, prices)
    wanted_totals: list[str] = [s for s in ("TOTAL_TOKENS", "TOTAL_COST") if s in selects]
    totals = (
        trace_aggregates(store, workspace_id, [uuid.UUID(r["id"]) for r in roots], wanted_totals, prices)
        if wanted_totals
        else {}
    )
    turn = _turns_before(store, workspace_id, q, roots[0]) if roots and "TURN_NUMBER" in selects else 0
    items = []
    for index, root in enumerate(roots):
        item: dict[str, Any] = {"trace_id": root["trace_id"]}
        for name in selects:
            if name == "TURN_NUMBER":
                item["turn_number"] = turn + index + 1
            elif name == "OP":
                item["op"] = None
            elif name in wanted_totals:
                key = _TRACE_FIELDS[name][1]
                item[key] = totals[root["id"]][key]
            else:
                source, key = _TRACE_FIELDS[name]
                item[key] = root[source.lower() if source != "LATENCY_SECONDS" else "latency_seconds"]
        items.append(item)
    return items, cursor


def _turns_before(store: Store, workspace_id: uuid.UUID, q: RunQuery, first: Mapping[str, Any]) -> int:
    """How many of the thread's roots (any filter aside) started before ``first``."""
    start_us = store.runs.fetch(
        select(runs.c.start_us).where(runs.c.workspace_id == workspace_id, runs.c.id == uuid.UUID(first["id"]))
    )[0]["start_us"]
    before = store.runs.fetch(
        select(func.count().label("n")).where(
            runs.c.workspace_id == workspace_id,
            runs.c.project_id.in_(q.project_ids or []),
            runs.c.parent_run_id.is_(None),
            runs.c.thread_id == q.thread_id,
            or_(runs.c.start_us < start_us, and_(runs.c.start_us == start_us, runs.c.id < uuid.UUID(first["id"]))),
        )
    )
    return int(before[0]["n"])
