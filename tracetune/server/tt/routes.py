"""tracetune's own dataset routes under /tt/v1 (for the UI). Thin: parse, call one service, shape the answer."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from tracetune.convert.examples import iter_dataset_records
from tracetune.convert.export import export_dataset
from tracetune.server.deps import state, workspace
from tracetune.server.tt.protocol import DatasetCreate, dataset_view
from tracetune.store.workspaces import Workspace

router = APIRouter(prefix="/tt/v1", tags=["datasets"])

_CHUNK = 1 << 16


@router.post("/datasets", status_code=201)
def datasets_create(body: DatasetCreate, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    """Build a dataset from the selection (the next version of ``name``) and store it with its records."""
    st = state(request)
    result = export_dataset(
        st.store, ws.id, body.selection.to_selection(), body.options.to_options(body.name), home=st.settings.home
    )
    assert result.dataset is not None  # a name is always given here
    return dataset_view(result.dataset)


@router.get("/datasets")
def datasets_list(
    request: Request,
    ws: Workspace = Depends(workspace),
    name: str | None = Query(default=None, max_length=200),
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, lt=2**31),
) -> list[dict[str, Any]]:
    rows = state(request).store.datasets.list(ws.id, name=name, limit=limit, offset=offset)
    return [dataset_view(r) for r in rows]


@router.get("/datasets/{dataset_id}")
def datasets_read(dataset_id: uuid.UUID, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    return dataset_view(state(request).store.datasets.get(ws.id, dataset_id))


@router.get("/datasets/{dataset_id}/records")
def datasets_records(
    dataset_id: uuid.UUID,
    request: Request,
    ws: Workspace = Depends(workspace),
    split: Literal["train", "validation"] | None = Query(default=None),
    lineage: bool = Query(default=False, description="Each line {line, split, run_ids, trace_id, record}."),
) -> StreamingResponse:
    """The records as JSONL (a fine-tuning file), in line order; ``lineage=true`` wraps each with its origin.
    A version written through LangSmith's API may hold an example that is no conversation: it is checked whole
    first, so that is a 400 naming the example, not a download cut short (an export's are records already)."""
    store = state(request).store
    if store.datasets.get(ws.id, dataset_id)["source"] != "export":
        for _ in iter_dataset_records(store, ws.id, dataset_id, split=split):
            pass
    records = iter_dataset_records(store, ws.id, dataset_id, split=split)
    filename = f"dataset-{dataset_id}-{split or 'all'}.jsonl"
    return StreamingResponse(
        _jsonl(records, lineage),
        media_type="application/x-ndjson",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


def _jsonl(records: Iterator[dict[str, Any]], lineage: bool) -> Iterator[bytes]:
    chunk = bytearray()
    for rec in records:
        chunk += orjson.dumps(rec if lineage else rec["record"], option=orjson.OPT_APPEND_NEWLINE)
        if len(chunk) >= _CHUNK:
            yield bytes(chunk)
            chunk.clear()
    if chunk:
        yield bytes(chunk)
