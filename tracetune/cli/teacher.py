"""``tracetune teacher label``: the app's production model answers the traced inputs the tuned model should learn
better (rated bad, failed, never rated); its answers are stored as runs tagged ``teacher``
(``tracetune.loop.teacher``). ``tracetune teacher references``: its answers to held-out inputs, as references."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from tracetune.cli._common import DbOpt, HomeOpt, WorkspaceOpt, fail, in_workspace

teacher_app = typer.Typer(no_args_is_help=True, help="Distillation: a teacher model labels traced inputs.")


@teacher_app.command("label")
def teacher_label(
    project: Annotated[str, typer.Option(help="The project whose LLM runs the teacher answers.")],
    teacher_base_url: Annotated[str, typer.Option(help="The teacher's OpenAI-compatible API, ending in /v1.")],
    teacher_model: Annotated[str, typer.Option(help="The teacher's model name.")],
    teacher_api_key: Annotated[
        str | None, typer.Option(help="Its key (default: $TRACETUNE_TEACHER_API_KEY; never stored).")
    ] = None,
    which: Annotated[str, typer.Option(help="disliked_or_unrated, disliked, unrated or all.")] = "disliked_or_unrated",
    filter: Annotated[str | None, typer.Option("--filter", help="Narrow the runs: a filter expression.")] = None,
    rating_key: Annotated[str, typer.Option(help="The feedback key that rates answers.")] = "user_score",
    bad_score: Annotated[float, typer.Option(help="A score at most this is a bad answer.")] = 0.0,
    rate: Annotated[float, typer.Option(help="Requests per second to the teacher, at most.")] = 2.0,
    limit: Annotated[int | None, typer.Option(help="Label at most this many runs now (rerun to go on).")] = None,
    max_tokens: Annotated[int, typer.Option(help="The teacher's answer length limit.")] = 512,
    into: Annotated[
        str | None, typer.Option(help="Store the teacher's runs in this project (default: the same).")
    ] = None,
    workspace: WorkspaceOpt = "default",
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Have the teacher answer a project's picked LLM runs; resumable (runs it answered before are skipped)."""
    from rich.console import Console
    from rich.progress import Progress

    from tracetune.ingest.service import IngestService
    from tracetune.loop.teacher import Teacher, label_runs
    from tracetune.store.blobs import blobs_from_settings

    key = teacher_api_key or os.environ.get("TRACETUNE_TEACHER_API_KEY")
    with Progress(transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("asking the teacher", total=None)

        def work(settings: Any, store: Any, ws: Any) -> Any:
            teacher = Teacher(teacher_base_url, teacher_model, key, max_per_s=rate, max_tokens=max_tokens)
            return label_runs(
                store, IngestService(store, blobs_from_settings(settings)), ws, teacher, project=project,
                filter=filter, which=which, rating_key=rating_key, bad_score=bad_score, limit=limit, into=into,
                progress=lambda n, total: bar.update(task, completed=n, total=total),
            )  # fmt: skip

        summary = in_workspace(home, database_url, workspace, work)
    if summary is None:
        fail("nothing labeled")
    skipped = ", ".join(f"{n} {reason}" for reason, n in summary.skipped.items()) or "none"
    typer.echo(
        f"{summary.labeled} runs labeled by {teacher_model} ({summary.already} already were; {summary.picked} of "
        f"{summary.selected} LLM runs picked as {which}; skipped: {skipped}) in {summary.seconds:g} s; teacher tokens: "
        f"{summary.prompt_tokens} in, {summary.completion_tokens} out"
    )
    typer.echo(f'select them with the filter has(tags, "teacher") in project {into or project}', err=True)


@teacher_app.command("references")
def teacher_references(
    data: Annotated[Path, typer.Option("--data", help="Held-out conversations (JSONL records), answered or not.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Where the records with the teacher's answers go.")],
    teacher_base_url: Annotated[str, typer.Option(help="The teacher's OpenAI-compatible API, ending in /v1.")],
    teacher_model: Annotated[str, typer.Option(help="The teacher's model name.")],
    teacher_api_key: Annotated[
        str | None, typer.Option(help="Its key (default: $TRACETUNE_TEACHER_API_KEY; never stored).")
    ] = None,
    rate: Annotated[float, typer.Option(help="Requests per second to the teacher, at most.")] = 2.0,
    max_tokens: Annotated[int, typer.Option(help="The teacher's answer length limit.")] = 512,
) -> None:
    """Reference answers for held-out inputs: the teacher answers each record of DATA (up to its last user turn,
    tools offered) and OUT gets the record with that answer. Resumable: the records already in OUT are skipped."""
    import orjson

    from tracetune.errors import TracetuneError
    from tracetune.loop.teacher import Teacher, reference_answers

    try:
        records = [orjson.loads(line) for line in data.read_bytes().splitlines() if line.strip()]
    except (OSError, orjson.JSONDecodeError) as exc:
        fail(f"cannot read {data}: {exc}")
    done = sum(1 for line in out.read_bytes().splitlines() if line.strip()) if out.exists() else 0
    key = teacher_api_key or os.environ.get("TRACETUNE_TEACHER_API_KEY")
    try:
        with out.open("ab") as f:

            def write(record: dict[str, Any]) -> None:
                f.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
                f.flush()

            teacher = Teacher(teacher_base_url, teacher_model, key, max_per_s=rate, max_tokens=max_tokens)
            summary = reference_answers(records, teacher, write, already=done)
    except TracetuneError as exc:
        fail(str(exc))
    typer.echo(
        f"{summary.answered} reference answers by {teacher_model} ({summary.already} of {summary.records} were in "
        f"{out} already) in {summary.seconds:g} s; teacher tokens: {summary.prompt_tokens} in, "
        f"{summary.completion_tokens} out"
    )
