"""What every command shares: the --home / --database-url options, opening the store, the one-line error."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

HomeOpt = Annotated[Path | None, typer.Option("--home", help="Data home (default: $TRACETUNE_HOME).")]
DbOpt = Annotated[str | None, typer.Option("--database-url", help="Store URL (default: $TRACETUNE_DATABASE_URL).")]


def fail(message: str) -> None:
    """A one-line error and exit code 2 (the CLI's mapping of every domain error)."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


def open_store_for(home: Path | None, database_url: str | None) -> Any:
    from tracetune.config import load_settings
    from tracetune.store import open_store_from_settings

    settings = load_settings(home=home, database_url=database_url)
    return settings, open_store_from_settings(settings)
