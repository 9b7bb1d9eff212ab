"""``POST /v1/chat/completions``: thin. Parse the body, prepare the request off the event loop (model lookup, first
engine load, tokenizing, constraint compile), then answer the completion or stream it as server-sent events.

The serving class (:class:`tracetune.serve.chat.ChatService`) is made on first use from the app's settings and
store (so importing the app never imports torch); tests install their own with :func:`install_chat_service`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from tracetune.serve.chat import ChatService
from tracetune.serve.engine.manager import EngineManager, engine_factory
from tracetune.serve.protocol import ChatCompletionRequest
from tracetune.server.deps import state, workspace
from tracetune.store.workspaces import Workspace

log = logging.getLogger("tracetune.server.chat")
router = APIRouter(prefix="/v1", tags=["openai"])
_install_lock = threading.Lock()


def install_chat_service(app: FastAPI, service: ChatService) -> None:
    """Serve chat completions of ``app`` with ``service`` (its engines, aliases)."""
    app.state.chat_service = service


def close_chat_service(app: FastAPI) -> None:
    """Stop the engines the app started (at shutdown; requests still running end with an error)."""
    service: ChatService | None = getattr(app.state, "chat_service", None)
    if service is not None:
        service.engines.close()


def chat_service(request: Request) -> ChatService:
    """The app's serving class, created on first use: one engine per base model, over the data home."""
    app = request.app
    service: ChatService | None = getattr(app.state, "chat_service", None)
    if service is None:
        with _install_lock:
            service = getattr(app.state, "chat_service", None)
            if service is None:
                st = state(request)
                settings = st.settings
                service = ChatService(
                    blobs=st.blobs,
                    store=st.store,
                    engines=EngineManager(
                        engine_factory(
                            settings.home, settings.engine, settings.engine_threads, settings.llamacpp_weights
                        )
                    ),
                    aliases=getattr(settings, "model_aliases", {}),
                )
                install_chat_service(app, service)
    return service


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, ws: Workspace = Depends(workspace)
) -> Response:
    service = chat_service(request)
    if body.model_extra:
        log.debug("chat completions: ignoring unknown fields %s", sorted(body.model_extra))
    prepared = await run_in_threadpool(service.prepare, body, ws.id)
    if not body.stream:
        completion = await service.complete(prepared)
        return Response(orjson.dumps(completion), media_type="application/json")
    return StreamingResponse(_sse(service.stream(prepared)), media_type="text/event-stream")


async def _sse(chunks: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield b"data: " + orjson.dumps(chunk) + b"\n\n"
    yield b"data: [DONE]\n\n"
