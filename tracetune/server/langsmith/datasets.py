"""Datasets and examples: ``/api/v1/datasets`` and ``/api/v1/examples``, the SDK's dataset API on its JSON paths
(``/info`` does not advertise the multipart example upload, so the SDK sends ``POST /examples`` and
``/examples/bulk``). An example made with ``use_source_run_io`` takes its run's inputs and outputs, and the tools
the run offered (``extra.invocation_params.tools``) as ``inputs.tools``.

One store with tracetune's exports (``tracetune.store.datasets``): a dataset saved by ``tracetune export --name``
or the UI is listed here, and an example added here is in the next training file."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from tracetune.convert.csv_examples import examples_from_csv
from tracetune.convert.examples import record_from_example, run_example_io
from tracetune.errors import InvalidInput
from tracetune.ingest.multipart import split_parts
from tracetune.query.example_filter import example_predicate
from tracetune.server.deps import parse_json, read_body, state, workspace
from tracetune.server.langsmith.protocol import (
    ComparativeCreate,
    DatasetCreate,
    DatasetTag,
    DatasetUpdate,
    ExampleCreate,
    ExampleUpdate,
    SplitsUpdate,
    comparative_view,
    dataset_view,
    example_view,
    version_view,
)
from tracetune.store import Store
from tracetune.store.examples import ExampleChange, NewExample
from tracetune.store.workspaces import Workspace

router = APIRouter(prefix="/api/v1")

MAX_BULK = 10_000


def _one_dataset(store: Store, ws: Workspace, dataset_id: uuid.UUID) -> dict[str, Any]:
    found = store.datasets.list_datasets(ws.id, ids=[dataset_id], limit=1)
    if not found:
        store.datasets.dataset(ws.id, dataset_id)  # raises the 404
    return dataset_view(found[0])


def _metadata_param(metadata: str | None) -> dict[str, Any] | None:
    if metadata is None:
        return None
    try:
        parsed = orjson.loads(metadata)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise InvalidInput("metadata must be a JSON object of key/value pairs to match", field="metadata")
    return parsed


# -- datasets ----------------------------------------------------------------------------------------------------


@router.post("/datasets")
def datasets_create(body: DatasetCreate, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    store = state(request).store
    row = store.datasets.create_dataset(ws.id, body.name, data_type=body.data_type, **body.fields())
    return _one_dataset(store, ws, row["id"])


@router.get("/datasets")
def datasets_list(
    request: Request,
    ws: Workspace = Depends(workspace),
    id: list[uuid.UUID] | None = Query(default=None),
    name: str | None = None,
    name_contains: str | None = None,
    data_type: str | None = None,
    metadata: str | None = None,
    limit: int = Query(default=100, ge=1, le=100),
    offset: int = Query(default=0, ge=0),
) -> list[dict[str, Any]]:
    rows = state(request).store.datasets.list_datasets(
        ws.id,
        ids=id,
        name=name,
        name_contains=name_contains,
        data_type=data_type,
        metadata=_metadata_param(metadata),
        offset=offset,
        limit=limit,
    )
    return [dataset_view(r) for r in rows]


@router.post("/datasets/comparative")
def comparative_create(body: ComparativeCreate, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    """A comparison of experiments over one dataset (``evaluate((a, b), …)``); its feedback names it."""
    row = state(request).store.projects.create_comparison(
        ws.id,
        experiment_ids=body.experiment_ids,
        reference_dataset_id=body.reference_dataset_id,
        comparison_id=body.id,
        name=body.name,
        description=body.description,
        extra=body.extra,
    )
    return comparative_view(row)


@router.get("/datasets/{dataset_id}/comparative")
def comparative_list(
    dataset_id: uuid.UUID,
    request: Request,
    ws: Workspace = Depends(workspace),
    limit: int = Query(default=100, ge=1, le=100),
    offset: int = Query(default=0, ge=0),
) -> list[dict[str, Any]]:
    store = state(request).store
    store.datasets.dataset(ws.id, dataset_id)
    return [comparative_view(r) for r in store.projects.comparisons(ws.id, dataset_id, limit=limit, offset=offset)]


@router.get("/datasets/{dataset_id}")
def datasets_read(dataset_id: uuid.UUID, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    return _one_dataset(state(request).store, ws, dataset_id)


@router.patch("/datasets/{dataset_id}")
def datasets_update(
    dataset_id: uuid.UUID, body: DatasetUpdate, request: Request, ws: Workspace = Depends(workspace)
) -> dict[str, Any]:
    store = state(request).store
    store.datasets.update_dataset(ws.id, dataset_id, **body.fields())
    return _one_dataset(store, ws, dataset_id)


@router.delete("/datasets/{dataset_id}")
def datasets_delete(dataset_id: uuid.UUID, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    state(request).store.datasets.delete_dataset(ws.id, dataset_id)
    return {"status": "deleted", "id": str(dataset_id)}


@router.get("/datasets/{dataset_id}/versions")
def datasets_versions(
    dataset_id: uuid.UUID,
    request: Request,
    ws: Workspace = Depends(workspace),
    limit: int = Query(default=100, ge=1, le=100),
    offset: int = Query(default=0, ge=0),
) -> list[dict[str, Any]]:
    rows = state(request).store.datasets.versions(ws.id, dataset_id, offset=offset, limit=limit)
    return [version_view(r) for r in rows]


@router.get("/datasets/{dataset_id}/version")
def datasets_version(
    dataset_id: uuid.UUID,
    request: Request,
    ws: Workspace = Depends(workspace),
    as_of: datetime | None = None,
    tag: str | None = None,
) -> dict[str, Any]:
    """The version in effect at ``as_of``, or the one carrying ``tag`` (exactly one of them)."""
    if (as_of is None) == (tag is None):
        raise InvalidInput("give exactly one of as_of and tag", field="as_of")
    datasets = state(request).store.datasets
    wanted = datasets.version_at(ws.id, dataset_id, as_of if as_of is not None else tag)
    rows = datasets.versions(ws.id, dataset_id, limit=1 if wanted is None else 1_000_000)
    row = rows[0] if wanted is None and rows else next((r for r in rows if r["version"] == wanted), None)
    if row is None:
        raise InvalidInput(f"dataset {dataset_id} had no version at {as_of}", field="as_of")
    return version_view(row)


@router.put("/datasets/{dataset_id}/tags")
def datasets_tag(
    dataset_id: uuid.UUID, body: DatasetTag, request: Request, ws: Workspace = Depends(workspace)
) -> dict[str, Any]:
    return version_view(state(request).store.datasets.tag(ws.id, dataset_id, body.as_of, body.tag))


@router.get("/datasets/{dataset_id}/splits")
def datasets_splits(
    dataset_id: uuid.UUID, request: Request, ws: Workspace = Depends(workspace), as_of: str | None = None
) -> list[str]:
    store = state(request).store
    version = store.datasets.version_at(ws.id, dataset_id, as_of)
    return store.examples.splits(ws.id, dataset_id, version)


@router.put("/datasets/{dataset_id}/splits")
def datasets_splits_update(
    dataset_id: uuid.UUID, body: SplitsUpdate, request: Request, ws: Workspace = Depends(workspace)
) -> list[str]:
    """Add examples to split ``split_name`` (or take them out with ``remove``): one new version."""
    store = state(request).store
    current = store.examples.list(ws.id, dataset_id=dataset_id, ids=body.examples, limit=len(body.examples) or 1)
    found = {ex["id"]: ex for ex in current}
    for i, example_id in enumerate(body.examples):
        if example_id not in found:
            raise InvalidInput(f"example {example_id} is not in dataset {dataset_id}", field=f"examples[{i}]")
    changes = []
    for ex in found.values():
        splits = [s for s in ex["splits"] if s != body.split_name]
        if not body.remove:
            splits.append(body.split_name)
        changes.append(ExampleChange(ex["id"], splits=splits or ["base"]))
    store.examples.change(ws.id, changes)
    return [str(i) for i in body.examples]


@router.get("/datasets/{dataset_id}/openai_ft")
async def datasets_openai_ft(
    dataset_id: uuid.UUID, request: Request, ws: Workspace = Depends(workspace), as_of: str | None = None
) -> Response:
    """The dataset as an OpenAI chat fine-tuning file: one ``{"messages", "tools"?}`` record per example."""
    store = state(request).store

    def build() -> bytes:
        version = store.datasets.version_at(ws.id, dataset_id, as_of)
        rows = store.datasets.iter_dataset(ws.id, dataset_id, version, record_from_example)  # type: ignore[arg-type]
        return b"".join(orjson.dumps(r["record"], option=orjson.OPT_APPEND_NEWLINE) for r in rows)

    return Response(await run_in_threadpool(build), media_type="application/jsonl")


@router.post("/datasets/upload")
async def datasets_upload(request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    """``upload_csv``: a multipart form with ``file`` (CSV), ``input_keys``/``output_keys`` (repeated),
    ``name``, ``description``, ``data_type``, ``id``. The dataset and its examples are one transaction each;
    a malformed file makes no dataset."""
    store = state(request).store
    parts = split_parts(await read_body(request), request.headers.get("content-type"))
    form: dict[str, list[bytes]] = {}
    filename = None
    for part in parts:
        form.setdefault(part.name, []).append(part.data)
        if part.name == "file":
            disposition = part.headers.get("content-disposition", "")
            if "filename=" in disposition:
                filename = disposition.split("filename=", 1)[1].split(";")[0].strip().strip('"')

    def text(key: str) -> str | None:
        values = form.get(key)
        return values[-1].decode("utf-8", "replace") if values else None

    if "file" not in form:
        raise InvalidInput("the form has no 'file' part (the CSV)", field="file")
    inputs = [v.decode("utf-8", "replace") for v in form.get("input_keys", [])]
    outputs = [v.decode("utf-8", "replace") for v in form.get("output_keys", [])]
    rows = examples_from_csv(form["file"][-1], inputs, outputs)
    meta = DatasetCreate(
        name=text("name") or (filename or "").removesuffix(".csv") or "",
        description=text("description"),
        data_type=text("data_type") or "kv",  # type: ignore[arg-type]
        id=text("id"),  # type: ignore[arg-type]
    )

    def write() -> dict[str, Any]:
        row = store.datasets.create_dataset(ws.id, meta.name, data_type=meta.data_type, **meta.fields())
        store.examples.add(ws.id, row["id"], [NewExample(i, o) for i, o in rows])
        return _one_dataset(store, ws, row["id"])

    return await run_in_threadpool(write)


# -- examples ----------------------------------------------------------------------------------------------------


def _new_example(store: Store, ws: Workspace, body: ExampleCreate) -> NewExample:
    inputs, outputs, trace_id = body.inputs, body.outputs, None
    if body.source_run_id is not None:
        run = store.runs.get(ws.id, body.source_run_id)
        if run is None:
            raise InvalidInput(f"source run {body.source_run_id} not found", field="source_run_id")
        trace_id = run["trace_id"]
        if body.use_source_run_io:
            inputs, outputs = run_example_io(dict(run))
    if inputs is None:
        raise InvalidInput("an example needs inputs (or use_source_run_io with a source_run_id)", field="inputs")
    return NewExample(
        inputs=inputs,
        outputs=outputs,
        metadata=body.own_metadata(),
        splits=body.splits(),
        id=body.id,
        created_at=body.created_at,
        source_run_id=body.source_run_id,
        trace_id=trace_id,
    )


def _create_examples(store: Store, ws: Workspace, bodies: list[ExampleCreate]) -> list[dict[str, Any]]:
    """Add examples, one version per dataset they go to; views in the order given."""
    by_dataset: dict[uuid.UUID, list[int]] = {}
    for i, body in enumerate(bodies):
        by_dataset.setdefault(body.dataset_id, []).append(i)
    views: dict[int, dict[str, Any]] = {}
    for dataset_id in by_dataset:
        store.datasets.dataset(ws.id, dataset_id)  # 404 before anything is written
    for dataset_id, at in by_dataset.items():
        rows, _ = store.examples.add(ws.id, dataset_id, [_new_example(store, ws, bodies[i]) for i in at])
        views.update((i, example_view(r)) for i, r in zip(at, rows, strict=True))
    return [views[i] for i in range(len(bodies))]


@router.post("/examples")
def examples_create(body: ExampleCreate, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    return _create_examples(state(request).store, ws, [body])[0]


@router.post("/examples/bulk")
async def examples_bulk(request: Request, ws: Workspace = Depends(workspace)) -> list[dict[str, Any]]:
    payload = parse_json(await read_body(request))
    if not isinstance(payload, list):
        raise InvalidInput("the body must be a JSON array of examples", field="body")
    if len(payload) > MAX_BULK:
        raise InvalidInput(f"at most {MAX_BULK} examples per request, not {len(payload)}", field="body")
    bodies = []
    for i, item in enumerate(payload):
        try:
            bodies.append(ExampleCreate.model_validate(item))
        except ValueError as exc:
            raise InvalidInput(f"example {i}: {_first_error(exc)}", field=f"[{i}]") from None
    return await run_in_threadpool(_create_examples, state(request).store, ws, bodies)


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors) and errors():
        err = errors()[0]
        return f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}"
    return str(exc)


@router.get("/examples")
def examples_list(
    request: Request,
    ws: Workspace = Depends(workspace),
    dataset: uuid.UUID | None = None,
    id: list[uuid.UUID] | None = Query(default=None),
    as_of: str | None = None,
    splits: list[str] | None = Query(default=None),
    metadata: str | None = None,
    filter: str | None = None,
    limit: int = Query(default=100, ge=1, le=100),
    offset: int = Query(default=0, ge=0),
) -> list[dict[str, Any]]:
    store = state(request).store
    where = example_predicate(filter) if filter is not None else None
    version = None
    if as_of is not None:
        if dataset is None:
            raise InvalidInput("as_of needs a dataset", field="as_of")
        version = store.datasets.version_at(ws.id, dataset, as_of)
    elif dataset is not None:
        store.datasets.dataset(ws.id, dataset)  # 404 for another workspace's or a missing dataset
    rows = store.examples.list(
        ws.id,
        dataset_id=dataset,
        version=version,
        ids=id,
        splits=splits,
        metadata=_metadata_param(metadata),
        where=where,
        offset=offset,
        limit=limit,
    )
    return [example_view(r) for r in rows]


@router.get("/examples/{example_id}")
def examples_read(
    example_id: uuid.UUID, request: Request, ws: Workspace = Depends(workspace), as_of: str | None = None
) -> dict[str, Any]:
    store = state(request).store
    row = store.examples.get(ws.id, example_id, lambda ds: store.datasets.version_at(ws.id, ds, as_of))
    return example_view(row)


@router.patch("/examples/{example_id}")
def examples_update(
    example_id: uuid.UUID, body: ExampleUpdate, request: Request, ws: Workspace = Depends(workspace)
) -> dict[str, Any]:
    change = ExampleChange(example_id, body.inputs, body.outputs, body.own_metadata(), body.splits())
    (row,) = state(request).store.examples.change(ws.id, [change])
    return example_view(row)


@router.delete("/examples/{example_id}")
def examples_delete(example_id: uuid.UUID, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    state(request).store.examples.delete(ws.id, [example_id])
    return {"status": "deleted", "id": str(example_id)}


@router.delete("/examples")
def examples_delete_many(
    request: Request, ws: Workspace = Depends(workspace), example_ids: list[uuid.UUID] = Query(default=[])
) -> dict[str, Any]:
    if not example_ids:
        raise InvalidInput("name the examples to delete: example_ids=…", field="example_ids")
    state(request).store.examples.delete(ws.id, example_ids)
    return {"status": "deleted", "count": len(example_ids)}
