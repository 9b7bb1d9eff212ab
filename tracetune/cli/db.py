"""``tracetune db …``: the database."""

from __future__ import annotations

from pathlib import Path

import typer

from tracetune.cli._common import DbOpt, HomeOpt, LogLines, fail, open_store_for

db_app = typer.Typer(no_args_is_help=True, help="The database.")


@db_app.command("upgrade")
def db_upgrade(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Create or upgrade the schema to the newest version (also done on every open)."""
    from tracetune.store.engine import current_revision

    _, store = open_store_for(home, database_url)
    typer.echo(f"{store.db.engine.url!r} at revision {current_revision(store.db.engine)}")


@db_app.command("compact")
def db_compact(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Bring a store made by an older tracetune to today's storage: runs' extra/serialized/events compressed with
    the store's dictionary (trained from its runs if it has none), and a SQLite file rewritten with 16 KB pages
    and no free space. Stop every server and worker on the store first (SQLite: it refuses while one has it open)."""
    from sqlalchemy.engine import make_url

    from tracetune.config import load_settings
    from tracetune.errors import TracetuneError
    from tracetune.store.engine import check_sqlite_unused, compact_sqlite

    url = make_url(load_settings(home=home, database_url=database_url).resolved_database_url)
    sqlite = url.get_backend_name() == "sqlite"
    if sqlite and (not url.database or url.database == ":memory:"):
        fail(f"db compact needs a store on disk, not {url!r}")
    path = Path(url.database or "")
    lines = LogLines(every_s=5)
    try:
        if sqlite:
            check_sqlite_unused(path)
        _, store = open_store_for(home, database_url)
        try:
            packed = store.runs.repack(progress=lambda read, total: lines.update("packing runs", read, total))
        finally:
            store.close()
        typer.echo(f"{packed:,} runs packed")
        if not sqlite:
            typer.echo("PostgreSQL reuses the freed space for new rows; VACUUM FULL runs gives it back to the disk")
            return
        typer.echo(f"rewriting {path} with 16 KB pages (the whole file: about 10 s a GB on 2 cores)…")
        done = compact_sqlite(path, progress=lambda seconds: typer.echo(f"  still rewriting: {seconds:.0f} s"))
    except TracetuneError as exc:
        fail(str(exc))
    typer.echo(
        f"{path}: {done.bytes_before:,} → {done.bytes_after:,} bytes, "
        f"pages of {done.page_size_before:,} → {done.page_size_after:,} bytes"
    )
