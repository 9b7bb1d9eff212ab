"""UI pages for annotation queues: the list of queues, and the review page that works through one — the next waiting
run shown as on its trace page (chat, tools, tree), rated or corrected there, then "done" to move on. Keys: g good,
b bad, c correct, d done and next, s skip, p the previous waiting run, j/k through the trace (``static/ui.js``; the
buttons carry the same ``accesskey``)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from tracetune.server.deps import state
from tracetune.server.ui.pages import render, see_other, ui_workspace
from tracetune.server.ui.runs import trace_context
from tracetune.store.workspaces import Workspace

router = APIRouter(include_in_schema=False)


@router.get("/queues", response_class=HTMLResponse)
def queues_page(request: Request, ws: Workspace = Depends(ui_workspace)) -> HTMLResponse:
    queues = state(request).store.annotation_queues
    listed = queues.list(ws.id, limit=100)
    counts = queues.counts(ws.id, [q["id"] for q in listed])
    rows = [{**q, "waiting": counts[q["id"]][0], "done": counts[q["id"]][1]} for q in listed]
    return render(request, "queues.html", queues=rows)


@router.get("/queues/{queue_id}", response_class=HTMLResponse)
def queue_review(
    queue_id: uuid.UUID, request: Request, ws: Workspace = Depends(ui_workspace), skip: int = 0
) -> HTMLResponse:
    """The ``skip``-th waiting run of the queue (0: the oldest), or the queue's end."""
    queues = state(request).store.annotation_queues
    queue = queues.get(ws.id, queue_id)
    waiting = queues.count(ws.id, queue_id, completed=False)
    skip = max(0, min(skip, max(waiting - 1, 0)))
    items = queues.items(ws.id, queue_id, completed=False, item_type="RUN", limit=1, offset=skip)
    context: dict[str, Any] = {
        "queue": queue,
        "waiting": waiting,
        "done": queues.count(ws.id, queue_id, completed=True),
    }
    run_id = items[0]["run_id"] if items else None
    if run_id is None:
        return render(request, "queue.html", item=None, **context)
    context.update(trace_context(request, ws, run_id), item=items[0], skip=skip, back=f"/queues/{queue_id}?skip={skip}")
    return render(request, "queue.html", **context)


@router.post("/queues/{queue_id}/items/{item_id}/done", response_model=None)
def queue_item_done(
    queue_id: uuid.UUID, item_id: uuid.UUID, request: Request, ws: Workspace = Depends(ui_workspace)
) -> Response:
    queues = state(request).store.annotation_queues
    item = queues.item(ws.id, item_id)
    if item["queue_id"] == queue_id:
        queues.set_status(ws.id, item_id, "completed")
    return see_other(f"/queues/{queue_id}")
