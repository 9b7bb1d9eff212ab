"""UI pages over models: base and fine-tuned models with their lineage (model → job → dataset → filter → runs),
validation score and diagnostics; the stored aliases (set, history, roll back, remove: ``serve.lookup.set_alias``
and the alias store, as ``/tt/v1/aliases``). Thin: the model registry and store the ``/v1/models`` routes read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from tracetune.errors import NotFound, TracetuneError
from tracetune.models.registry import list_models
from tracetune.serve.lookup import delete_model, served_check, set_alias
from tracetune.server.deps import state
from tracetune.server.ui.jobs import dataset_of
from tracetune.server.ui.pages import render, see_other, ui_workspace
from tracetune.server.ui.views import job_quality
from tracetune.store.rows import ModelRow
from tracetune.store.workspaces import Workspace

router = APIRouter(include_in_schema=False)


def _lineage(store: Any, ws: Workspace, row: ModelRow) -> dict[str, Any]:
    try:
        job = store.jobs.get(ws.id, row["job_id"])
    except NotFound:
        job = None
    dataset = dataset_of(store, ws, job) if job else None
    project = None
    if dataset and dataset["selection"].get("project"):
        found = store.projects.list(ws.id, name=dataset["selection"]["project"], limit=1)
        project = found[0] if found else None
    quality = job_quality(store.jobs.all_events(job["id"])) if job else None
    return {"model": row, "job": job, "dataset": dataset, "project": project, "quality": quality}


def latest_evaluations(store: Any, ws: Workspace) -> dict[str, dict[str, Any]]:
    """Per model, its newest held-out evaluation by an automation's firing: the summary (accuracy, tool_args_exact,
    …), the automation and firing number, and when."""
    found: dict[str, dict[str, Any]] = {}
    for automation in store.automations.list(ws.id):
        for firing in store.automations.firings(automation["id"]):
            for model, result in ((firing["evaluation"] or {}).get("models") or {}).items():
                when = firing["finished_at"] or firing["created_at"]
                if model not in found or when > found[model]["at"]:
                    found[model] = {"summary": result.get("summary") or {}, "automation": automation["name"],
                                    "number": firing["number"], "at": when}  # fmt: skip
    return found


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, ws: Workspace = Depends(ui_workspace)) -> HTMLResponse:
    return _models(request, ws)


def _models(request: Request, ws: Workspace, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    st = state(request)
    tuned = [_lineage(st.store, ws, row) for row in st.store.models.list(ws.id)]
    stored = [{**row, "history": st.store.aliases.history(ws.id, row["name"])} for row in st.store.aliases.list(ws.id)]
    context.setdefault("alias_form", {"name": "", "model": ""})
    base = list_models(st.settings.home)
    shown_paths = {spec.id: _shown_path(spec.weights_path, st.settings.home) for spec in base}
    return render(
        request, "models.html", status_code=status_code, base=base, shown_paths=shown_paths, tuned=tuned,
        evaluations=latest_evaluations(st.store, ws),
        aliases=st.settings.model_aliases, stored_aliases=stored, model_ids=model_ids(request, ws), **context,
    )  # fmt: skip


@router.post("/models/{model_id:path}/delete", response_model=None)
def model_delete(model_id: str, request: Request, ws: Workspace = Depends(ui_workspace)) -> Response:
    """Delete a fine-tuned model, as ``DELETE /v1/models/{id}`` does (refused while an alias names it)."""
    st = state(request)
    try:
        delete_model(model_id, home=st.settings.home, store=st.store, workspace_id=ws.id)
    except TracetuneError as exc:
        return _models(request, ws, status_code=exc.status_code, model_error=exc)
    return see_other("/models")


@router.post("/aliases", response_model=None)
def alias_set(
    request: Request, ws: Workspace = Depends(ui_workspace), name: str = Form(""), model: str = Form("")
) -> Response:
    """Point an alias at a model (a new version), as ``PUT /tt/v1/aliases/{name}`` does."""
    st = state(request)
    try:
        set_alias(
            name.strip(), model.strip(), blobs=st.blobs, store=st.store, workspace_id=ws.id,
            aliases=st.settings.model_aliases,
        )  # fmt: skip
    except TracetuneError as exc:
        return _models(
            request, ws, status_code=exc.status_code, alias_error=exc, alias_form={"name": name, "model": model}
        )
    return see_other("/models#aliases")


@router.post("/aliases/{name}/rollback", response_model=None)
def alias_rollback(name: str, request: Request, ws: Workspace = Depends(ui_workspace)) -> Response:
    st = state(request)
    try:
        st.store.aliases.rollback(ws.id, name, served_check(st.blobs, st.store, ws.id, st.settings.model_aliases))
    except TracetuneError as exc:
        return _models(request, ws, status_code=exc.status_code, alias_error=exc)
    return see_other("/models#aliases")


@router.post("/aliases/{name}/remove", response_model=None)
def alias_remove(name: str, request: Request, ws: Workspace = Depends(ui_workspace)) -> Response:
    state(request).store.aliases.remove(ws.id, name)
    return see_other("/models#aliases")


def model_ids(request: Request, ws: Workspace) -> list[str]:
    """What a model picker offers: the workspace's tuned models, newest first, then the base models."""
    st = state(request)
    tuned = [row["id"] for row in st.store.models.list(ws.id)]
    return list(reversed(tuned)) + [spec.id for spec in list_models(st.settings.home)]


def _shown_path(path: Any, home: Path) -> str:
    """A path as the models page shows it: relative to the data home when it is inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path(home).resolve()))
    except (TypeError, ValueError):
        return str(path)
