"""The FastAPI application: one process serving every surface of tracetune."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from tracetune import __version__
from tracetune.capabilities import missing_capabilities
from tracetune.config import Settings
from tracetune.ingest.service import IngestService
from tracetune.loop.runner import AutomationRunner
from tracetune.server.deps import AppState, new_internal_key
from tracetune.server.errors import install_error_handlers
from tracetune.server.langsmith import datasets as langsmith_datasets
from tracetune.server.langsmith import otel as langsmith_otel
from tracetune.server.langsmith import queues as langsmith_queues
from tracetune.server.langsmith import routes as langsmith_routes
from tracetune.server.langsmith import v2 as langsmith_v2
from tracetune.server.openai import chat as openai_chat
from tracetune.server.openai import routes as openai_routes
from tracetune.server.tt import aliases as tt_aliases
from tracetune.server.tt import automations as tt_automations
from tracetune.server.tt import routes as tt_routes
from tracetune.server.ui.mount import mount_ui
from tracetune.store import Store, open_store_from_settings
from tracetune.store.blobs import blobs_from_settings
from tracetune.train.runner import JobRunner


def create_app(settings: Settings, store: Store | None = None) -> FastAPI:
    """The app over ``store`` (opened from ``settings`` when not given; the store is upgraded on open)."""
    store = store or open_store_from_settings(settings)
    blobs = blobs_from_settings(settings)
    runner = JobRunner(store, settings, serving=True) if settings.run_jobs else None
    internal_key = new_internal_key()
    automations = AutomationRunner(store, settings, internal_key=internal_key) if settings.run_automations else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for thread in (runner, automations):
            if thread is not None:
                thread.start()
        try:
            yield
        finally:
            for thread in (automations, runner):  # a firing stops before the job it waits for
                if thread is not None:
                    await run_in_threadpool(thread.stop)
            await run_in_threadpool(openai_chat.close_chat_service, app)

    app = FastAPI(
        title="tracetune",
        version=__version__,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    app.state.tt = AppState(
        settings=settings,
        store=store,
        blobs=blobs,
        ingest=IngestService(store, blobs),
        runner=runner,
        automations=automations,
        internal_key=internal_key,
    )
    install_error_handlers(app)
    app.include_router(langsmith_routes.router)
    app.include_router(langsmith_v2.router)
    app.include_router(langsmith_otel.router)
    app.include_router(langsmith_queues.router)
    app.include_router(langsmith_datasets.router)
    app.include_router(tt_routes.router)
    app.include_router(tt_aliases.router)
    app.include_router(tt_automations.router)
    app.include_router(openai_routes.router)
    app.include_router(openai_chat.router)
    mount_ui(app)  # the web UI at / (after the APIs: its paths never overlap theirs)

    missing = missing_capabilities()  # found once: packages do not appear while the server runs

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "database": store.db.dialect,
            "capabilities_off": {name: f"missing {', '.join(pkgs)}" for name, pkgs in missing.items()},
        }

    return app
