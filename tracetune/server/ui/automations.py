"""UI pages over automations: the list with a form to create one (the rule checked as ``POST /tt/v1/automations``
checks it, the error naming the field), an automation (its rule, its firings refreshing while one is queued or
running, the score of each firing's candidate and current model as a chart over the alias's history, fire / pause /
resume, the alias's one-step rollback), and a firing's evaluation page (its steps, the lineage, every metric of the
candidate, the current and the base model side by side, and per held-out example the input, the reference and each
model's answer with where it differs from the reference). Thin: the automation store and ``tracetune.loop.rules``."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from tracetune.chat.scoring import differences, split_record
from tracetune.convert.examples import iter_dataset_records
from tracetune.errors import Conflict, InvalidInput, NotFound, TracetuneError
from tracetune.evaluate.gates import parse_gate
from tracetune.evaluate.replay import METRICS
from tracetune.loop.firing import model_roles
from tracetune.loop.rules import check_rule, parse_rule
from tracetune.models.registry import list_models
from tracetune.server.deps import state
from tracetune.server.ui.pages import render, see_other, ui_workspace
from tracetune.server.ui.views import display_message, loss_chart
from tracetune.store.automations import ACTIVE
from tracetune.store.rows import FiringRow
from tracetune.store.workspaces import Workspace

router = APIRouter(include_in_schema=False)

POLL_SECONDS = 2
FORM_FIELDS = ("name", "project", "filter", "feedback_key", "min_score", "every_runs", "every_s", "eval_dataset",
               "gate", "alias", "start_from", "method", "base_model", "sample_rate", "hyperparameters")  # fmt: skip
DEFAULT_FORM = {"gate": "tool_args_exact >= 0.9 and tool_args_exact >= current", "start_from": "base",
                "method": "supervised", "sample_rate": "1", "hyperparameters": "{}", "feedback_key": "",
                "min_score": "", "every_runs": "100", "every_s": ""}  # fmt: skip


@router.get("/automations", response_class=HTMLResponse)
def automations_page(request: Request, ws: Workspace = Depends(ui_workspace)) -> HTMLResponse:
    return _list(request, ws)


def _list(request: Request, ws: Workspace, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    st = state(request)
    rows = [(row, st.store.automations.last_firing(row["id"])) for row in st.store.automations.list(ws.id)]
    context.setdefault("form", DEFAULT_FORM)
    return render(
        request, "automations.html", status_code=status_code,
        automations=[{**row, "last": last} for row, last in rows],
        datasets=sorted({d["name"] for d in st.store.datasets.list(ws.id, limit=1000)}),
        base_models=[spec.id for spec in list_models(st.settings.home)],
        any_live=any(last is not None and last["status"] in ACTIVE for _, last in rows), poll_seconds=POLL_SECONDS,
        **context,
    )  # fmt: skip


@router.post("/automations", response_model=None)
async def automations_create(request: Request, ws: Workspace = Depends(ui_workspace)) -> Response:
    form = {k: str(v) for k, v in (await request.form()).items() if k in FORM_FIELDS}
    st = state(request)
    try:
        rule = parse_rule(_body(form))
        check_rule(rule, st.store, st.settings, ws.id)
        st.store.automations.create(ws.id, rule.name, rule.model_dump(mode="json"))
    except TracetuneError as exc:
        return _list(request, ws, status_code=exc.status_code, error=exc, form={**DEFAULT_FORM, **form})
    if st.automations is not None:
        st.automations.wake()
    return see_other(f"/automations/{rule.name}")


def _body(form: dict[str, str]) -> dict[str, Any]:
    """The rule's JSON body from the form's strings (blank fields left to the rule's defaults)."""
    body: dict[str, Any] = {k: v.strip() for k, v in form.items() if v.strip()}
    for key, kind in (("min_score", float), ("sample_rate", float), ("every_runs", int), ("every_s", float)):
        if key in body:
            try:
                body[key] = kind(body[key])
            except ValueError:
                raise InvalidInput(f"{key} must be a number, not {body[key]!r}", field=key) from None
    body["trigger"] = {k: body.pop(k) for k in ("every_runs", "every_s") if k in body}
    if "hyperparameters" in body:
        try:
            body["hyperparameters"] = json.loads(body["hyperparameters"])
        except ValueError as exc:
            raise InvalidInput(f"hyperparameters is not JSON: {exc}", field="hyperparameters") from None
    return body


@router.get("/automations/{name}", response_class=HTMLResponse)
def automation_page(name: str, request: Request, ws: Workspace = Depends(ui_workspace)) -> HTMLResponse:
    store = state(request).store
    row = store.automations.get(ws.id, name)
    firings = store.automations.firings(row["id"])
    alias = store.aliases.get(ws.id, row["rule"]["alias"])
    metric = parse_gate(row["rule"]["gate"]).first_metric
    return render(
        request, "automation.html", automation=row, rule=row["rule"], firings=firings, alias=alias,
        live=any(f["status"] in ACTIVE for f in firings), poll_seconds=POLL_SECONDS,
        chart=_history_chart(firings, metric), chart_metric=metric,
    )  # fmt: skip


def _history_chart(firings: list[FiringRow], metric: str) -> Any:
    """Each evaluated firing's candidate (and current model's) value of ``metric`` (the gate's first), by firing
    number, oldest first."""
    points = []
    for f in reversed(firings):
        scores = {m: r["summary"] for m, r in ((f["evaluation"] or {}).get("models") or {}).items()}
        candidate, current = scores.get(f["candidate_model"] or ""), scores.get(f["current_model"] or "")
        if candidate and candidate.get(metric) is not None:
            point = {"step": f["number"], f"train_{metric}": candidate[metric]}
            if current and current.get(metric) is not None:
                point[f"valid_{metric}"] = current[metric]
            points.append(point)
    return loss_chart(points, key=metric)


@router.post("/automations/{name}/run", response_model=None)
def automation_run(name: str, request: Request, ws: Workspace = Depends(ui_workspace)) -> Response:
    st = state(request)
    row = st.store.automations.get(ws.id, name)
    if st.store.automations.add_firing(row, "manual") is None:
        raise Conflict(f"automation {name!r} has a firing queued or running already", field="name")
    if st.automations is not None:
        st.automations.wake()
    return see_other(f"/automations/{name}")


@router.post("/automations/{name}/pause", response_model=None)
def automation_pause(name: str, request: Request, ws: Workspace = Depends(ui_workspace)) -> Response:
    state(request).store.automations.set_paused(ws.id, name, True)
    return see_other(f"/automations/{name}")


@router.post("/automations/{name}/resume", response_model=None)
def automation_resume(name: str, request: Request, ws: Workspace = Depends(ui_workspace)) -> Response:
    st = state(request)
    st.store.automations.set_paused(ws.id, name, False)
    if st.automations is not None:
        st.automations.wake()
    return see_other(f"/automations/{name}")


@router.get("/automations/{name}/firings/{number}", response_class=HTMLResponse)
def firing_page(name: str, number: int, request: Request, ws: Workspace = Depends(ui_workspace)) -> HTMLResponse:
    store = state(request).store
    row = store.automations.get(ws.id, name)
    firing = store.automations.firing(row["id"], number)
    evaluation = firing["evaluation"] or {}
    results = evaluation.get("models") or {}
    roles = {m: r for m, r in model_roles(firing, row["rule"]["base_model"]).items() if m in results}
    models = [(m, results[m]) for m in roles]
    dataset = None
    if firing["dataset_version_id"]:
        try:
            dataset = store.datasets.get(ws.id, firing["dataset_version_id"])
        except NotFound:
            dataset = None
    taken, left_out = store.automations.runs_taken(firing["id"])
    return render(
        request, "firing.html", automation=row, firing=firing, models=models, roles=roles, metrics=METRICS,
        examples=_examples(store, ws, row["rule"], evaluation), dataset=dataset, taken=taken, left_out=left_out,
        live=firing["status"] in ACTIVE, poll_seconds=POLL_SECONDS,
    )  # fmt: skip


def _examples(store: Any, ws: Workspace, rule: dict[str, Any], evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """Per held-out example: its question (the last user message), the reference answer and each model's answer
    with its scores, from the evaluation's per-example results and the evaluation dataset's records."""
    models = evaluation.get("models") or {}
    if not models:
        return []
    found = evaluation.get("dataset") or {}
    versions = [v for v in store.datasets.list(ws.id, name=found.get("name") or rule["eval_dataset"], limit=1000)
                if v["version"] == found.get("version")]  # fmt: skip
    records = [r["record"] for r in iter_dataset_records(store, ws.id, versions[0]["id"])] if versions else []
    out = []
    for i, record in enumerate(records):
        prompt, expected = split_record(record, i + 1)
        question = next((m for m in reversed(prompt) if m.get("role") == "user"), prompt[-1] if prompt else {})
        answers = {m: result["results"][i] for m, result in models.items() if i < len(result["results"])}
        shown = {m: {**a, "shown": display_message(a["reply"]), "differences": differences(expected, a["reply"])}
                 for m, a in answers.items()}  # fmt: skip
        out.append({"question": display_message(question), "reference": display_message(expected), "answers": shown})
    return out
