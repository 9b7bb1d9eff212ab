"""What every route depends on: the app state, the caller's workspace (authentication), the bounded and decoded body."""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from tracetune.config import Settings
from tracetune.errors import InvalidInput, PayloadTooLarge, Unauthorized
from tracetune.ingest.encoding import decode_body
from tracetune.ingest.service import IngestService
from tracetune.store import Store
from tracetune.store.blobs import Blobs
from tracetune.store.workspaces import DEFAULT_WORKSPACE, Workspace

if TYPE_CHECKING:
    from tracetune.loop.runner import AutomationRunner
    from tracetune.train.runner import JobRunner

log = logging.getLogger("tracetune.server")
T = TypeVar("T")


def new_internal_key() -> str:
    return f"tt-internal-{secrets.token_urlsafe(32)}"


@dataclass
class AppState:
    settings: Settings
    store: Store
    blobs: Blobs  # files, attachments, adapters, checkpoints (tracetune.store.blobs)
    ingest: IngestService
    runner: JobRunner | None = None  # runs fine-tuning jobs in this process (settings.run_jobs)
    automations: AutomationRunner | None = None  # fires automations in this process (settings.run_automations)
    # This process's own calls to its own /v1 (an automation's evaluation) send "<internal_key>.<workspace id>":
    # never stored, never shown, valid for this process only, in any auth mode.
    internal_key: str = field(default_factory=new_internal_key)


def state(request: Request) -> AppState:
    return request.app.state.tt


def workspace(request: Request) -> Workspace:
    """The caller's workspace: from its API key (``x-api-key`` or ``Authorization: Bearer``), or the default
    workspace when the server runs open (its store never had keys, or was opened again)."""
    return workspace_for_key(state(request), api_key(request))


def api_key(request: Request) -> str | None:
    """The API key the caller sent (``x-api-key`` or ``Authorization: Bearer``), if any."""
    key = request.headers.get("x-api-key")
    if not key:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            key = auth[7:].strip()
    return key or None


def workspace_for_key(st: AppState, key: str | None) -> Workspace:
    """The workspace of API key ``key``; the default workspace when the store runs open. Shared by the APIs (key
    from a header) and the web UI (key from its session cookie). Read from the store on every call: a key
    revoked by any process is refused on the next request, and revoking the last key does not open the server."""
    keys = st.store.workspaces
    if key and key.startswith("tt-internal-"):
        internal, _, workspace_id = key.partition(".")
        found = keys.by_id(workspace_id) if hmac.compare_digest(internal, st.internal_key) else None
        if found is not None:
            return found
        raise Unauthorized("invalid internal key")
    ws, keyed = keys.access(key)
    if ws is not None:
        return ws
    if keyed:
        if not key:
            raise Unauthorized("this server requires an API key: send it as x-api-key (or Authorization: Bearer)")
        raise Unauthorized("invalid or revoked API key")
    if not st.settings.is_loopback():
        # Checked on every request, not only at start-up: the store may have been opened since.
        raise Unauthorized(
            f"this server listens on {st.settings.host} and its store has no API keys, so it refuses every request "
            "(anyone on the network could read and write the traces): create one with `tracetune keys create "
            "--workspace NAME`, or serve on 127.0.0.1"
        )
    return keys.ensure(DEFAULT_WORKSPACE)


async def read_body(request: Request) -> bytes:
    """The body, its ``Content-Encoding`` (zstd, gzip) undone, refusing (413) anything over ``max_body_bytes``
    before reading or decompressing all of it; 415 for another encoding. Every route reads bodies here or
    through ``with_body``."""
    raw = await _read_capped(request)
    if request.headers.get("content-encoding") is None:
        return raw
    return await run_in_threadpool(_decoded, request, raw)  # CPU work: off the event loop


async def with_body(request: Request, work: Callable[[bytes], T]) -> T:
    """``work(body)`` in the thread pool, the body read as ``read_body`` reads it and decoded in the same thread
    call: the ingest routes cross to a thread once per request, not twice (a crossing costs ~0.1 ms of CPU)."""
    raw = await _read_capped(request)
    return await run_in_threadpool(lambda: work(_decoded(request, raw)))


async def _read_capped(request: Request) -> bytes:
    limit = state(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body ({declared} bytes) is over the limit of {limit} bytes", field="body")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over the limit of {limit} bytes", field="body")
        chunks.append(chunk)
    return b"".join(chunks)


def _decoded(request: Request, raw: bytes) -> bytes:
    return decode_body(raw, request.headers.get("content-encoding"), state(request).settings.max_body_bytes)


def parse_json(body: bytes) -> Any:
    if not body:
        raise InvalidInput("the body is empty; expected JSON", field="body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc}", field="body") from None
