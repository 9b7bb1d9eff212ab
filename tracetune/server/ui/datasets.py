"""UI pages over datasets: the builder (filter → preview with validation problems → save), a dataset (lineage,
records, JSONL download) and "Fine-tune this". Thin: the builder runs the export pipeline the dataset API runs
(``export_dataset``, or ``preview_dataset`` which writes nothing); the download is the API's own route."""

from __future__ import annotations

import json
import uuid
from itertools import islice
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from pydantic import ValidationError

from tracetune.convert.examples import record_from_example
from tracetune.errors import InvalidInput, NotFound, TracetuneError
from tracetune.models.registry import list_models
from tracetune.server.deps import state
from tracetune.server.tt import routes as tt_routes
from tracetune.server.tt.protocol import OptionsBody, SelectionBody
from tracetune.server.ui.pages import render, see_other, ui_workspace
from tracetune.server.ui.views import THUMBS_KEY, caret_line, display_message
from tracetune.store.datasets import fine_tune_split
from tracetune.store.workspaces import Workspace
from tracetune.train.jobs import create_job_from_dataset

router = APIRouter(include_in_schema=False)

PREVIEW_RECORDS = 10  # records the builder's preview shows
PAGE_RECORDS = 20  # records per page of a stored dataset
HYPERPARAMETER_FIELDS = ("n_epochs", "batch_size", "learning_rate_multiplier")


def _model_ids(request: Request) -> list[str]:
    return [spec.id for spec in list_models(state(request).settings.home)]


def _bodies(form: dict[str, str]) -> tuple[SelectionBody, OptionsBody]:
    """The builder's form → the dataset API's own request models (so the UI accepts what the API accepts)."""
    try:
        selection = SelectionBody.model_validate(
            {
                "project": form.get("project", ""),
                "run_type": form.get("run_type") or None,
                "filter": form.get("filter") or None,
                "feedback_key": form.get("feedback_key") or None,
                "min_score": form.get("min_score") or None,
            }
        )  # the form's texts are converted (and checked) by the API's own models
        options = OptionsBody.model_validate(
            {
                "model": form.get("model") or None,
                "split": form.get("split") or None,
                "seed": form.get("seed") or 0,
                "use_corrections": bool(form.get("use_corrections")),
                "dedupe": bool(form.get("dedupe")),
                "format": form.get("format") or "openai",
                "rating_key": form.get("rating_key") or None,
                "good_score": form.get("good_score") or 1.0,
                "bad_score": form.get("bad_score") or 0.0,
            }
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"{field}: {first['msg']}", field=field) from None
    return selection, options


def _builder_form(request: Request, **values: Any) -> dict[str, str]:
    form = {
        "project": "", "filter": "", "run_type": "llm", "feedback_key": "", "min_score": "", "model": "",
        "split": "", "seed": "0", "use_corrections": "", "dedupe": "", "name": "", "format": "openai",
        "rating_key": "", "good_score": "1", "bad_score": "0",
    }  # fmt: skip
    form.update({k: str(v) for k, v in values.items() if v is not None and k in form})
    if not form["model"]:
        ids = _model_ids(request)
        form["model"] = ids[0] if ids else ""
    return form


