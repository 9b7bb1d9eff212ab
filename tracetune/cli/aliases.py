"""``tracetune aliases …``: the stored, versioned aliases of served models (``/tt/v1/aliases``): every server on
the store reads them on each request, so a change or a rollback takes effect without a restart."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tracetune.cli._common import DbOpt, HomeOpt, WorkspaceOpt, fail, open_store_for

aliases_app = typer.Typer(no_args_is_help=True, help="Aliases of served models: versioned, with rollback.")


def _line(row: Any) -> str:
    when = row["created_at"].strftime("%Y-%m-%d %H:%M:%S")
    return f"{row['name']} v{row['version']} → {row['model'] or '(removed)'}  ({row['note']}, {when})"


def _workspace_id(store: Any, name: str, *, create: bool = False) -> Any:
    from tracetune.errors import NotFound

    if create:
        return store.workspaces.ensure(name).id
    try:
        return store.workspaces.get(name).id
    except NotFound as exc:
        fail(str(exc))


@aliases_app.command("list")
def aliases_list(workspace: WorkspaceOpt = "default", home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """The aliases of a workspace and the model each names now."""
    _, store = open_store_for(home, database_url)
    rows = store.aliases.list(_workspace_id(store, workspace))
    for row in rows:
        typer.echo(_line(row))
    if not rows:
        typer.echo("no aliases: `tracetune aliases set NAME MODEL` makes one", err=True)


@aliases_app.command("set")
def aliases_set(
    name: str,
    model: Annotated[str, typer.Argument(help="A served model id (base or ft:…) or another alias.")],
    workspace: WorkspaceOpt = "default",
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Point NAME at MODEL (a new version of the alias)."""
    from tracetune.errors import TracetuneError
    from tracetune.serve.lookup import set_alias

    settings, store = open_store_for(home, database_url)
    try:
        row = set_alias(
            name, model, home=settings.home, store=store, workspace_id=_workspace_id(store, workspace, create=True),
            aliases=settings.model_aliases,
        )  # fmt: skip
    except TracetuneError as exc:
        fail(str(exc))
    typer.echo(_line(row))


@aliases_app.command("show")
def aliases_show(
    name: str, workspace: WorkspaceOpt = "default", home: HomeOpt = None, database_url: DbOpt = None
) -> None:
    """Every version of NAME, newest first."""
    from tracetune.errors import TracetuneError

    _, store = open_store_for(home, database_url)
    try:
        rows = store.aliases.history(_workspace_id(store, workspace), name)
    except TracetuneError as exc:
        fail(str(exc))
    for row in rows:
        typer.echo(_line(row))


@aliases_app.command("rollback")
def aliases_rollback(
    name: str, workspace: WorkspaceOpt = "default", home: HomeOpt = None, database_url: DbOpt = None
) -> None:
    """Point NAME back at what its version before the newest named."""
    from tracetune.errors import TracetuneError
    from tracetune.serve.lookup import served_check

    settings, store = open_store_for(home, database_url)
    try:
        ws = _workspace_id(store, workspace)
        row = store.aliases.rollback(ws, name, served_check(settings.home, store, ws, settings.model_aliases))
    except TracetuneError as exc:
        fail(str(exc))
    typer.echo(_line(row))


@aliases_app.command("remove")
def aliases_remove(
    name: str, workspace: WorkspaceOpt = "default", home: HomeOpt = None, database_url: DbOpt = None
) -> None:
    """Remove NAME (its history stays: `show` lists it, `rollback` brings it back)."""
    from tracetune.errors import TracetuneError

    _, store = open_store_for(home, database_url)
    try:
        row = store.aliases.remove(_workspace_id(store, workspace), name)
    except TracetuneError as exc:
        fail(str(exc))
    typer.echo(_line(row))
