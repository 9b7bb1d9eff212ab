"""``tracetune serve``: the one server (the APIs, the UI, the job runner)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tracetune.cli._common import DbOpt, HomeOpt, fail


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1, $TRACETUNE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8080, $TRACETUNE_PORT).")] = None,
    home: HomeOpt = None,
    database_url: DbOpt = None,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    model_alias: Annotated[
        list[str] | None,
        typer.Option(
            "--model-alias",
            metavar="NAME=MODEL",
            help="Serve MODEL (a base or ft: model id) under NAME too, e.g. gpt-4o-mini=smollm2-135m-instruct. "
            "Repeatable; adds to $TRACETUNE_MODEL_ALIASES.",
        ),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            help="Inference engine: auto (vLLM on a CUDA machine where installed, else llama.cpp for GGUF models when "
            "installed, else transformers), llamacpp, vllm, transformers. Default $TRACETUNE_ENGINE or auto."
        ),
    ] = None,
) -> None:
    """Run the server: LangSmith-compatible API at /api/v1, OpenAI-compatible API at /v1, health at /healthz."""

    import uvicorn

    from tracetune.config import load_settings
    from tracetune.errors import TracetuneError
    from tracetune.server.app import create_app
    from tracetune.store import open_store_from_settings

    try:
        settings = load_settings(host=host, port=port, home=home, database_url=database_url, engine=engine)
    except ValueError as exc:
        fail(f"--engine must be auto, llamacpp, vllm or transformers: {engine!r}" if engine else str(exc))
    if model_alias:
        settings.model_aliases = {**settings.model_aliases, **parse_aliases(model_alias)}
    try:
        store = open_store_from_settings(settings)
    except TracetuneError as exc:
        fail(str(exc))
    keyed = store.workspaces.auth_required()
    if keyed and not any(k.revoked_at is None for k in store.workspaces.list_keys()):
        typer.secho(
            "Every API key of this store is revoked: every request will be refused. Create one with "
            "`tracetune keys create --workspace NAME`, or run `tracetune keys open` to serve without keys.",
            err=True,
            fg=typer.colors.YELLOW,
        )
    if not keyed:
        if not settings.is_loopback():
            fail(
                f"refusing to listen on {settings.host} without API keys: anyone on the network could read and "
                "write your traces. Create one with `tracetune keys create --workspace NAME`, or bind to 127.0.0.1."
            )
        typer.secho(
            "No API keys configured: running OPEN on loopback (every request uses the 'default' workspace). "
            "Create keys with `tracetune keys create --workspace NAME` to require them.",
            err=True,
            fg=typer.colors.YELLOW,
        )
    from tracetune.capabilities import INSTALL_MODELS, missing_capabilities

    for capability, packages in missing_capabilities().items():
        typer.secho(
            f"off: {capability} — {', '.join(packages)} not installed (requests for it answer 503). "
            f"Install: {INSTALL_MODELS}",
            err=True,
            fg=typer.colors.YELLOW,
        )
    _say_engines(settings)
    base = f"http://{settings.host}:{settings.port}"
    typer.echo(
        f"tracetune serving {base}  (LANGSMITH_ENDPOINT={base}/api/v1)  store: {store.db.engine.url!r}"
        + (f"  blobs: {settings.blob_url}" if settings.blob_url else ""),
        err=True,
    )
    server_app = create_app(settings, store)
    tune_gc()
    uvicorn.run(
        server_app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=access_log,
    )


def _say_engines(settings: Any) -> None:
    """One line per base model: the engine that will serve it and its fine-tuned models, and why."""
    from tracetune.errors import TracetuneError
    from tracetune.models.engines import choose_engine
    from tracetune.models.registry import list_models
    from tracetune.threads import engine_threads

    threads = engine_threads(settings.engine_threads)
    for spec in list_models(settings.home):
        try:
            choice = choose_engine(settings.home, spec.id, settings.engine)
            line = f"engine: {spec.id} on {choice.engine} ({choice.reason}), {threads} thread(s)"
        except TracetuneError as exc:
            line = f"engine: {spec.id} cannot be served: {exc}"
        typer.echo(line, err=True)


def parse_aliases(values: list[str]) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for value in values:
        name, sep, model = value.partition("=")
        if not sep or not name.strip() or not model.strip():
            fail(f"--model-alias takes NAME=MODEL, got {value!r}")
        aliases[name.strip()] = model.strip()
    return aliases


def tune_gc() -> None:
    """Set the cyclic garbage collector up for serving (``bench/ingest_stages.py`` does the same, so that its
    stage figures are the server's).

    What exists now (modules, the app, the store) lives as long as the process: it is moved out of the
    collector's reach, or every full collection re-scans it (measured: a fifth of the server's ingest CPU).
    Ingest allocates tens of thousands of short-lived containers per request, freed by their reference counts;
    collecting the young generation every 50,000 (not 700) allocations cut the remaining GC time by about two
    thirds (``BENCH_GC_STATS=1 bench/ingest.py``)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
