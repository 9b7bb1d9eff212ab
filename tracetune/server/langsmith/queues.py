"""Annotation queues: ``/api/v1/annotation-queues`` (the SDK's ``create/read/update/delete/list_annotation_queue[s]``
and the run methods it deprecates in their favour) and ``/api/v1/platform/annotation-queues`` (its generated
``client.annotation_queues.items`` resource). One reviewer per workspace: an item waits ("needs_my_review") until
it is marked completed ("archived"); nobody else's review is ever pending."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from tracetune.errors import InvalidInput, NotFound
from tracetune.query.runs_query import RunQuery, decode_key_cursor, encode_cursor, query_runs
from tracetune.server.deps import state, workspace
from tracetune.server.langsmith.protocol import (
    QueueCreate,
    QueueItemsCreate,
    QueueItemsDelete,
    QueueItemStatus,
    QueueRunKey,
    QueueUpdate,
    queue_item_view,
    queue_view,
)
from tracetune.store import Store
from tracetune.store.rows import QueueItemRow
from tracetune.store.workspaces import Workspace
from tracetune.timeutil import time_to_us, us_to_time

router = APIRouter(prefix="/api/v1")

# review sections → completed?; "needs_others_review" is always empty with one reviewer
_STATUS: dict[str, bool | None] = {"needs_my_review": False, "completed": True, "archived": True}


def _section(status: str | None) -> tuple[bool | None, bool]:
    """(completed filter, whether the section can hold anything at all)."""
    if status is None:
        return None, True
    if status == "needs_others_review":
        return None, False
    if status not in _STATUS:
        raise InvalidInput(
            f"unknown status {status!r}: needs_my_review, needs_others_review, completed or archived", field="status"
        )
    return _STATUS[status], True


# -- queues ------------------------------------------------------------------------------------------------------


@router.post("/annotation-queues")
def queues_create(body: QueueCreate, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    row = state(request).store.annotation_queues.create(ws.id, body.model_dump(include=set(QueueCreate.model_fields)))
    return queue_view(row)


@router.get("/annotation-queues")
def queues_list(
    request: Request,
    ws: Workspace = Depends(workspace),
    ids: list[uuid.UUID] | None = Query(default=None),
    name: str | None = None,
    name_contains: str | None = None,
    limit: int = Query(default=100, ge=1, le=100),
    offset: int = Query(default=0, ge=0),
) -> list[dict[str, Any]]:
    rows = state(request).store.annotation_queues.list(
        ws.id, ids=ids, name=name, name_contains=name_contains, limit=limit, offset=offset
    )
    return [queue_view(r) for r in rows]


@router.get("/annotation-queues/{queue_id}")
def queues_read(queue_id: uuid.UUID, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    return queue_view(state(request).store.annotation_queues.get(ws.id, queue_id))


@router.patch("/annotation-queues/{queue_id}")
def queues_update(
    queue_id: uuid.UUID, body: QueueUpdate, request: Request, ws: Workspace = Depends(workspace)
) -> dict[str, Any]:
    changes = body.model_dump(include=set(QueueUpdate.model_fields), exclude_none=True)
    return queue_view(state(request).store.annotation_queues.update(ws.id, queue_id, changes))


@router.delete("/annotation-queues/{queue_id}", status_code=204)
def queues_delete(queue_id: uuid.UUID, request: Request, ws: Workspace = Depends(workspace)) -> Response:
    state(request).store.annotation_queues.delete(ws.id, queue_id)
    return Response(status_code=204)


# -- runs in a queue (the SDK's v1 methods) ---------------------------------------------------------------------


def _queued_runs(store: Store, workspace_id: uuid.UUID, rows: list[QueueItemRow]) -> list[dict[str, Any]]:
    """``RunWithAnnotationQueueInfo``: each RUN item's run, with when it was added and last reviewed."""
    ids = [item["run_id"] for item in rows if item["run_id"] is not None]
    page = query_runs(store, workspace_id, RunQuery(run_ids=ids, limit=max(len(ids), 1))) if ids else None
    views = {v["id"]: v for v in page.runs} if page else {}
    out = []
    for item in rows:
        view = views.get(str(item["run_id"]))
        if view is None:
            continue  # a thread item, or a run deleted since
        view["added_at"] = item["added_at"].isoformat()
        view["last_reviewed_time"] = item["last_reviewed_time"].isoformat() if item["last_reviewed_time"] else None
        out.append(view)
    return out


@router.post("/annotation-queues/{queue_id}/runs")
def queue_runs_add(
    queue_id: uuid.UUID, body: list[uuid.UUID], request: Request, ws: Workspace = Depends(workspace)
) -> list[dict[str, Any]]:
    wanted = [{"item_type": "RUN", "run_id": rid} for rid in body]
    return [queue_item_view(r) for r in state(request).store.annotation_queues.add(ws.id, queue_id, wanted)]


