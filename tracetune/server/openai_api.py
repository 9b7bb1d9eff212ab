"""OpenAI-compatible routes under /v1 (files, models). Thin: parse, call one service, shape the answer.

Errors on this surface are ``{"error": {"message", "type", "param", "code"}}`` (mapped once, in ``http.py``).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from python_multipart.multipart import parse_options_header

from tracetune.errors import InvalidInput, NotFound
from tracetune.ingest.multipart import Part, split_parts
from tracetune.models.registry import list_models
from tracetune.server.http import read_body, state, workspace
from tracetune.server.openai_protocol import (
    FileDeleted,
    FileList,
    FileObject,
    Model,
    ModelList,
    file_list,
    file_object,
    model_object,
)
from tracetune.store.workspaces import Workspace

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
            st.settings.home / "files",
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
    return FileResponse(
        st.store.files.blob(ws.id, file_id, st.settings.home / "files"), media_type="application/octet-stream"
    )


@router.delete("/files/{file_id}")
def files_delete(file_id: str, request: Request, ws: Workspace = Depends(workspace)) -> FileDeleted:
    st = state(request)
    st.store.files.delete(ws.id, file_id, st.settings.home / "files")
    return FileDeleted(id=file_id)


@router.get("/models")
def models_list(request: Request, _: Workspace = Depends(workspace)) -> ModelList:
    return ModelList(data=[model_object(spec) for spec in list_models(state(request).settings.home)])


@router.get("/models/{model_id:path}")
def models_retrieve(model_id: str, request: Request, _: Workspace = Depends(workspace)) -> Model:
    for spec in list_models(state(request).settings.home):
        if spec.id == model_id:
            return model_object(spec)
    raise NotFound(f"The model '{model_id}' does not exist", field="model", code="model_not_found")
