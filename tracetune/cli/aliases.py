"""``tracetune aliases …``: the stored, versioned aliases of served models (``/tt/v1/aliases``): every server on
the store reads them on each request, so a change or a rollback takes effect without a restart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from tracetune.cli._common import DbOpt, HomeOpt, WorkspaceOpt, in_workspace

aliases_app = typer.Typer(no_args_is_help=True, help="Aliases of served models: versioned, with rollback.")


def _line(row: Any) -> str:
    when = row["created_at"].strftime("%Y-%m-%d %H:%M:%S")
    return f"{row['name']} v{row['version']} → {row['model'] or '(removed)'}  ({row['note']}, {when})"


def _run(
    home: Any, database_url: Any, workspace: str, work: Callable[[Any, Any, Any], Any], *, create: bool = False
) -> None:
    """``work(settings, store, workspace id)`` (``in_workspace``); the alias row(s) it gives printed a line each."""
    out = in_workspace(home, database_url, workspace, work, create=create)
    for row in out if isinstance(out, list) else [out]:
        typer.echo(_line(row))
    if out == []:
        typer.echo("no aliases: `tracetune aliases set NAME MODEL` makes one", err=True)


@aliases_app.command("list")
def aliases_list(workspace: WorkspaceOpt = "default", home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """The aliases of a workspace and the model each names now."""
    _run(home, database_url, workspace, lambda _, store, ws: store.aliases.list(ws))


@aliases_app.command("set")
def aliases_set(
    name: str,
    model: Annotated[str, typer.Argument(help="A served model id (base or ft:…) or another alias.")],
    workspace: WorkspaceOpt = "default",
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Point NAME at MODEL (a new version of the alias)."""
    from tracetune.serve.lookup import set_alias
    from tracetune.store.blobs import blobs_from_settings

    def work(settings: Any, store: Any, ws: Any) -> Any:
        return set_alias(
            name,
            model,
            blobs=blobs_from_settings(settings),
            store=store,
            workspace_id=ws,
            aliases=settings.model_aliases,
        )

    _run(home, database_url, workspace, work, create=True)  # the first alias of a fresh store makes its workspace


@aliases_app.command("show")
def aliases_show(
    name: str, workspace: WorkspaceOpt = "default", home: HomeOpt = None, database_url: DbOpt = None
) -> None:
    """Every version of NAME, newest first."""
    _run(home, database_url, workspace, lambda _, store, ws: store.aliases.history(ws, name))


@aliases_app.command("rollback")
def aliases_rollback(
    name: str, workspace: WorkspaceOpt = "default", home: HomeOpt = None, database_url: DbOpt = None
) -> None:
    """Point NAME back at what its version before the newest named."""
    from tracetune.serve.lookup import served_check
    from tracetune.store.blobs import blobs_from_settings

    def work(settings: Any, store: Any, ws: Any) -> Any:
        return store.aliases.rollback(
            ws, name, served_check(blobs_from_settings(settings), store, ws, settings.model_aliases)
        )

    _run(home, database_url, workspace, work)


@aliases_app.command("remove")
def aliases_remove(
    name: str, workspace: WorkspaceOpt = "default", home: HomeOpt = None, database_url: DbOpt = None
) -> None:
    """Remove NAME (its history stays: `show` lists it, `rollback` brings it back)."""
    _run(home, database_url, workspace, lambda _, store, ws: store.aliases.remove(ws, name))