@router.post("/annotation-queues/{queue_id}/runs/by-key")
def queue_runs_add_by_key(
    queue_id: uuid.UUID, body: list[QueueRunKey], request: Request, ws: Workspace = Depends(workspace)
) -> list[dict[str, Any]]:
    wanted = [{"item_type": "RUN", "run_id": key.run_id} for key in body]
    return [queue_item_view(r) for r in state(request).store.annotation_queues.add(ws.id, queue_id, wanted)]


@router.get("/annotation-queues/{queue_id}/runs")
def queue_runs_list(
    queue_id: uuid.UUID,
    request: Request,
    ws: Workspace = Depends(workspace),
    status: str | None = None,
    limit: int = Query(default=100, ge=1, le=100),
    offset: int = Query(default=0, ge=0),
) -> list[dict[str, Any]]:
    store = state(request).store
    completed, possible = _section(status)
    rows = store.annotation_queues.items(
        ws.id, queue_id, completed=completed, item_type="RUN", limit=limit, offset=offset
    )
    return _queued_runs(store, ws.id, rows if possible else [])


@router.get("/annotation-queues/{queue_id}/run/{index}")
def queue_run_at(
    queue_id: uuid.UUID, index: int, request: Request, ws: Workspace = Depends(workspace)
) -> dict[str, Any]:
    store = state(request).store
    rows = store.annotation_queues.items(ws.id, queue_id, item_type="RUN", limit=1, offset=max(index, 0))
    found = _queued_runs(store, ws.id, rows) if index >= 0 else []
    if not found:
        raise NotFound(f"the queue has no run at index {index}", field="index")
    return found[0]


@router.delete("/annotation-queues/{queue_id}/runs/{run_id}", status_code=204)
def queue_run_delete(
    queue_id: uuid.UUID, run_id: uuid.UUID, request: Request, ws: Workspace = Depends(workspace)
) -> Response:
    if not state(request).store.annotation_queues.remove(ws.id, queue_id, run_ids=[run_id]):
        raise NotFound(f"run {run_id} is not in the queue", field="run_id")
    return Response(status_code=204)


# -- items (the SDK's client.annotation_queues.items) ----------------------------------------------------------


@router.post("/platform/annotation-queues/{queue_id}/items")
def items_create(
    queue_id: uuid.UUID, body: QueueItemsCreate, request: Request, ws: Workspace = Depends(workspace)
) -> dict[str, Any]:
    rows = state(request).store.annotation_queues.add(ws.id, queue_id, [i.wanted() for i in body.items])
    return {"items": [queue_item_view(r) for r in rows]}


@router.get("/platform/annotation-queues/{queue_id}/items")
def items_list(
    queue_id: uuid.UUID,
    request: Request,
    status: str,
    ws: Workspace = Depends(workspace),
    cursor: str | None = None,
    page_size: int = Query(default=20, ge=1, le=100),
    item_type: Literal["RUN", "THREAD"] | None = None,
) -> dict[str, Any]:
    completed, possible = _section(status)
    after = None
    if cursor:
        added_us, item_id = decode_key_cursor(cursor)
        added = us_to_time(added_us)
        try:
            after = (added, uuid.UUID(item_id)) if added else None
        except ValueError:
            raise InvalidInput("not a cursor this server issued", field="cursor") from None
    queue = state(request).store.annotation_queues
    rows = queue.items(ws.id, queue_id, completed=completed, item_type=item_type, after=after, limit=page_size + 1)
    rows = rows if possible else []
    more, rows = len(rows) > page_size, rows[:page_size]
    next_cursor = encode_cursor(_us(rows[-1]["added_at"]), rows[-1]["id"]) if more else None
    return {"items": [queue_item_view(r) for r in rows], "next_cursor": next_cursor}


def _us(when: datetime) -> int:
    return time_to_us(when, "added_at")


@router.get("/platform/annotation-queues/{queue_id}/items/count")
def items_count(
    queue_id: uuid.UUID, request: Request, status: str, ws: Workspace = Depends(workspace)
) -> dict[str, int]:
    completed, possible = _section(status)
    count = state(request).store.annotation_queues.count(ws.id, queue_id, completed=completed) if possible else 0
    return {"count": count}


@router.post("/platform/annotation-queues/items/{queue_item_id}/status")
def items_status(
    queue_item_id: uuid.UUID, body: QueueItemStatus, request: Request, ws: Workspace = Depends(workspace)
) -> dict[str, Any]:
    row = state(request).store.annotation_queues.set_status(ws.id, queue_item_id, body.status)
    return {"queue_item_id": str(row["id"]), "status": body.status, "is_archived": row["completed_at"] is not None}


@router.post("/platform/annotation-queues/{queue_id}/items/delete")
def items_delete(
    queue_id: uuid.UUID, body: QueueItemsDelete, request: Request, ws: Workspace = Depends(workspace)
) -> dict[str, Any]:
    removed = state(request).store.annotation_queues.remove(ws.id, queue_id, item_ids=body.item_ids)
    return {"deleted": removed}
