"""The ``tracetune`` command line. Heavy modules are imported inside the commands, never at start-up."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="tracetune: traces → datasets → fine-tunes → served models.",
)
keys_app = typer.Typer(no_args_is_help=True, help="API keys (each scoped to one workspace).")
runs_app = typer.Typer(no_args_is_help=True, help="Traced runs in the store.")
db_app = typer.Typer(no_args_is_help=True, help="The database.")
app.add_typer(keys_app, name="keys")
app.add_typer(runs_app, name="runs")
app.add_typer(db_app, name="db")

HomeOpt = Annotated[Path | None, typer.Option("--home", help="Data home (default: $TRACETUNE_HOME).")]
DbOpt = Annotated[str | None, typer.Option("--database-url", help="Store URL (default: $TRACETUNE_DATABASE_URL).")]


def fail(message: str) -> None:
    """A one-line error and exit code 2 (the CLI's mapping of every domain error)."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


def _open(home: Path | None, database_url: str | None) -> Any:
    from tracetune.config import load_settings
    from tracetune.store import open_store_from_settings

    settings = load_settings(home=home, database_url=database_url)
    return settings, open_store_from_settings(settings)


@app.command()
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
) -> None:
    """Run the server: LangSmith-compatible API at /api/v1, OpenAI-compatible API at /v1, health at /healthz."""
    import gc

    import uvicorn

    from tracetune.config import load_settings
    from tracetune.errors import TracetuneError
    from tracetune.server.app import create_app
    from tracetune.store import open_store_from_settings

    settings = load_settings(host=host, port=port, home=home, database_url=database_url)
    if model_alias:
        settings.model_aliases = {**settings.model_aliases, **_parse_aliases(model_alias)}
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
    base = f"http://{settings.host}:{settings.port}"
    typer.echo(
        f"tracetune serving {base}  (LANGSMITH_ENDPOINT={base}/api/v1)  store: {store.db.engine.url!r}",
        err=True,
    )
    server_app = create_app(settings, store)
    # What exists now (modules, the app, the store) lives as long as the process: move it out of the cyclic
    # GC's reach, or every full collection re-scans it (measured: a fifth of the server's ingest CPU). Ingest
    # allocates tens of thousands of short-lived containers per request; collecting the young generation
    # every 50,000 (not 700) allocations cut the remaining GC time by about two thirds (BENCH_GC_STATS=1
    # bench/ingest.py).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    uvicorn.run(
        server_app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=access_log,
    )


def _parse_aliases(values: list[str]) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for value in values:
        name, sep, model = value.partition("=")
        if not sep or not name.strip() or not model.strip():
            fail(f"--model-alias takes NAME=MODEL, got {value!r}")
        aliases[name.strip()] = model.strip()
    return aliases


