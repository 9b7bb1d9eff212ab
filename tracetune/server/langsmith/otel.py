"""OTLP/HTTP trace ingest: ``POST /api/v1/otel/v1/traces`` (where the langsmith SDK's OTel mode exports, under
``LANGSMITH_ENDPOINT``) and ``POST /otel/v1/traces`` (what a generic exporter gets from
``OTEL_EXPORTER_OTLP_ENDPOINT=http://HOST:PORT/otel``). Same keys, limits and gzip handling as every route."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from tracetune.ingest.otlp import PROJECT_HEADER, encode_response
from tracetune.server.deps import state, with_body, workspace
from tracetune.store.workspaces import Workspace

router = APIRouter()


@router.post("/api/v1/otel/v1/traces")
@router.post("/otel/v1/traces")
async def otlp_traces(request: Request, ws: Workspace = Depends(workspace)) -> Response:
    st = state(request)
    content_type = request.headers.get("content-type")
    project = request.headers.get(PROJECT_HEADER)
    await with_body(request, lambda body: st.ingest.otlp(ws.id, body, content_type, project))
    payload, media = encode_response(content_type)
    return Response(payload, media_type=media)
