"""``tracetune db …``: the database."""

from __future__ import annotations

import typer

from tracetune.cli._common import DbOpt, HomeOpt, open_store_for

db_app = typer.Typer(no_args_is_help=True, help="The database.")


@db_app.command("upgrade")
def db_upgrade(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Create or upgrade the schema to the newest version (also done on every open)."""
    from tracetune.store.engine import current_revision

    _, store = open_store_for(home, database_url)
    typer.echo(f"{store.db.engine.url!r} at revision {current_revision(store.db.engine)}")
