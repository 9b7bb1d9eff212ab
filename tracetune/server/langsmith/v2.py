"""LangSmith's v2 read API under /api/v2 (what ``client.runs``, ``client.traces`` and ``client.threads`` of the
current SDK call): the same store, filter language, indexes and workspace isolation as v1, v2's shapes.

Queries answer ``{"items": [...], "next_cursor": ...}``, or — asked with ``Accept: text/event-stream`` — the
same page as server-sent JSON Patch events (``event: data`` with ``[{"op": "add", "path": "/items/-", ...}]``,
then ``/next_cursor``, then ``event: end``), which the SDK's ``streaming`` resources read. Semantic search
(``sem_filter``, ``ai_search``) is a 501, as LangSmith answers where it lacks it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from pydantic import Field

from tracetune.errors import InvalidInput, NotFound, NotSupported
from tracetune.query.filter_sql import FeedbackWindow
from tracetune.query.run_view import run_view
from tracetune.query.runs_query import MAX_LIMIT, RunQuery
from tracetune.query.threads import ThreadQuery, check_trace_selects, query_threads, thread_traces
from tracetune.query.traces import query_runs_v2, query_traces, trace_runs
from tracetune.query.v2_runs import check_selects, v1_fields, v2_run
from tracetune.server.deps import state, workspace
from tracetune.server.langsmith.protocol import Lenient
from tracetune.store import Store
from tracetune.store.rows import RunRow
from tracetune.store.workspaces import Workspace
from tracetune.timeutil import time_to_us

router = APIRouter(prefix="/api/v2")

DEFAULT_WINDOW: Final = timedelta(days=1)  # v2's default min_start_time: a day before the request
EVENT_STREAM: Final = "text/event-stream"


class _Semantic(Lenient):
    ai_search: str | None = None
    sem_filter: str | None = None

    def refuse_semantic(self) -> None:
        for name in ("ai_search", "sem_filter"):
            if getattr(self, name) is not None:
                raise NotSupported(
                    f"{name} (semantic search) is not available on tracetune; narrow with filter, trace_filter "
                    'or tree_filter (e.g. search("text"))',
                    field=name,
                )


class _Window(_Semantic):
    min_start_time: datetime | None = None
    max_start_time: datetime | None = None
    min_feedback_modified_at: datetime | None = None
    max_feedback_modified_at: datetime | None = None
    cursor: str | None = None
    trace_filter: str | None = None
    tree_filter: str | None = None
    selects: list[str] | None = None

    def start_bounds(self) -> tuple[int, int]:
        now = datetime.now(UTC)
        low = time_to_us(self.min_start_time or now - DEFAULT_WINDOW, "min_start_time")
        high = time_to_us(self.max_start_time or now, "max_start_time")
        if low > high:
            raise InvalidInput("min_start_time is after max_start_time", field="min_start_time")
        return low, high

    def feedback_window(self) -> FeedbackWindow | None:
        if self.min_feedback_modified_at is None and self.max_feedback_modified_at is None:
            return None
        return FeedbackWindow(self.min_feedback_modified_at, self.max_feedback_modified_at)


class RunQueryV2(_Window):
    project_ids: list[uuid.UUID] | None = None
    reference_dataset_id: uuid.UUID | None = None
    reference_examples: list[uuid.UUID] | None = None
    ids: list[uuid.UUID] | None = None
    trace_id: uuid.UUID | None = None
    run_type: str | None = None
    is_root: bool | None = None
    has_error: bool | None = None
    filter: str | None = None
    include_subtree_usage: bool | None = None
    page_size: int = Field(default=100, ge=1, le=MAX_LIMIT)

    def to_query(self, experiments: list[uuid.UUID] | None = None) -> RunQuery:
        """The v1 query; ``experiments``: the projects ``reference_dataset_id`` names (already resolved, and
        narrowed to ``project_ids`` when both are given)."""
        self.refuse_semantic()
        project_ids = experiments if experiments is not None else self.project_ids
        if not project_ids:
            raise InvalidInput(
                "project_ids (or reference_dataset_id) is required: the tracing projects to query", field="project_ids"
            )
        low, high = self.start_bounds()
        return RunQuery(
            project_ids=project_ids,
            run_ids=self.ids,
            run_type=self.run_type.lower() if self.run_type else None,
            is_root=self.is_root,
            error=self.has_error,
            trace_id=self.trace_id,
            start_time_us=low,
            end_time_us=high,
            filter=self.filter,
            trace_filter=self.trace_filter,
            tree_filter=self.tree_filter,
            tree_includes_self=True,
            reference_example_ids=self.reference_examples,
            feedback_window=self.feedback_window(),
            limit=self.page_size,
            cursor=self.cursor,
        )


class TraceQuery(_Window):
    project_id: uuid.UUID | None = None
    trace_ids: list[uuid.UUID] | None = None
    page_size: int = Field(default=20, ge=1, le=100)

    def to_query(self) -> RunQuery:
        self.refuse_semantic()
        if self.project_id is None:
            raise InvalidInput("project_id is required: the tracing project to query", field="project_id")
        low, high = self.start_bounds()
        return RunQuery(
            project_ids=[self.project_id],
            run_ids=self.trace_ids,
            is_root=True,
            start_time_us=low,
            end_time_us=high,
            trace_filter=self.trace_filter,
            tree_filter=self.tree_filter,
            tree_includes_self=True,
            feedback_window=self.feedback_window(),
            limit=self.page_size,
            cursor=self.cursor,
        )


class ThreadQueryBody(_Window):
    project_id: uuid.UUID | None = None
    filter: str | None = None
    thread_filter: str | None = None
    page_size: int = Field(default=20, ge=1, le=100)

    def to_query(self) -> ThreadQuery:
        self.refuse_semantic()
        if self.thread_filter is not None:
            raise NotSupported(
                "thread_filter is not available: filter the threads' root runs with filter, trace_filter or "
                "tree_filter",
                field="thread_filter",
            )
        if self.project_id is None:
            raise InvalidInput("project_id is required: the tracing project to query", field="project_id")
        low, high = self.start_bounds()
        return ThreadQuery(
            project_id=self.project_id,
            min_start_us=low,
            max_start_us=high,
            filter=self.filter,
            trace_filter=self.trace_filter,
            tree_filter=self.tree_filter,
            page_size=self.page_size,
            cursor=self.cursor,
        )


def _page(request: Request, items: list[dict[str, Any]], next_cursor: str | None) -> Response:
    """A page as JSON, or as the JSON Patch event stream when the caller accepts only that."""
    if EVENT_STREAM not in request.headers.get("accept", ""):  # orjson: a page of 100 full runs is large
        return Response(orjson.dumps({"items": items, "next_cursor": next_cursor}), media_type="application/json")

    def events() -> Iterator[bytes]:
        for item in items:
            yield _event("data", [{"op": "add", "path": "/items/-", "value": item}])
        if next_cursor:
            yield _event("data", [{"op": "add", "path": "/next_cursor", "value": next_cursor}])
        yield _event("end", {})

    return StreamingResponse(events(), media_type=EVENT_STREAM)


def _event(name: str, data: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


# -- runs ----------------------------------------------------------------------------------------------------


@router.post("/runs/query")
async def runs_query(body: RunQueryV2, request: Request, ws: Workspace = Depends(workspace)) -> Response:
    st = state(request)
    experiments = None
    if body.reference_dataset_id is not None:  # the runs of the dataset's experiments
        st.store.datasets.dataset(ws.id, body.reference_dataset_id)  # 404 for a dataset not in the workspace
        found = st.store.projects.list(ws.id, reference_dataset_ids=[body.reference_dataset_id], limit=1_000_000)
        wanted = set(body.project_ids or ())
        experiments = [p["id"] for p in found if not wanted or p["id"] in wanted]
        if not experiments:
            return _page(request, [], None)
    q = body.to_query(experiments)
    selects = check_selects(body.selects)
    items, cursor = await run_in_threadpool(
        lambda: query_runs_v2(
            st.store, ws.id, q, selects, st.settings.model_prices, subtree_usage=bool(body.include_subtree_usage)
        )
    )
    return _page(request, items, cursor)


def _run_in_project(store: Store, ws: Workspace, run_id: uuid.UUID, project_id: uuid.UUID) -> RunRow:
    row = store.runs.get(ws.id, run_id)
    if row is None or row.get("project_id") != project_id:
        raise NotFound(f"run {run_id} not found in project {project_id}", field="run_id")
    return row


@router.get("/runs/{run_id}/url")
def runs_url(
    run_id: uuid.UUID,
    request: Request,
    project_id: uuid.UUID,
    trace_id: uuid.UUID,
    ws: Workspace = Depends(workspace),
) -> dict[str, Any]:
    _run_in_project(state(request).store, ws, run_id, project_id)
    return {"url": f"{str(request.base_url).rstrip('/')}/runs/{run_id}"}


@router.get("/runs/{run_id}")
def runs_retrieve(
    run_id: uuid.UUID,
    request: Request,
    project_id: uuid.UUID,
    selects: list[str] | None = Query(default=None),
    start_time: datetime | None = None,
    ws: Workspace = Depends(workspace),
) -> dict[str, Any]:
    st = state(request)
    chosen = check_selects(selects)
    row = _run_in_project(st.store, ws, run_id, project_id)
    wanted = set(v1_fields(chosen))
    stats = st.store.feedback.stats_for_runs(ws.id, [run_id]).get(run_id) if "feedback_stats" in wanted else None
    view = run_view(row, feedback_stats=stats, prices=st.settings.model_prices)
    return v2_run(view, chosen)


# -- traces --------------------------------------------------------------------------------------------------


@router.post("/traces/query")
async def traces_query(body: TraceQuery, request: Request, ws: Workspace = Depends(workspace)) -> Response:
    st = state(request)
    q = body.to_query()
    selects = check_selects(body.selects)
    items, cursor = await run_in_threadpool(query_traces, st.store, ws.id, q, selects, st.settings.model_prices)
    return _page(request, items, cursor)


@router.get("/traces/{trace_id}/runs")
def traces_runs(
    trace_id: uuid.UUID,
    request: Request,
    project_id: uuid.UUID,
    filter: str | None = None,
    min_start_time: datetime | None = None,
    max_start_time: datetime | None = None,
    selects: list[str] | None = Query(default=None),
    ws: Workspace = Depends(workspace),
) -> dict[str, Any]:
    st = state(request)
    if (min_start_time is None) != (max_start_time is None):
        missing = "max_start_time" if max_start_time is None else "min_start_time"
        raise InvalidInput("min_start_time and max_start_time go together: give both or neither", field=missing)
    q = RunQuery(
        project_ids=[project_id],
        trace_id=trace_id,
        filter=filter,
        start_time_us=time_to_us(min_start_time, "min_start_time") if min_start_time else None,
        end_time_us=time_to_us(max_start_time, "max_start_time") if max_start_time else None,
    )
    return {"items": trace_runs(st.store, ws.id, q, check_selects(selects), st.settings.model_prices)}


# -- threads -------------------------------------------------------------------------------------------------


@router.post("/threads/query")
async def threads_query(body: ThreadQueryBody, request: Request, ws: Workspace = Depends(workspace)) -> Response:
    st = state(request)
    q = body.to_query()
    items, cursor = await run_in_threadpool(query_threads, st.store, ws.id, q, st.settings.model_prices)
    return _page(request, items, cursor)


@router.get("/threads/{thread_id}/traces")
def threads_traces(
    thread_id: str,
    request: Request,
    project_id: uuid.UUID,
    cursor: str | None = None,
    filter: str | None = None,
    trace_filter: str | None = None,
    tree_filter: str | None = None,
    page_size: int = Query(default=20, ge=1, le=100),
    selects: list[str] | None = Query(default=None),
    ws: Workspace = Depends(workspace),
) -> dict[str, Any]:
    st = state(request)
    q = RunQuery(
        project_ids=[project_id],
        filter=filter,
        trace_filter=trace_filter,
        tree_filter=tree_filter,
        tree_includes_self=True,
        limit=page_size,
        cursor=cursor,
    )
    items, next_cursor = thread_traces(
        st.store, ws.id, thread_id, q, check_trace_selects(selects), st.settings.model_prices
    )
    return {"items": items, "next_cursor": next_cursor}
