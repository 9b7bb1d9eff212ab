"""What every command shares: the --home / --database-url / --workspace options, opening the store, the error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

HomeOpt = Annotated[Path | None, typer.Option("--home", help="Data home (default: $TRACETUNE_HOME).")]
DbOpt = Annotated[str | None, typer.Option("--database-url", help="Store URL (default: $TRACETUNE_DATABASE_URL).")]
WorkspaceOpt = Annotated[str, typer.Option("--workspace", "-w", help="Workspace name.")]


def fail(message: str) -> NoReturn:
    """A one-line error and exit code 2 (the CLI's mapping of every domain error)."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


def open_store_for(home: Path | None, database_url: str | None) -> Any:
    from sqlalchemy.exc import SQLAlchemyError

    from tracetune.config import load_settings
    from tracetune.errors import TracetuneError
    from tracetune.store import open_store_from_settings

    settings = load_settings(home=home, database_url=database_url)
    try:
        return settings, open_store_from_settings(settings)
    except TracetuneError as exc:  # e.g. a TRACETUNE_BLOB_URL that cannot be opened
        fail(str(exc))
    except SQLAlchemyError as exc:  # e.g. a database server that does not answer
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        fail(f"cannot open the store {settings.resolved_database_url!r}: {reason}")


def in_workspace(
    home: Path | None,
    database_url: str | None,
    workspace: str,
    work: Callable[[Any, Any, Any], Any],
    *,
    create: bool = False,
) -> Any:
    """``work(settings, store, workspace id)`` on the store (the workspace made first when ``create``); what it
    returns, or a domain error as the CLI's one-line error."""
    from tracetune.errors import TracetuneError

    settings, store = open_store_for(home, database_url)
    try:
        ws = store.workspaces.ensure(workspace) if create else store.workspaces.get(workspace)
        return work(settings, store, ws.id)
    except TracetuneError as exc:
        fail(str(exc))


class LogLines:
    """Progress for output that is not a terminal (a log file, CI), where a progress bar shows nothing until the
    end: a plain line when a task starts, then at most one every ``every_s`` seconds, and when it completes —
    ``description: done/total (pct) ETA …  note``."""

    def __init__(self, echo: Any = None, every_s: float = 30.0) -> None:
        self.echo = echo or (lambda line: typer.echo(line))
        self.every_s = every_s
        self._started: dict[str, float] = {}
        self._last: dict[str, float] = {}

    def update(self, description: str, done: int, total: int | None = None, note: str = "") -> None:
        import time

        now = time.monotonic()
        started = self._started.setdefault(description, now)
        finished = bool(total) and done >= (total or 0)
        if description in self._last and now - self._last[description] < self.every_s and not finished:
            return
        self._last[description] = now
        line = f"{description}: {done}/{total}" if total else f"{description}: {done}"
        if total:
            line += f" ({100 * done / total:.0f}%)"
        if total and 0 < done < total:
            line += f" ETA {_duration((now - started) / done * (total - done))}"
        self.echo(f"{line}  {note}".rstrip())


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
