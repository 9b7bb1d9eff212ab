"""tracetune's automation routes under /tt/v1: rules that retrain, evaluate and promote a model through a gate.

``POST /tt/v1/automations`` (a rule, :class:`tracetune.loop.rules.Rule`: every field checked, a 400 naming the
bad one), ``GET /tt/v1/automations`` (each with its last firing), ``GET /tt/v1/automations/{name}`` (with its
firings, newest first), ``POST …/{name}/run`` (fire now: 202, or 409 while a firing is queued or running),
``POST …/{name}/pause`` and ``…/resume``, ``GET …/{name}/firings/{number}`` (one firing: its steps, lineage —
runs taken, dataset version, job, models — the evaluation per model and per example, the decision and why).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request

from tracetune.errors import Conflict
from tracetune.loop.rules import check_rule, parse_rule
from tracetune.server.deps import state, workspace
from tracetune.store.rows import AutomationRow, FiringRow
from tracetune.store.workspaces import Workspace

router = APIRouter(prefix="/tt/v1", tags=["automations"])


def firing_view(row: FiringRow, *, full: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {k: v for k, v in row.items() if k not in ("evaluation", "worker_id", "heartbeat_at")}
    evaluation = row["evaluation"] or {}
    out["scores"] = {model: result["summary"] for model, result in evaluation.get("models", {}).items()}
    if full:
        out["evaluation"] = row["evaluation"]
    return out


def automation_view(row: AutomationRow, firings: list[FiringRow]) -> dict[str, Any]:
    return {**row, "last_firing": firing_view(firings[0]) if firings else None}


@router.post("/automations", status_code=201)
def automations_create(request: Request, body: Any = Body(...), ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    st = state(request)
    rule = parse_rule(body)
    check_rule(rule, st.store, st.settings, ws.id)
    row = st.store.automations.create(ws.id, rule.name, rule.model_dump(mode="json"))
    if st.automations is not None:
        st.automations.wake()
    return automation_view(row, [])


@router.get("/automations")
def automations_list(request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    store = state(request).store
    rows = store.automations.list(ws.id)
    return {"data": [automation_view(row, store.automations.firings(row["id"], limit=1)) for row in rows]}


@router.get("/automations/{name}")
def automations_read(name: str, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    store = state(request).store
    row = store.automations.get(ws.id, name)
    firings = store.automations.firings(row["id"])
    return {**automation_view(row, firings), "firings": [firing_view(f) for f in firings]}


@router.post("/automations/{name}/run", status_code=202)
def automations_run(name: str, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    st = state(request)
    row = st.store.automations.get(ws.id, name)
    firing = st.store.automations.add_firing(row, "manual")
    if firing is None:
        raise Conflict(f"automation {name!r} has a firing queued or running already", field="name")
    if st.automations is not None:
        st.automations.wake()
    return firing_view(firing)


@router.post("/automations/{name}/pause")
def automations_pause(name: str, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    return automation_view(state(request).store.automations.set_paused(ws.id, name, True), [])


@router.post("/automations/{name}/resume")
def automations_resume(name: str, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    st = state(request)
    row = st.store.automations.set_paused(ws.id, name, False)
    if st.automations is not None:
        st.automations.wake()
    return automation_view(row, [])


@router.get("/automations/{name}/firings/{number}")
def automations_firing(name: str, number: int, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    store = state(request).store
    row = store.automations.get(ws.id, name)
    firing = store.automations.firing(row["id"], number)
    taken, left_out = store.automations.runs_taken(firing["id"])
    return {**firing_view(firing, full=True), "runs_taken": taken, "runs_left_out": left_out}
