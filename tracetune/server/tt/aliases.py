"""tracetune's alias routes under /tt/v1: versioned aliases of served models, with history and one-step rollback.

``GET /tt/v1/aliases`` (the current ones), ``GET /tt/v1/aliases/{name}`` (with its history, newest first),
``PUT /tt/v1/aliases/{name}`` ``{"model": …}`` (a new version; the model must be served, no cycle),
``POST /tt/v1/aliases/{name}/rollback`` (back to what the version before named), ``DELETE /tt/v1/aliases/{name}``
(a version naming nothing: the history stays). ``/v1/chat/completions`` reads them on every request.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from tracetune.errors import NotFound
from tracetune.serve.lookup import served_check, set_alias
from tracetune.server.deps import state, workspace
from tracetune.server.tt.protocol import AliasSet, alias_view
from tracetune.store.workspaces import Workspace

router = APIRouter(prefix="/tt/v1", tags=["aliases"])


@router.get("/aliases")
def aliases_list(request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    return {"data": [alias_view(row) for row in state(request).store.aliases.list(ws.id)]}


@router.get("/aliases/{name}")
def aliases_read(name: str, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    history = state(request).store.aliases.history(ws.id, name)
    if history[0]["model"] is None:
        raise NotFound(f"alias {name!r} was removed (version {history[0]['version']})", field="name")
    return {**alias_view(history[0]), "history": [alias_view(row) for row in history]}


@router.put("/aliases/{name}")
def aliases_set(name: str, body: AliasSet, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    st = state(request)
    row = set_alias(
        name, body.model, blobs=st.blobs, store=st.store, workspace_id=ws.id, aliases=st.settings.model_aliases
    )
    return alias_view(row)


@router.post("/aliases/{name}/rollback")
def aliases_rollback(name: str, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    st = state(request)
    check = served_check(st.blobs, st.store, ws.id, st.settings.model_aliases)
    return alias_view(st.store.aliases.rollback(ws.id, name, check))


@router.delete("/aliases/{name}")
def aliases_delete(name: str, request: Request, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    return alias_view(state(request).store.aliases.remove(ws.id, name))
