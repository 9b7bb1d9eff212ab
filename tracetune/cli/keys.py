"""``tracetune keys …``: API keys, each scoped to one workspace, and the store's auth mode."""

from __future__ import annotations

from typing import Annotated

import typer

from tracetune.cli._common import DbOpt, HomeOpt, fail, open_store_for

keys_app = typer.Typer(no_args_is_help=True, help="API keys (each scoped to one workspace).")


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
    _, store = open_store_for(home, database_url)
    key, info = store.workspaces.create_key(workspace, name)
    typer.echo(key)
    typer.echo(f"created key {info.prefix}… for workspace {info.workspace!r}; it is not shown again.", err=True)


@keys_app.command("list")
def keys_list(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """List keys (prefix, workspace, state)."""
    from rich.console import Console
    from rich.table import Table

    _, store = open_store_for(home, database_url)
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
    _, store = open_store_for(home, database_url)
    n = store.workspaces.revoke_key(prefix.rstrip("…"))
    if not n:
        fail(f"no active key starts with {prefix!r}")
    typer.echo(f"revoked {n} key(s)")


@keys_app.command("open")
def keysopen_store_for(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Serve this store without keys again (loopback only). Refused while a key is active.

    Once a key has been created, a store stays keyed, also after its last key is revoked, until this command."""
    from tracetune.errors import Conflict

    _, store = open_store_for(home, database_url)
    try:
        store.workspaces.open_without_keys()
    except Conflict as exc:
        fail(str(exc))
    typer.echo(
        "the store is open: requests without a key are let in (into the 'default' workspace) by servers on "
        "127.0.0.1; servers on other addresses refuse them"
    )