@keys_app.command("create")
def keys_create(
    workspace: Annotated[str, typer.Option(help="Workspace the key belongs to (created if new).")],
    name: Annotated[str | None, typer.Option(help="A label for the key.")] = None,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Create an API key; it is printed once and stored only as a hash."""
    for option, value in (("--workspace", workspace), ("--name", name)):
        if value is not None and not (0 < len(value) <= 200 and "\x00" not in value):  # the columns' width
            fail(f"{option} must be 1 to 200 characters")
    _, store = _open(home, database_url)
    key, info = store.workspaces.create_key(workspace, name)
    typer.echo(key)
    typer.echo(f"created key {info.prefix}… for workspace {info.workspace!r}; it is not shown again.", err=True)


@keys_app.command("list")
def keys_list(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """List keys (prefix, workspace, state)."""
    from rich.console import Console
    from rich.table import Table

    _, store = _open(home, database_url)
    table = Table("prefix", "workspace", "name", "created", "state")
    for k in store.workspaces.list_keys():
        table.add_row(
            k.prefix + "…",
            k.workspace,
            k.name or "",
            k.created_at.isoformat(timespec="seconds"),
            "revoked" if k.revoked_at else "active",
        )
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(prefix: str, home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Revoke the key(s) starting with PREFIX (as shown by `keys list`)."""
    _, store = _open(home, database_url)
    n = store.workspaces.revoke_key(prefix.rstrip("…"))
    if not n:
        fail(f"no active key starts with {prefix!r}")
    typer.echo(f"revoked {n} key(s)")


@keys_app.command("open")
def keys_open(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Serve this store without keys again (loopback only). Refused while a key is active.

    Once a key has been created, a store stays keyed, also after its last key is revoked, until this command."""
    from tracetune.errors import Conflict

    _, store = _open(home, database_url)
    try:
        store.workspaces.open_without_keys()
    except Conflict as exc:
        fail(str(exc))
    typer.echo(
        "the store is open: requests without a key are let in (into the 'default' workspace) by servers on "
        "127.0.0.1; servers on other addresses refuse them"
    )


@runs_app.command("list")
def runs_list(
    project: Annotated[str, typer.Option("--project", "-p", help="Project name.")],
    run_type: Annotated[str | None, typer.Option("--run-type", help="llm, chain, tool, …")] = None,
    filter_: Annotated[str | None, typer.Option("--filter", help="Filter expression, e.g. 'eq(name, \"x\")'.")] = None,
    trace_filter: Annotated[str | None, typer.Option("--trace-filter", help="Filter on each run's root.")] = None,
    root: Annotated[bool, typer.Option("--root", help="Only root runs.")] = False,
    limit: Annotated[int, typer.Option(help="How many runs (newest first).")] = 20,
    workspace: Annotated[str, typer.Option(help="Workspace name.")] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (one run object per line).")] = False,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """List runs of a project, newest first."""
    from tracetune.errors import TracetuneError
    from tracetune.query.runs_query import RunQuery, query_runs

    _, store = _open(home, database_url)
    try:
        ws = store.workspaces.get(workspace)
        projects = store.projects.list(ws.id, name=project, limit=1)
        if not projects:
            fail(f"no project named {project!r} in workspace {workspace!r}")
        runs: list[dict[str, Any]] = []
        cursor = None
        while len(runs) < limit:
            page = query_runs(
                store,
                ws.id,
                RunQuery(
                    project_ids=[projects[0]["id"]],
                    run_type=run_type,
                    filter=filter_,
                    trace_filter=trace_filter,
                    is_root=True if root else None,
                    limit=min(100, limit - len(runs)),
                    cursor=cursor,
                    select=None
                    if as_json
                    else [
                        "name",
                        "run_type",
                        "status",
                        "error",
                        "total_tokens",
                        "latency",
                        "start_time",
                        "feedback_stats",
                    ],
                ),
            )
            runs.extend(page.runs)
            cursor = page.next_cursor
            if not cursor:
                break
    except TracetuneError as exc:
        fail(str(exc))
    if as_json:
        for run in runs:
            sys.stdout.write(json.dumps(run, default=str) + "\n")
        return
    _print_runs(runs)


def _print_runs(runs: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "name", "type", "status", "start", "latency s", "tokens", "feedback")
    for r in runs:
        fb = ", ".join(
            f"{k}={v['avg']:g}" for k, v in (r.get("feedback_stats") or {}).items() if v.get("avg") is not None
        )
        table.add_row(
            r["id"][:8] + "…",
            r["name"],
            r["run_type"],
            r["status"],
            (r["start_time"] or "")[:19],
            f"{r['latency']:.3f}" if r.get("latency") is not None else "",
            str(r.get("total_tokens") or ""),
            fb,
        )
    Console().print(table)
    Console(stderr=True).print(f"{len(runs)} run(s)")


@db_app.command("upgrade")
def db_upgrade(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Create or upgrade the schema to the newest version (also done on every open)."""
    from tracetune.store.engine import current_revision

    _, store = _open(home, database_url)
    typer.echo(f"{store.db.engine.url!r} at revision {current_revision(store.db.engine)}")


def _register_commands() -> None:
    from tracetune.cli_demo import demo_command
    from tracetune.cli_eval import eval_command
    from tracetune.cli_export import export_command, validate_command
    from tracetune.cli_jobs import jobs_app, models_app, train_command, worker_command

    app.command("demo")(demo_command)
    app.command("export")(export_command)
    app.command("validate")(validate_command)
    app.command("train")(train_command)
    app.command("worker")(worker_command)
    app.command("eval")(eval_command)
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(models_app, name="models")


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
