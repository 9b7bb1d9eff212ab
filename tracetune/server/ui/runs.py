"""UI pages over traces: projects, a project's runs (filter + facets, keyset pages), a trace, feedback on a run.
Thin: each calls the query/store functions the LangSmith routes call (``query_runs``, ``run_view``, the store)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from tracetune.errors import InvalidInput, NotFound
from tracetune.query.run_view import run_view
from tracetune.query.runs_query import MAX_LIMIT, RunQuery, query_runs
from tracetune.query.traces import trace_aggregates
from tracetune.server.deps import state
from tracetune.server.ui.actions import add_runs_to_dataset, rate_run
from tracetune.server.ui.pages import render, safe_next, see_other, ui_workspace
from tracetune.server.ui.views import (
    caret_line,
    chat_view,
    check_filter,
    combined_filter,
    correction_view,
    model_name,
    model_parameters,
    run_preview,
    trace_tree,
)
from tracetune.store.workspaces import Workspace

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
LIST_FIELDS = [
    "name", "run_type", "status", "error", "latency", "total_tokens", "feedback_stats", "start_time", "end_time",
    "inputs", "outputs",  # for the input / output preview columns
    "extra", "prompt_tokens", "completion_tokens",  # the model's name (extra.metadata), the token split
    "total_cost",  # the usage's, or from TRACETUNE_MODEL_PRICES
    "trace_id",  # a root's row shows its whole trace's tokens
]  # fmt: skip
SINCE = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}  # the time-range facet: seconds back
SINCE_LABELS = [("", "any time"), ("1h", "last hour"), ("24h", "last 24 hours"), ("7d", "last 7 days"),
                ("30d", "last 30 days")]  # fmt: skip
TREE_FIELDS = ["name", "run_type", "status", "error", "latency", "total_tokens", "start_time", "end_time"]
# the order facet: its value → (the runs query's sort key, direction, label); the column headers link to them
ORDERS = {
    "": ("start_time", "desc", "newest first"),
    "asc": ("start_time", "asc", "oldest first"),
    "latency": ("latency", "desc", "slowest first"),
    "latency-asc": ("latency", "asc", "fastest first"),
    "tokens": ("total_tokens", "desc", "most tokens first"),
    "tokens-asc": ("total_tokens", "asc", "fewest tokens first"),
}


@router.get("/", response_class=HTMLResponse)
def projects_page(request: Request, ws: Workspace = Depends(ui_workspace)) -> HTMLResponse:
    projects = state(request).store.projects.list(ws.id, include_stats=True, limit=500)
    return render(request, "projects.html", projects=projects, base_url=str(request.base_url))


@dataclass
class Facets:
    """What the runs page narrows the runs by (its query parameters): the filter, run type, errors, feedback, root
    runs, time range, order and live refresh."""

    filter: str = ""
    run_type: str = ""
    errors: str = ""
    feedback: str = ""
    root: str = ""
    since: str = ""
    order: str = ""
    live: str = ""

    def __post_init__(self) -> None:
        self.since = self.since if self.since in SINCE else ""
        self.order = self.order if self.order in ORDERS else ""
        self.since_us = int((time.time() - SINCE[self.since]) * 1_000_000) if self.since else None

    def query(self, project_id: uuid.UUID, **more: Any) -> RunQuery:
        """The runs query they make (``more``: cursor, limit, select)."""
        return RunQuery(
            project_ids=[project_id], run_type=self.run_type or None,
            error={"only": True, "none": False}.get(self.errors), is_root=True if self.root else None,
            filter=combined_filter(self.filter, self.feedback), start_time_us=self.since_us,
            sort=ORDERS[self.order][0], order=ORDERS[self.order][1], **more,
        )  # fmt: skip

    @property
    def filter_for_dataset(self) -> str:
        """Every facet as one filter (the dataset builder's link, redrawn with the runs on Apply)."""
        since = datetime.fromtimestamp(self.since_us / 1e6, UTC).isoformat() if self.since_us is not None else None
        found = combined_filter(self.filter, self.feedback, errors=self.errors, root=bool(self.root), since=since)
        return found or ""

    def kept(self) -> dict[str, str]:
        """The facets that are set, as query parameters."""
        return {k: v for k, v in vars(self).items() if v and k != "since_us"}


def facets_of(
    filter: str = "",
    run_type: str = "",
    errors: str = "",
    feedback: str = "",
    root: str = "",
    since: str = "",
    order: str = "",
    live: str = "",
) -> Facets:
    return Facets(filter, run_type, errors, feedback, root, since, order, live)


@router.get("/projects/{project_id}", response_class=HTMLResponse)
def runs_page(
    project_id: uuid.UUID,
    request: Request,
    ws: Workspace = Depends(ui_workspace),
    facets: Facets = Depends(facets_of),
    cursor: str = "",
    trail: str = "",
    added: str = "",
    added_runs: int = 0,
) -> HTMLResponse:
    store = state(request).store
    project = store.projects.get(ws.id, project_id)
    runs: list[dict[str, Any]] = []
    next_cursor = None
    filter_error = None
    try:
        check_filter(facets.filter)  # on its own: an error's position is in the text the user typed
        query = facets.query(project_id, cursor=cursor or None, limit=PAGE_SIZE, select=LIST_FIELDS)
        page = query_runs(store, ws.id, query, prices=state(request).settings.model_prices)
        runs, next_cursor = page.runs, page.next_cursor
        roots = sorted({uuid.UUID(r["trace_id"]) for r in runs if not r.get("parent_run_id")})
        traces = trace_aggregates(store, ws.id, roots, ["TOTAL_TOKENS"], None) if roots else {}
        for row in runs:
            row["preview"] = run_preview(row)
            row["model_name"] = model_name(row)
            root = not row.get("parent_run_id")
            row["trace_tokens"] = (traces.get(row["trace_id"]) or {}).get("total_tokens") if root else None
    except InvalidInput as exc:
        if exc.field not in ("filter", "cursor"):
            raise
        filter_error = exc
    kept = facets.kept()
    # the pages before this one, newest last: "Previous" goes back one, "Next" adds this one
    before = [c for c in trail.split(" ") if c] if cursor else []
    previous = before[-1] if before and before[-1] != "-" else ""  # "-": the first page (no cursor)
    return render(
        request,
        "runs.html",
        status_code=400 if filter_error else 200,
        project=project,
        facets=facets,
        runs=runs,
        cursor=cursor,
        next_cursor=next_cursor,
        query_first=urlencode(kept),
        query_next=urlencode({**kept, "cursor": next_cursor or "", "trail": " ".join([*before, cursor or "-"])}),
        query_previous=urlencode({**kept, "cursor": previous, "trail": " ".join(before[:-1])}) if cursor else None,
        page_number=len(before) + 1,
        here=f"/projects/{project_id}?{urlencode({**kept, 'cursor': cursor, 'trail': trail})}",
        stats_url=f"/projects/{project_id}/stats?{urlencode(kept)}",
        since_choices=SINCE_LABELS,
        orders=[(value, label) for value, (_, _, label) in ORDERS.items()],
        sort_links=_sort_links(project_id, kept),
        filter_error=filter_error,
        filter_text=facets.filter,
        caret=caret_line(filter_error.position if filter_error else None),
        datasets=store.datasets.list_datasets(ws.id, limit=100),
        added=_added(store, ws, added, added_runs),
    )


def _sort_links(project_id: uuid.UUID, kept: dict[str, str]) -> dict[str, str]:
    """Per sortable column, the page sorted by it: descending first, ascending when it already is."""
    links = {}
    for column, desc, asc in (("latency", "latency", "latency-asc"), ("tokens", "tokens", "tokens-asc"),
                              ("start", "", "asc")):  # fmt: skip
        order = asc if kept.get("order", "") == desc else desc
        params = {k: v for k, v in kept.items() if k != "order"} | ({"order": order} if order else {})
        links[column] = f"/projects/{project_id}?{urlencode(params)}"
    return links


def _added(store: Any, ws: Workspace, version_id: str, count: int) -> dict[str, Any] | None:
    """The dataset version ticked runs were just added as (the redirect names it), for the notice above the table."""
    try:
        version = store.datasets.get(ws.id, uuid.UUID(version_id)) if version_id else None
    except (ValueError, NotFound):
        return None
    return {**version, "count": count} if version else None


@router.get("/projects/{project_id}/stats", response_class=HTMLResponse)
def runs_stats(
    project_id: uuid.UUID, request: Request, ws: Workspace = Depends(ui_workspace), facets: Facets = Depends(facets_of)
) -> HTMLResponse:
    """The totals of the runs the facets select (count, mean latency, tokens, error rate: one statement): a fragment
    the runs page loads after it is shown, so that counting never slows the table down."""
    from tracetune.query.run_stats import run_totals

    store = state(request).store
    store.projects.get(ws.id, project_id)
    try:
        check_filter(facets.filter)
        stats = run_totals(store, ws.id, facets.query(project_id))
    except InvalidInput:
        stats = None  # the table says what is wrong with the filter
    return render(request, "_run_stats.html", stats=stats)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def trace_page(run_id: uuid.UUID, request: Request, ws: Workspace = Depends(ui_workspace)) -> HTMLResponse:
    return _trace(request, ws, run_id)


@router.post("/runs/{run_id}/feedback", response_model=None)
def feedback_post(
    run_id: uuid.UUID,
    request: Request,
    ws: Workspace = Depends(ui_workspace),
    kind: str = Form(...),
    correction: str = Form(""),
    comment: str = Form(""),
    back: str = Form(""),
) -> Response:
    """Rate or correct a run; back to the run's page, or to ``back`` (a local path: the review queue it came from)."""
    st = state(request)
    run = _run(st.store, ws, run_id)
    try:
        rate_run(st.store, st.ingest, ws, run, kind, correction, comment)
    except InvalidInput as exc:
        return _trace(request, ws, run_id, status_code=400, feedback_error=exc, correction_text=correction,
                      note_text=comment)  # fmt: skip
    return see_other(safe_next(back) if back else f"/runs/{run_id}")


@router.post("/runs/{run_id}/add-to-dataset", response_model=None)
def add_to_dataset_post(
    run_id: uuid.UUID, request: Request, ws: Workspace = Depends(ui_workspace), dataset: str = Form("")
) -> Response:
    """Add the run to a dataset (made when missing) as an example; back to the run, which names the dataset."""
    st = state(request)
    run = _run(st.store, ws, run_id)
    try:
        row = add_runs_to_dataset(st.store, ws, [run], dataset)
    except InvalidInput as exc:
        return _trace(request, ws, run_id, status_code=400, dataset_error=exc)
    return see_other(f"/runs/{run_id}?added={quote(str(row['name']))}")


@router.post("/projects/{project_id}/rate", response_model=None)
async def bulk_rate(project_id: uuid.UUID, request: Request, ws: Workspace = Depends(ui_workspace)) -> Response:
    """Rate the runs ticked in the runs table (``run_id``, repeated) good or bad (``kind``) at once, as one rating
    each would; back to the table (``back``)."""
    form = await request.form()
    kind = str(form.get("kind") or "")
    if kind not in ("up", "down"):
        raise InvalidInput(f"unknown rating {kind!r}; expected up or down", field="kind")
    st = state(request)
    for run in _ticked(st.store, ws, form, "rate"):
        rate_run(st.store, st.ingest, ws, run, kind)
    return see_other(safe_next(str(form.get("back") or f"/projects/{project_id}")))


@router.post("/projects/{project_id}/add-to-dataset", response_model=None)
async def bulk_add_to_dataset(
    project_id: uuid.UUID, request: Request, ws: Workspace = Depends(ui_workspace)
) -> Response:
    """Add the runs ticked in the runs table to the dataset named ``dataset`` (made when missing) as examples, in
    one new version; back to the table (``back``), which says how many went where."""
    form = await request.form()
    st = state(request)
    runs = _ticked(st.store, ws, form, "add to a dataset")
    row = add_runs_to_dataset(st.store, ws, runs, str(form.get("dataset") or ""))
    back = safe_next(str(form.get("back") or f"/projects/{project_id}"))
    sep = "&" if "?" in back else "?"
    return see_other(f"{back}{sep}{urlencode({'added': row['id'], 'added_runs': len(runs)})}")


def _ticked(store: Any, ws: Workspace, form: Any, what: str) -> list[dict[str, Any]]:
    """The runs ticked in the runs table's form (``run_id``, repeated)."""
    ids = [str(v) for v in form.getlist("run_id")]
    if not ids:
        raise InvalidInput(f"tick the runs to {what} first", field="run_id")
    if len(ids) > MAX_LIMIT:
        raise InvalidInput(f"tick at most {MAX_LIMIT} runs at once", field="run_id")
    wanted = []
    for text in ids:
        try:
            wanted.append(uuid.UUID(text))
        except ValueError:
            raise InvalidInput(f"not a run id: {text!r}", field="run_id") from None
    found = {r["id"]: r for r in query_runs(store, ws.id, RunQuery(run_ids=wanted, limit=len(wanted))).runs}  # one read
    missing = [str(i) for i in wanted if str(i) not in found]
    if missing:
        raise NotFound(f"run {missing[0]} not found", field="run_id")
    return [found[str(i)] for i in dict.fromkeys(wanted)]


def _run(store: Any, ws: Workspace, run_id: uuid.UUID, prices: Any = None) -> dict[str, Any]:
    row = store.runs.get(ws.id, run_id)
    if row is None:
        raise NotFound(f"run {run_id} not found", field="run_id")
    return run_view(row, feedback_stats=store.feedback.stats_for_runs(ws.id, [run_id]).get(run_id), prices=prices)


def _trace(
    request: Request,
    ws: Workspace,
    run_id: uuid.UUID,
    *,
    status_code: int = 200,
    feedback_error: InvalidInput | None = None,
    correction_text: str | None = None,
    note_text: str | None = None,
    dataset_error: InvalidInput | None = None,
) -> HTMLResponse:
    context = trace_context(request, ws, run_id, feedback_error=feedback_error, correction_text=correction_text)
    datasets = [d["name"] for d in state(request).store.datasets.list_datasets(ws.id, limit=100)]
    return render(request, "trace.html", status_code=status_code, dataset_error=dataset_error, datasets=datasets,
                  added=request.query_params.get("added"), note_text=note_text, **context)  # fmt: skip


def trace_context(
    request: Request,
    ws: Workspace,
    run_id: uuid.UUID,
    *,
    feedback_error: InvalidInput | None = None,
    correction_text: str | None = None,
) -> dict[str, Any]:
    """What a run's page shows (its trace tree, chat, feedback, correction editor): the trace page's and the review
    queue's."""
    store = state(request).store
    run = _run(store, ws, run_id, state(request).settings.model_prices)
    trace = query_runs(
        store,
        ws.id,
        RunQuery(trace_id=uuid.UUID(run["trace_id"]), order="asc", limit=MAX_LIMIT, select=TREE_FIELDS),
    )
    feedback = store.feedback.list(ws.id, run_ids=[run_id], limit=200)
    chat = chat_view(run)
    corrections = [f["correction"] for f in feedback if f["correction"] is not None]  # oldest first, any key
    last = corrections[-1] if corrections else None
    if correction_text is None:  # the editor starts from the newest correction, else from the run's answer
        if last is None:
            correction_text = chat.answer_text() if chat else ""
        else:
            correction_text = last if isinstance(last, str) else json.dumps(last, indent=2)
    project_name = None
    if run.get("session_id"):
        found = store.projects.list(ws.id, ids=[uuid.UUID(run["session_id"])], limit=1)
        project_name = found[0]["name"] if found else None
    return {
        "run": run,
        "tree": trace_tree(trace.runs),
        "truncated": trace.next_cursor is not None,
        "chat": chat,
        "model_name": model_name(run),
        "model_parameters": model_parameters(run),
        "feedback": feedback,
        "feedback_error": feedback_error,
        "correction_text": correction_text,
        "correction": correction_view(last, chat.answer if chat else None) if last is not None else None,
        "project_name": project_name,
    }
