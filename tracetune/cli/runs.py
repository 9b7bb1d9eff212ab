"""``tracetune runs …``: traced runs in the store (no server needed)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from tracetune.cli._common import DbOpt, HomeOpt, fail, open_store_for

runs_app = typer.Typer(no_args_is_help=True, help="Traced runs in the store.")


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

    _, store = open_store_for(home, database_url)
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
