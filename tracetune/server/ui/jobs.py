"""UI pages over fine-tuning jobs: the list, a job (live status, loss chart, validation scores per epoch with the
served one, diagnostics, events, checkpoints, lineage) and cancel. Thin: the job store functions the
``/v1/fine_tuning/jobs`` routes call."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from tracetune.errors import NotFound
from tracetune.server.deps import state
from tracetune.server.ui.pages import render, see_other, ui_workspace
from tracetune.server.ui.views import job_quality, loss_chart
from tracetune.store.jobs import TERMINAL
from tracetune.store.rows import JobRow
from tracetune.store.workspaces import Workspace

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
EVENTS_SHOWN = 200
POLL_SECONDS = 2


def dataset_of(store: Any, ws: Workspace, job: JobRow) -> dict[str, Any] | None:
    """The dataset a job was started from in the UI (its metadata names it), when it still exists."""
    dataset_id = (job.get("user_metadata") or {}).get("dataset_id")
    if not dataset_id:
        return None
    try:
        return store.datasets.get(ws.id, uuid.UUID(dataset_id))
    except (NotFound, ValueError):
        return None


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, ws: Workspace = Depends(ui_workspace), after: str | None = None) -> HTMLResponse:
    rows, has_more = state(request).store.jobs.list(ws.id, after=after or None, limit=PAGE_SIZE)
    return render(
        request,
        "jobs.html",
        jobs=rows,
        any_live=any(r["status"] not in TERMINAL for r in rows),  # then the list refreshes itself
        next_after=rows[-1]["id"] if has_more and rows else None,
    )


def uploaded_files(store: Any, ws: Workspace, job: JobRow) -> list[dict[str, Any]]:
    """The files a job trains on (``{"role", "id", "filename", "bytes"}``), as uploaded through the Files API: the
    lineage of a job made with the ``openai`` client, which names no dataset. A deleted file: its id alone."""
    out = []
    for role, file_id in (("training", job["training_file"]), ("validation", job.get("validation_file"))):
        if not file_id:
            continue
        try:
            row = store.files.get(ws.id, file_id)
            out.append({"role": role, "id": file_id, "filename": row["filename"], "bytes": row["bytes"]})
        except NotFound:
            out.append({"role": role, "id": file_id, "filename": None, "bytes": None})
    return out


@router.get("/files/{file_id}/content")
def file_content(file_id: str, request: Request, ws: Workspace = Depends(ui_workspace)) -> FileResponse:
    """An uploaded file's bytes (the job page links them), for the signed-in workspace."""
    st = state(request)
    row = st.store.files.get(ws.id, file_id)
    path = st.store.files.blob(ws.id, file_id, st.blobs)
    return FileResponse(path, media_type="application/octet-stream", filename=row["filename"])


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: str, request: Request, ws: Workspace = Depends(ui_workspace)) -> HTMLResponse:
    store = state(request).store
    job = store.jobs.get(ws.id, job_id)
    events = store.jobs.all_events(job_id)
    metrics = [e["data"] for e in events if e["type"] == "metrics" and isinstance(e["data"], dict)]
    checkpoints, _ = store.jobs.checkpoints(ws.id, job_id, limit=100)
    last = metrics[-1] if metrics else None
    return render(
        request,
        "job.html",
        job=job,
        live=job["status"] not in TERMINAL,
        poll_seconds=POLL_SECONDS,
        events=list(reversed(events))[:EVENTS_SHOWN],
        chart=loss_chart(metrics),
        margin_chart=loss_chart(metrics, key="reward_margin"),  # a DPO job's
        reward_chart=loss_chart(metrics, key="mean_reward"),  # an RFT job's
        progress=last,
        checkpoints=checkpoints,
        dataset=dataset_of(store, ws, job),
        files=uploaded_files(store, ws, job),
        quality=job_quality(events),
    )


@router.post("/jobs/{job_id}/cancel")
def job_cancel(job_id: str, request: Request, ws: Workspace = Depends(ui_workspace)) -> RedirectResponse:
    state(request).store.jobs.cancel(ws.id, job_id)
    return see_other(f"/jobs/{job_id}")