def _render_builder(
    request: Request, ws: Workspace, form: dict[str, str], *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    error = context.pop("error", None)
    projects = state(request).store.projects.list(ws.id, limit=500)
    return render(
        request,
        "dataset_new.html",
        status_code=status_code,
        form=form,
        projects=[p["name"] for p in projects],
        models=_model_ids(request),
        error=error,
        caret=caret_line(error.position if isinstance(error, TracetuneError) and error.field == "filter" else None),
        thumbs_key=THUMBS_KEY,
        **context,
    )


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(request: Request, ws: Workspace = Depends(ui_workspace)) -> HTMLResponse:
    return render(request, "datasets.html", datasets=state(request).store.datasets.list(ws.id, limit=200))


@router.get("/datasets/new", response_class=HTMLResponse)
async def dataset_builder(request: Request, ws: Workspace = Depends(ui_workspace), preview: str = "") -> HTMLResponse:
    form = _builder_form(request, **dict(request.query_params))
    if not preview or not form["project"]:
        return _render_builder(request, ws, form)
    from tracetune.convert.export import preview_dataset

    st = state(request)
    try:
        selection, options = _bodies(form)
        records, summary = await run_in_threadpool(
            preview_dataset,
            st.store,
            ws.id,
            selection.to_selection(),
            options.to_options("preview"),
            limit=PREVIEW_RECORDS,
            home=st.settings.home,
        )
    except (InvalidInput, NotFound) as exc:
        return _render_builder(request, ws, form, status_code=exc.status_code, error=exc)
    problems = summary["validation_problems"]["first"]
    flagged = {rid for p in problems for rid in p["run_ids"]}
    shown = [
        {
            "split": r.split,
            "run_ids": r.run_ids,
            **shown_record(r.record),
            "tools": [t.get("function", t).get("name") for t in _input(r.record).get("tools") or []],
            "flagged": bool(flagged & set(r.run_ids)),
        }
        for r in records
    ]
    return _render_builder(request, ws, form, preview={"records": shown, "summary": summary, "problems": problems})


@router.post("/datasets", response_model=None)
async def dataset_save(request: Request, ws: Workspace = Depends(ui_workspace)) -> Response:
    from tracetune.convert.export import export_dataset

    st = state(request)
    form = _builder_form(request, **{k: v for k, v in (await request.form()).items() if isinstance(v, str)})
    try:
        if not form["name"].strip():
            raise InvalidInput("give the dataset a name", field="name")
        selection, options = _bodies(form)
        result = await run_in_threadpool(
            export_dataset,
            st.store,
            ws.id,
            selection.to_selection(),
            options.to_options(form["name"].strip()),
            home=st.settings.home,
        )
    except (InvalidInput, NotFound) as exc:
        return _render_builder(request, ws, form, status_code=exc.status_code, error=exc)
    assert result.dataset is not None
    return see_other(f"/datasets/{result.dataset['id']}")


def _input(record: dict[str, Any]) -> dict[str, Any]:
    """A chat record, or a DPO line's input (its messages and tools)."""
    source = record.get("input")
    return source if isinstance(source, dict) else record


def shown_record(record: dict[str, Any]) -> dict[str, Any]:
    """A record's messages for display; a DPO line's also its ``preferred`` and ``non_preferred`` answers."""
    shown: dict[str, Any] = {"messages": [display_message(m) for m in _input(record).get("messages", [])]}
    if "preferred_output" in record:
        shown["preferred"] = [display_message(m) for m in record.get("preferred_output") or []]
        shown["non_preferred"] = [display_message(m) for m in record.get("non_preferred_output") or []]
    return shown


def _preview_record(example: Any) -> dict[str, Any]:
    """The example's training record, or ``{"problem": why}`` when it holds none (an SDK example need not)."""
    try:
        return record_from_example(example)
    except InvalidInput as exc:
        return {"problem": str(exc)}


def shown_example(example: dict[str, Any]) -> dict[str, Any]:
    """An example as the dataset pages show it: its record's messages (or why it has none), its line, split and
    source runs, and its outputs as editable JSON."""
    record = _preview_record(example)
    run_ids = example.get("run_ids") or ([str(example["source_run_id"])] if example.get("source_run_id") else [])
    return {
        **(shown_record(record) if "problem" not in record else {}),
        "problem": record.get("problem"),
        "example_id": str(example["id"]),
        "line": example["line"],
        "split": fine_tune_split(example["splits"]),
        "run_ids": [str(i) for i in run_ids],
        "outputs_json": json.dumps(example.get("outputs"), indent=2, ensure_ascii=False),
    }


@router.get("/datasets/{dataset_id}", response_class=HTMLResponse)
def dataset_page(
    dataset_id: uuid.UUID, request: Request, ws: Workspace = Depends(ui_workspace), offset: int = 0
) -> HTMLResponse:
    return dataset_page_response(request, ws, dataset_id, offset=offset)


def dataset_page_response(
    request: Request, ws: Workspace, dataset_id: uuid.UUID, *, status_code: int = 200, offset: int = 0, **context: Any
) -> HTMLResponse:
    """A dataset version's page: lineage, counts, "Fine-tune this", its versions, and a page of its records
    (``offset``), editable when it is the newest version."""
    store = state(request).store
    dataset = store.datasets.get(ws.id, dataset_id)
    offset = max(0, offset)
    examples = islice(store.datasets.iter_records(ws.id, dataset_id, dict), offset, offset + PAGE_RECORDS + 1)
    shown = [shown_example(r["record"]) for r in examples]
    more, shown = len(shown) > PAGE_RECORDS, shown[:PAGE_RECORDS]
    project = None
    if dataset["selection"].get("project"):
        found = store.projects.list(ws.id, name=dataset["selection"]["project"], limit=1)
        project = found[0] if found else None
    shown_ids = sorted({uuid.UUID(i) for r in shown for i in r["run_ids"]})
    with store.db.read() as conn:  # which records come from a run a reviewer corrected
        corrected = set(store.feedback.latest_corrections(conn, ws.id, shown_ids)) if shown_ids else set()
    records = [{**r, "corrected": bool(corrected & set(r["run_ids"]))} for r in shown]
    versions = store.datasets.versions(ws.id, dataset["dataset_id"], limit=100)
    context.setdefault("ft", {"model": dataset["options"].get("model") or "", "suffix": "", "seed": ""})
    return render(
        request,
        "dataset.html",
        status_code=status_code,
        dataset=dataset,
        project=project,
        records=records,
        offset=offset,
        next_offset=offset + PAGE_RECORDS if more else None,
        versions=versions,
        newest=versions[0]["version"] == dataset["version"],
        edited=request.query_params.get("edited"),
        deleted=request.query_params.get("deleted"),
        models=_model_ids(request),
        jobs=store.jobs.list(ws.id, limit=100, metadata={"dataset_id": str(dataset_id)})[0],
        **context,
    )


@router.get("/datasets/{dataset_id}/download")
def dataset_download(
    dataset_id: uuid.UUID, request: Request, ws: Workspace = Depends(ui_workspace), split: str | None = None
) -> StreamingResponse:
    if split not in (None, "train", "validation"):
        raise InvalidInput("split must be train or validation", field="split")
    return tt_routes.datasets_records(dataset_id, request, ws, split, lineage=False)  # type: ignore[arg-type]


@router.post("/datasets/{dataset_id}/fine-tune", response_model=None)
async def dataset_fine_tune(
    dataset_id: uuid.UUID,
    request: Request,
    ws: Workspace = Depends(ui_workspace),
    model: str = Form(""),
    suffix: str = Form(""),
    seed: str = Form(""),
    n_epochs: str = Form(""),
    batch_size: str = Form(""),
    learning_rate_multiplier: str = Form(""),
    beta: str = Form(""),
) -> Response:
    """A supervised job, or a DPO job on a dataset of preference pairs (with its ``beta``)."""
    st = state(request)
    method = "dpo" if st.store.datasets.get(ws.id, dataset_id)["options"].get("format") == "dpo" else "supervised"
    raw = {"n_epochs": n_epochs, "batch_size": batch_size, "learning_rate_multiplier": learning_rate_multiplier}
    if method == "dpo":
        raw["beta"] = beta
    form = {"model": model, "suffix": suffix, "seed": seed, **raw}
    try:
        hyperparameters = {k: _number(k, v) for k, v in raw.items() if v.strip() and v.strip() != "auto"}
        body: dict[str, Any] = {
            "model": model,
            "suffix": suffix or None,
            "method": {"type": method, method: {"hyperparameters": hyperparameters}},
        }
        if seed.strip():
            body["seed"] = _number("seed", seed)
        job = await run_in_threadpool(create_job_from_dataset, st.store, st.settings, ws, dataset_id, body)
    except InvalidInput as exc:
        return dataset_page_response(request, ws, dataset_id, status_code=400, ft_error=exc, ft=form)
    if st.runner is not None:
        st.runner.wake()
    return see_other(f"/jobs/{job['id']}")


def _number(field: str, text: str) -> int | float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(f"{field} must be a number or 'auto', not {text!r}", field=field) from None
    return int(value) if value.is_integer() and field not in ("learning_rate_multiplier", "beta") else value
