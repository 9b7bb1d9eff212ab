"""``POST /runs/stats`` (``Client.get_run_stats``): aggregate figures over a run selection (the v1 ``RunQuery``
filters), computed in SQL — counts and sums in one statement, each percentile as one ordered, offset read."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ColumnElement, func, select

from tracetune.query.runs_query import RunQuery, where_clauses
from tracetune.store import Store
from tracetune.store.schema import feedback, runs
from tracetune.timeutil import us_to_time


def _percentile(store: Store, where: list[ColumnElement[bool]], value: Any, count: int, q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of ``value`` in microseconds over the ``count`` rows where it is set, in
    seconds."""
    if count == 0:
        return None
    offset = min(count - 1, int(q * count))
    stmt = select(value.label("v")).where(*where, value.is_not(None)).order_by(value).offset(offset).limit(1)
    rows = store.runs.fetch(stmt)
    return rows[0]["v"] / 1e6 if rows else None


def _totals(store: Store, where: list[ColumnElement[bool]]) -> dict[str, Any]:
    """Counts and sums over the selected runs, in one statement (one pass, no sort)."""
    (totals,) = store.runs.fetch(
        select(
            func.count().label("run_count"),
            func.count(runs.c.error).label("errors"),
            func.count(runs.c.end_us).label("ended"),
            func.count(runs.c.first_token_us).label("streamed"),
            func.sum(runs.c.total_tokens).label("total_tokens"),
            func.sum(runs.c.prompt_tokens).label("prompt_tokens"),
            func.sum(runs.c.completion_tokens).label("completion_tokens"),
            func.count(runs.c.total_tokens).label("with_tokens"),
            func.max(runs.c.start_us).label("last_start_us"),
            func.avg(runs.c.end_us - runs.c.start_us).label("latency_avg_us"),
        ).where(*where)
    )
    return totals


def run_totals(store: Store, workspace_id: uuid.UUID, q: RunQuery) -> dict[str, Any]:
    """The cheap part of :func:`run_stats` (one statement, no percentile): ``run_count``, ``total_tokens``,
    ``error_rate``, ``latency_mean`` (seconds) — the UI's totals line."""
    totals = _totals(store, where_clauses(workspace_id, q))
    n = totals["run_count"]
    mean = totals["latency_avg_us"]
    return {
        "run_count": n,
        "total_tokens": int(totals["total_tokens"] or 0),
        "error_rate": totals["errors"] / n if n else None,
        "latency_mean": float(mean) / 1e6 if mean is not None else None,
    }


def run_stats(store: Store, workspace_id: uuid.UUID, q: RunQuery) -> dict[str, Any]:
    """LangSmith's run stats for the runs ``q`` selects: ``run_count``, latency and first-token p50/p99 (seconds),
    token sums and median, ``error_rate``, ``streaming_rate`` (runs with a first token), ``last_run_start_time``
    and ``feedback_stats`` (per key: ``n``, ``avg``). Costs are not summed (null)."""
    where = where_clauses(workspace_id, q)
    latency = runs.c.end_us - runs.c.start_us
    first_token = runs.c.first_token_us - runs.c.start_us
    totals = _totals(store, where)
    n = totals["run_count"]
    median_tokens = None
    if totals["with_tokens"]:
        offset = totals["with_tokens"] // 2
        stmt = select(runs.c.total_tokens).where(*where, runs.c.total_tokens.is_not(None))
        median_tokens = store.runs.fetch(stmt.order_by(runs.c.total_tokens).offset(offset).limit(1))[0]["total_tokens"]
    selected = select(runs.c.id).where(*where)
    scores = store.runs.fetch(
        select(feedback.c.key, func.count().label("n"), func.avg(feedback.c.score).label("avg"))
        .where(feedback.c.workspace_id == workspace_id, feedback.c.run_id.in_(selected))
        .group_by(feedback.c.key)
    )
    last = us_to_time(totals["last_start_us"])
    return {
        "run_count": n,
        "latency_p50": _percentile(store, where, latency, totals["ended"], 0.5),
        "latency_p99": _percentile(store, where, latency, totals["ended"], 0.99),
        "first_token_p50": _percentile(store, where, first_token, totals["streamed"], 0.5),
        "first_token_p99": _percentile(store, where, first_token, totals["streamed"], 0.99),
        "total_tokens": int(totals["total_tokens"] or 0),
        "prompt_tokens": int(totals["prompt_tokens"] or 0),
        "completion_tokens": int(totals["completion_tokens"] or 0),
        "median_tokens": median_tokens,
        "last_run_start_time": last.isoformat() if last else None,
        "error_rate": totals["errors"] / n if n else None,
        "streaming_rate": totals["streamed"] / n if n else None,
        "feedback_stats": {
            r["key"]: {"n": r["n"], "avg": float(r["avg"]) if r["avg"] is not None else None} for r in scores
        },
        "total_cost": None,
        "prompt_cost": None,
        "completion_cost": None,
    }
