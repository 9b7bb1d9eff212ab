"""OpenAI-compatible routes under /v1 (files, models, fine-tuning jobs). Thin: parse, call one service, answer.

Errors on this surface are ``{"error": {"message", "type", "param", "code"}}`` (mapped once, in ``http.py``).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from python_multipart.multipart import parse_options_header

from tracetune.config import Settings
from tracetune.errors import InvalidInput, NotFound, TracetuneError
from tracetune.ingest.multipart import Part, split_parts
from tracetune.models.engines import choose_engine
from tracetune.models.registry import list_models
from tracetune.serve.lookup import delete_model
from tracetune.server.deps import api_key, parse_json, read_body, state, workspace
from tracetune.server.openai.protocol import (
    FileDeleted,
    FileList,
    FileObject,
    FineTuningJob,
    FineTuningJobCheckpointList,
    FineTuningJobEventList,
    FineTuningJobList,
    Model,
    ModelDeleted,
    ModelList,
    file_list,
    file_object,
    fine_tuned_model_object,
    fine_tuning_job,
    job_checkpoint,
    job_event,
    model_object,
)
from tracetune.store.jobs import event_id
from tracetune.store.workspaces import Workspace
from tracetune.train import graders
from tracetune.train.jobs import FineTuningJobCreate, create_job
from tracetune.train.model_graders import endpoint_from_settings

log = logging.getLogger("tracetune.server")
router = APIRouter(prefix="/v1", tags=["openai"])

_FORM_FIELDS = ("purpose", "file", "expires_after[anchor]", "expires_after[seconds]")


def _form(parts: list[Part]) -> dict[str, Part]:
    form: dict[str, Part] = {}
    for part in parts:
        if part.name not in _FORM_FIELDS:
            raise InvalidInput(
                f"unknown form field {part.name!r}; expected {', '.join(_FORM_FIELDS)}",
                field=part.name,
                code="unknown_parameter",
            )
        if part.name in form:
            raise InvalidInput(f"form field {part.name!r} is given twice", field=part.name, code="invalid_value")
        form[part.name] = part
    for required in ("purpose", "file"):
        if required not in form:
            raise InvalidInput(
                f"missing required form field {required!r}", field=required, code="missing_required_parameter"
            )
    return form


def _text(part: Part | None) -> str | None:
    if part is None:
        return None
    try:
        return part.data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"form field {part.name!r} is not UTF-8 text", field=part.name) from None


def _filename(part: Part) -> str:
    _, params = parse_options_header(part.headers.get("content-disposition", ""))
    name = params.get(b"filename")
    if not name:
        raise InvalidInput(
            "the 'file' part has no filename (send it as a file upload)", field="file", code="invalid_value"
        )
    return name.decode("utf-8", "replace")


@router.post("/files")
async def files_create(request: Request, ws: Workspace = Depends(workspace)) -> FileObject:
    st = state(request)
    body = await read_body(request)
    form = _form(split_parts(body, request.headers.get("content-type")))
    seconds_text = _text(form.get("expires_after[seconds]"))
    if seconds_text is not None and not seconds_text.strip().isdigit():
        raise InvalidInput(
            "expires_after[seconds] must be an integer", field="expires_after[seconds]", code="invalid_value"
        )
    row = await run_in_threadpool(
        lambda: st.store.files.create(
            ws.id,
            st.blobs,
            filename=_filename(form["file"]),
            purpose=_text(form["purpose"]) or "",
            data=form["file"].data,
            expires_anchor=_text(form.get("expires_after[anchor]")),
            expires_seconds=int(seconds_text) if seconds_text is not None else None,
        )
    )
    return file_object(row)


@router.get("/files")
def files_list(
    request: Request,
    ws: Workspace = Depends(workspace),
    purpose: str | None = Query(default=None, max_length=64),
    after: str | None = Query(default=None, max_length=64),
    limit: int = Query(default=10000, ge=1, le=10000),
    order: Literal["asc", "desc"] = "desc",
) -> FileList:
    rows, has_more = state(request).store.files.list(ws.id, purpose=purpose, after=after, limit=limit, order=order)
    return file_list(rows, has_more)


@router.get("/files/{file_id}")
def files_retrieve(file_id: str, request: Request, ws: Workspace = Depends(workspace)) -> FileObject:
    return file_object(state(request).store.files.get(ws.id, file_id))


@router.get("/files/{file_id}/content")
def files_content(file_id: str, request: Request, ws: Workspace = Depends(workspace)) -> FileResponse:
    st = state(request)
    return FileResponse(st.store.files.blob(ws.id, file_id, st.blobs), media_type="application/octet-stream")


@router.delete("/files/{file_id}")
def files_delete(file_id: str, request: Request, ws: Workspace = Depends(workspace)) -> FileDeleted:
    st = state(request)
    st.store.files.delete(ws.id, file_id, st.blobs)
    return FileDeleted(id=file_id)


@router.get("/models")
def models_list(request: Request, ws: Workspace = Depends(workspace)) -> ModelList:
    """The base models, the workspace's fine-tuned models (oldest first), then the aliases (``model_aliases``, then
    the stored ones), so an app that checks its configured model name in the list finds it."""
    st = state(request)
    specs = list_models(st.settings.home)
    engines = {spec.id: _engine_of(st.settings, spec.id) for spec in specs}  # once per base model, not per row
    base = [model_object(spec, engines[spec.id]) for spec in specs]
    tuned = []
    for row in st.store.models.list(ws.id):
        if row["base_model"] not in engines:
            engines[row["base_model"]] = _engine_of(st.settings, row["base_model"])
        tuned.append(fine_tuned_model_object(row, ws.name, engines[row["base_model"]]))
    aliases = [Model(id=name, created=0) for name in sorted(st.settings.model_aliases)]
    stored = [
        Model(id=row["name"], created=int(row["created_at"].timestamp()))
        for row in st.store.aliases.list(ws.id)
        if row["name"] not in st.settings.model_aliases
    ]
    return ModelList(data=base + tuned + aliases + stored)


@router.get("/models/{model_id:path}")
def models_retrieve(model_id: str, request: Request, ws: Workspace = Depends(workspace)) -> Model:
    st = state(request)
    if model_id in st.settings.model_aliases:
        return Model(id=model_id, created=0)
    alias = st.store.aliases.get(ws.id, model_id)
    if alias is not None:
        return Model(id=model_id, created=int(alias["created_at"].timestamp()))
    if model_id.startswith("ft:"):
        row = st.store.models.get(ws.id, model_id)
        return fine_tuned_model_object(row, ws.name, _engine_of(st.settings, row["base_model"]))
    for spec in list_models(st.settings.home):
        if spec.id == model_id:
            return model_object(spec, _engine_of(st.settings, spec.id))
    raise NotFound(f"The model '{model_id}' does not exist", field="model", code="model_not_found")


def _engine_of(settings: Settings, base_id: str) -> str:
    """The engine that serves (or would serve) ``base_id``'s models: ``unavailable`` when the one configured
    cannot (requests then answer 503 saying what to install)."""
    try:
        return choose_engine(settings.home, base_id, settings.engine).engine
    except TracetuneError:
        return "unavailable"


@router.delete("/models/{model_id:path}")
def models_delete(model_id: str, request: Request, ws: Workspace = Depends(workspace)) -> ModelDeleted:
    """Delete one of the workspace's fine-tuned models (not a base model, not one a stored alias names)."""
    st = state(request)
    delete_model(model_id, home=st.settings.home, store=st.store, workspace_id=ws.id)
    return ModelDeleted(id=model_id)


