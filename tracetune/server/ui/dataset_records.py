"""A dataset's records in the UI: edit a record's outputs, delete a record (each a new version of the dataset, as
the LangSmith examples API writes one: ``ExampleStore.change`` / ``delete``), and compare two versions (the records
added, removed and changed between them). Only the newest version is edited: an edit made from an older page
would silently undo what came since."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from tracetune.convert.examples import record_from_example
from tracetune.errors import Conflict, InvalidInput, NotFound
from tracetune.server.deps import state
from tracetune.server.ui.datasets import dataset_page_response, shown_example
from tracetune.server.ui.pages import render, see_other, ui_workspace
from tracetune.store.examples import ExampleChange
from tracetune.store.workspaces import Workspace

router = APIRouter(include_in_schema=False)

COMPARE_LIMIT = 100_000  # examples read per version for a comparison


def newest_version(store: Any, ws: Workspace, dataset_id: uuid.UUID) -> dict[str, Any]:
    return dict(store.datasets.versions(ws.id, dataset_id, limit=1)[0])


@router.post("/datasets/{version_id}/examples/{example_id}", response_model=None)
def record_edit(
    version_id: uuid.UUID,
    example_id: uuid.UUID,
    request: Request,
    ws: Workspace = Depends(ui_workspace),
    outputs: str = Form(""),
) -> Response:
    """New outputs (a JSON object) for one record; the new version's page. A record that trained keeps training:
    an edit the converter cannot read as a conversation is refused with its reason."""
    store = state(request).store
    version, old = _editable(store, ws, version_id, example_id)
    try:
        value = _json_object(outputs, "outputs")
        _still_trains(old, {**old, "outputs": value})
    except InvalidInput as exc:
        edit = {"example_id": str(example_id), "error": str(exc), "text": outputs}
        return dataset_page_response(request, ws, version_id, status_code=400, edit=edit)
    store.examples.change(ws.id, [ExampleChange(example_id, outputs=value)])
    fresh = newest_version(store, ws, version["dataset_id"])
    return see_other(f"/datasets/{fresh['id']}?edited={example_id}#example-{example_id}")


@router.post("/datasets/{version_id}/examples/{example_id}/delete", response_model=None)
def record_delete(
    version_id: uuid.UUID, example_id: uuid.UUID, request: Request, ws: Workspace = Depends(ui_workspace)
) -> Response:
    """Delete one record; the new version's page (the older versions still hold it)."""
    store = state(request).store
    version, _ = _editable(store, ws, version_id, example_id)
    store.examples.delete(ws.id, [example_id])
    fresh = newest_version(store, ws, version["dataset_id"])
    return see_other(f"/datasets/{fresh['id']}?deleted={example_id}")


@router.get("/datasets/{version_id}/compare", response_class=HTMLResponse)
def versions_compare(
    version_id: uuid.UUID, request: Request, ws: Workspace = Depends(ui_workspace), to: uuid.UUID | None = None
) -> HTMLResponse:
    """What changed from version ``version_id`` to version ``to`` (default: the newest) of the same dataset."""
    store = state(request).store
    older = store.datasets.get(ws.id, version_id)
    newer = store.datasets.get(ws.id, to) if to else newest_version(store, ws, older["dataset_id"])
    if newer["dataset_id"] != older["dataset_id"]:
        raise InvalidInput("compare two versions of the same dataset", field="to")
    if newer["version"] < older["version"]:
        older, newer = newer, older
    before = _examples(store, ws, older)
    after = _examples(store, ws, newer)
    added = [shown_example(after[i]) for i in after if i not in before]
    removed = [shown_example(before[i]) for i in before if i not in after]
    changed = [
        {"before": shown_example(before[i]), "after": shown_example(after[i]), "fields": fields}
        for i in after
        if i in before and (fields := _changed_fields(before[i], after[i]))
    ]
    versions = store.datasets.versions(ws.id, older["dataset_id"], limit=100)
    return render(request, "dataset_compare.html", older=older, newer=newer, added=added, removed=removed,
                  changed=changed, versions=versions)  # fmt: skip


def _editable(
    store: Any, ws: Workspace, version_id: uuid.UUID, example_id: uuid.UUID
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The version (which must be the dataset's newest) and the example in it."""
    version = store.datasets.get(ws.id, version_id)
    newest = newest_version(store, ws, version["dataset_id"])
    if newest["version"] != version["version"]:
        raise Conflict(
            f"this is version {version['version']} of {version['name']}; the dataset is at version "
            f"{newest['version']} now: edit the records of the newest version",
            field="version",
        )
    old = store.examples.get(ws.id, example_id, lambda _dataset: version["version"])
    if old["dataset_id"] != version["dataset_id"]:
        raise NotFound(f"example {example_id} is not in {version['name']}", field="example_id")
    return version, dict(old)


def _json_object(text: str, field: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{field} is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}", field=field, line=exc.lineno
        ) from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{field} must be a JSON object, not {type(value).__name__}", field=field)
    return value


def _still_trains(old: dict[str, Any], new: dict[str, Any]) -> None:
    try:
        record_from_example(old)
    except InvalidInput:
        return  # it held no conversation before either (an SDK example): any object will do
    try:
        record_from_example(new)
    except InvalidInput as exc:
        raise InvalidInput(f"the record would no longer train: {exc}", field="outputs") from None


def _examples(store: Any, ws: Workspace, version: dict[str, Any]) -> dict[uuid.UUID, dict[str, Any]]:
    rows = store.examples.list(ws.id, dataset_id=version["dataset_id"], version=version["version"], limit=COMPARE_LIMIT)
    return {row["id"]: dict(row) for row in rows}


def _changed_fields(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [key for key in ("inputs", "outputs", "splits", "metadata") if before.get(key) != after.get(key)]
