"""LangSmith-compatible routes under /api/v1. Thin: parse, call one service, shape the answer."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response

from tracetune.errors import InvalidInput, NotFound, NotSupported
from tracetune.ingest.records import parse_uuid
from tracetune.query.run_stats import run_stats
from tracetune.query.run_view import run_view
from tracetune.query.runs_query import query_runs
from tracetune.server.deps import parse_json, state, with_body, workspace
from tracetune.server.langsmith.protocol import (
    INFO,
    FeedbackConfigCreate,
    FeedbackConfigPatch,
    FeedbackTokenCreate,
    FeedbackUpdate,
    RunQueryBody,
    SessionCreate,
    SessionUpdate,
    TokenFeedback,
    feedback_config_view,
    feedback_view,
    session_view,
    token_view,
)
from tracetune.store.sqlutil import utcnow
from tracetune.store.workspaces import Workspace

router = APIRouter(prefix="/api/v1")

ACCEPTED = {"status": "accepted"}


@router.get("/info")
def info() -> dict[str, Any]:
    return INFO


# -- ingest ------------------------------------------------------------------------------------------------


@router.post("/runs/multipart", status_code=202)
async def runs_multipart(request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    st = state(request)
    content_type = request.headers.get("content-type")
    result = await with_body(request, lambda body: st.ingest.multipart(ws.id, body, content_type))
    return {**ACCEPTED, **result.as_dict()}


@router.post("/runs/batch", status_code=202)
async def runs_batch(request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    st = state(request)
    result = await with_body(request, lambda body: st.ingest.batch(ws.id, parse_json(body)))
    return {**ACCEPTED, **result.as_dict()}


@router.post("/runs", status_code=202)
async def runs_post(request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    st = state(request)
    result = await with_body(request, lambda body: st.ingest.post_run(ws.id, parse_json(body)))
    return {**ACCEPTED, **result.as_dict()}


@router.patch("/runs/{run_id}", status_code=202)
async def runs_patch(run_id: str, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    st = state(request)
    result = await with_body(request, lambda body: st.ingest.patch_run(ws.id, run_id, parse_json(body)))
    return {**ACCEPTED, **result.as_dict()}


# -- read runs ---------------------------------------------------------------------------------------------


@router.post("/runs/query")
def runs_query(body: RunQueryBody, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    st = state(request)
    page = query_runs(st.store, ws.id, body.to_query(), prices=st.settings.model_prices)
    return {"runs": page.runs, "cursors": {"next": page.next_cursor, "prev": None}}


@router.post("/runs/stats")
def runs_stats(body: RunQueryBody, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    return run_stats(state(request).store, ws.id, body.to_query())


@router.get("/runs/{run_id}")
def runs_read(run_id: str, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    store = state(request).store
    rid = parse_uuid(run_id, "run_id")
    row = store.runs.get(ws.id, rid)
    if row is None:
        raise NotFound(f"run {rid} not found", field="run_id")
    stats = store.feedback.stats_for_runs(ws.id, [rid]).get(rid)
    children = store.runs.child_ids(ws.id, [rid]).get(rid, [])
    return run_view(row, feedback_stats=stats, child_run_ids=children, prices=state(request).settings.model_prices)


# -- projects (LangSmith "sessions") -----------------------------------------------------------------------


@router.get("/sessions")
def sessions_list(
    request: Request,
    ws: Workspace = Depends(workspace),
    name: str | None = None,
    name_contains: str | None = None,
    id: list[uuid.UUID] | None = Query(default=None),
    reference_dataset: list[uuid.UUID] | None = Query(default=None),
    reference_free: bool | None = None,
    include_stats: bool = False,
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0),
) -> list[dict[str, Any]]:
    rows = state(request).store.projects.list(
        ws.id,
        name=name,
        name_contains=name_contains,
        ids=id,
        reference_dataset_ids=reference_dataset,
        reference_free=reference_free,
        include_stats=include_stats,
        limit=limit,
        offset=offset,
    )
    return [session_view(r, ws.id) for r in rows]


@router.get("/sessions/{session_id}")
def sessions_read(
    session_id: str, request: Request, ws: Workspace = Depends(workspace), include_stats: bool = False
) -> dict[str, Any]:
    row = state(request).store.projects.get(ws.id, parse_uuid(session_id, "session_id"), include_stats=include_stats)
    return session_view(row, ws.id)


@router.post("/sessions", status_code=201)
def sessions_create(
    body: SessionCreate, request: Request, ws: Workspace = Depends(workspace), upsert: bool = False
) -> dict[str, Any]:
    row = state(request).store.projects.create(
        ws.id,
        body.name,
        project_id=body.id,
        description=body.description,
        extra=body.extra,
        upsert_existing=upsert,
        reference_dataset_id=body.reference_dataset_id,
    )
    return session_view(row, ws.id)


@router.patch("/sessions/{session_id}")
def sessions_update(
    session_id: str, body: SessionUpdate, request: Request, ws: Workspace = Depends(workspace)
) -> dict[str, Any]:
    row = state(request).store.projects.update(
        ws.id,
        parse_uuid(session_id, "session_id"),
        name=body.name,
        description=body.description,
        extra=body.extra,
        end_time=body.end_time,
    )
    return session_view(row, ws.id)


@router.delete("/sessions/{session_id}", status_code=202)
def sessions_delete(session_id: str, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    deleted = state(request).store.projects.delete(ws.id, parse_uuid(session_id, "session_id"))
    return {"status": "deleted", "runs": deleted}


# -- feedback ----------------------------------------------------------------------------------------------


@router.post("/feedback")
async def feedback_create(request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    st = state(request)
    row = await with_body(request, lambda body: st.ingest.feedback(ws.id, parse_json(body)))
    return feedback_view(row)


@router.get("/feedback")
def feedback_list(
    request: Request,
    ws: Workspace = Depends(workspace),
    run: list[str] | None = Query(default=None),
    key: list[str] | None = Query(default=None),
    session: list[str] | None = Query(default=None),
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0),
) -> list[dict[str, Any]]:
    rows = state(request).store.feedback.list(
        ws.id,
        run_ids=[parse_uuid(r, "run") for r in run] if run else None,
        keys=key,
        session_ids=[parse_uuid(s, "session") for s in session] if session else None,
        limit=limit,
        offset=offset,
    )
    return [feedback_view(r) for r in rows]


@router.post("/feedback/tokens")
def feedback_tokens_create(
    body: FeedbackTokenCreate | list[FeedbackTokenCreate], request: Request, ws: Workspace = Depends(workspace)
) -> Any:
    now = utcnow()
    wanted = body if isinstance(body, list) else [body]
    rows = state(request).store.feedback_tokens.create_many(
        ws.id,
        [
            {
                "run_id": t.run_id,
                "feedback_key": t.feedback_key,
                "feedback_config": t.feedback_config.stored() if t.feedback_config else None,
                "feedback_id": t.id,
                "expires_at": t.expiry(now),
            }
            for t in wanted
        ],
    )
    views = [token_view(r, str(request.base_url)) for r in rows]
    return views if isinstance(body, list) else views[0]


@router.get("/feedback/tokens")
def feedback_tokens_list(
    request: Request,
    run_id: uuid.UUID,
    ws: Workspace = Depends(workspace),
    limit: int = Query(default=100, ge=1, le=100),
    offset: int = Query(default=0, ge=0),
) -> list[dict[str, Any]]:
    rows = state(request).store.feedback_tokens.list(ws.id, run_id, limit=limit, offset=offset)
    return [token_view(r, str(request.base_url)) for r in rows]


# No API key on these two: the token is the credential (one run, one key, until it expires).
@router.get("/feedback/tokens/{token_id}")
def feedback_token_get(
    token_id: str,
    request: Request,
    score: float | None = None,
    value: str | None = None,
    comment: str | None = None,
    correction: str | None = None,
) -> dict[str, Any]:
    given = {"score": score, "value": value, "comment": comment, "correction": correction}
    row = state(request).ingest.token_feedback(parse_uuid(token_id, "token"), given)
    return feedback_view(row)


@router.post("/feedback/tokens/{token_id}")
def feedback_token_post(token_id: str, body: TokenFeedback, request: Request) -> dict[str, Any]:
    row = state(request).ingest.token_feedback(parse_uuid(token_id, "token"), body.model_dump())
    return feedback_view(row)


# -- feedback configurations -------------------------------------------------------------------------------


@router.post("/feedback-configs")
def feedback_configs_create(
    body: FeedbackConfigCreate, request: Request, ws: Workspace = Depends(workspace)
) -> dict[str, Any]:
    if body.is_enforced:
        raise NotSupported(
            "enforced feedback configurations are not available; leave is_enforced false", field="is_enforced"
        )
    configs = state(request).store.feedback_configs
    row = configs.create(ws.id, body.feedback_key, body.feedback_config.stored(), body.is_lower_score_better)
    return feedback_config_view(row)


@router.get("/feedback-configs")
def feedback_configs_list(
    request: Request,
    ws: Workspace = Depends(workspace),
    key: list[str] | None = Query(default=None),
    name_contains: str | None = None,
    limit: int = Query(default=100, ge=1, le=100),
    offset: int = Query(default=0, ge=0),
) -> list[dict[str, Any]]:
    rows = state(request).store.feedback_configs.list(
        ws.id, keys=key, name_contains=name_contains, limit=limit, offset=offset
    )
    return [feedback_config_view(r) for r in rows]


@router.patch("/feedback-configs")
def feedback_configs_update(
    body: FeedbackConfigPatch, request: Request, ws: Workspace = Depends(workspace)
) -> dict[str, Any]:
    configs = state(request).store.feedback_configs
    current = configs.get(ws.id, body.feedback_key)
    if current is None or (body.id is not None and body.id != current["id"]):
        raise NotFound(f"no feedback config for key {body.feedback_key!r}", field="feedback_key")
    changes = body.changes(current["feedback_config"])
    return feedback_config_view(configs.update(ws.id, body.feedback_key, changes) if changes else current)


@router.delete("/feedback-configs", status_code=204)
def feedback_configs_delete(
    request: Request,
    ws: Workspace = Depends(workspace),
    feedback_key: str | None = None,
    id: uuid.UUID | None = None,
) -> Response:
    configs = state(request).store.feedback_configs
    if id is not None:
        feedback_key = configs.key_of(ws.id, id)
    if feedback_key is None:
        raise InvalidInput("give feedback_key or id", field="feedback_key")
    configs.delete(ws.id, feedback_key)
    return Response(status_code=204)


@router.get("/feedback/{feedback_id}")
def feedback_read(feedback_id: str, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    return feedback_view(state(request).store.feedback.get(ws.id, parse_uuid(feedback_id, "feedback_id")))


@router.patch("/feedback/{feedback_id}")
def feedback_update(
    feedback_id: str, body: FeedbackUpdate, request: Request, ws: Workspace = Depends(workspace)
) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True, include={"score", "value", "comment", "correction"})
    if not changes:
        raise InvalidInput("nothing to change: give score, value, comment or correction", field="body")
    if isinstance(changes.get("score"), bool):
        changes["score"] = float(changes["score"])
    row = state(request).store.feedback.update(ws.id, parse_uuid(feedback_id, "feedback_id"), changes)
    return feedback_view(row)


@router.delete("/feedback/{feedback_id}", status_code=204)
def feedback_delete(feedback_id: str, request: Request, ws: Workspace = Depends(workspace)) -> Response:
    state(request).store.feedback.delete(ws.id, parse_uuid(feedback_id, "feedback_id"))
    return Response(status_code=204)