# -- fine-tuning jobs -------------------------------------------------------------------------------------------


@router.post("/fine_tuning/alpha/graders/run")
async def graders_run(request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    body = parse_json(await read_body(request))
    endpoint = endpoint_from_settings(state(request).settings, api_key(request))  # model graders: this server
    result = await run_in_threadpool(graders.run_request, body, endpoint)  # python: a subprocess; models: HTTP
    return graders.run_response(result)


@router.post("/fine_tuning/alpha/graders/validate")
async def graders_validate(request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    return graders.validate_request(parse_json(await read_body(request)))


@router.post("/fine_tuning/jobs")
async def jobs_create(request: Request, ws: Workspace = Depends(workspace)) -> FineTuningJob:
    st = state(request)
    parsed = FineTuningJobCreate.parse(parse_json(await read_body(request)))
    if parsed.model_extra:
        log.info("fine_tuning.jobs.create: ignoring unknown keys %s", sorted(parsed.model_extra))
    row = await run_in_threadpool(create_job, st.store, st.settings, ws, parsed)
    if st.runner is not None:
        st.runner.wake()
    return fine_tuning_job(row, ws.name)


@router.get("/fine_tuning/jobs")
def jobs_list(
    request: Request,
    ws: Workspace = Depends(workspace),
    after: str | None = Query(default=None, max_length=64),
    limit: int = Query(default=20, ge=1, le=100),
) -> FineTuningJobList:
    metadata = {
        key[len("metadata[") : -1]: value
        for key, value in request.query_params.items()
        if key.startswith("metadata[") and key.endswith("]")
    }
    rows, has_more = state(request).store.jobs.list(ws.id, after=after, limit=limit, metadata=metadata)
    return FineTuningJobList(data=[fine_tuning_job(r, ws.name) for r in rows], has_more=has_more)


@router.get("/fine_tuning/jobs/{job_id}")
def jobs_retrieve(job_id: str, request: Request, ws: Workspace = Depends(workspace)) -> FineTuningJob:
    return fine_tuning_job(state(request).store.jobs.get(ws.id, job_id), ws.name)


@router.post("/fine_tuning/jobs/{job_id}/cancel")
def jobs_cancel(job_id: str, request: Request, ws: Workspace = Depends(workspace)) -> FineTuningJob:
    return fine_tuning_job(state(request).store.jobs.cancel(ws.id, job_id), ws.name)


@router.get("/fine_tuning/jobs/{job_id}/events")
def jobs_events(
    job_id: str,
    request: Request,
    ws: Workspace = Depends(workspace),
    after: str | None = Query(default=None, max_length=64),
    limit: int = Query(default=20, ge=1, le=1000),
) -> FineTuningJobEventList:
    rows, has_more = state(request).store.jobs.events(ws.id, job_id, after=after, limit=limit)
    return FineTuningJobEventList(data=[job_event(r, event_id(r["seq"])) for r in rows], has_more=has_more)


@router.get("/fine_tuning/jobs/{job_id}/checkpoints")
def jobs_checkpoints(
    job_id: str,
    request: Request,
    ws: Workspace = Depends(workspace),
    after: str | None = Query(default=None, max_length=64),
    limit: int = Query(default=10, ge=1, le=100),
) -> FineTuningJobCheckpointList:
    rows, has_more = state(request).store.jobs.checkpoints(ws.id, job_id, after=after, limit=limit)
    data = [job_checkpoint(r) for r in rows]
    return FineTuningJobCheckpointList(
        data=data, has_more=has_more, first_id=data[0].id if data else None, last_id=data[-1].id if data else None
    )
