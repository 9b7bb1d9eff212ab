"""``tracetune export`` and ``tracetune validate`` (registered on the app in ``cli/app.py``); heavy imports inside."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tracetune.cli._common import DbOpt, HomeOpt, fail, open_store_for


def export_command(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="JSONL file (with --split: the train part; FILE.validation.EXT gets the rest)."
        ),
    ] = None,
    project: Annotated[str | None, typer.Option("--project", "-p", help="Project name (read from the store).")] = None,
    input_file: Annotated[
        Path | None, typer.Option("--input", help="Read LangSmith runs from this JSONL file instead of the store.")
    ] = None,
    run_type: Annotated[str, typer.Option("--run-type", help="Run type to export.")] = "llm",
    filter_: Annotated[str | None, typer.Option("--filter", help="Filter expression on the runs.")] = None,
    trace_filter: Annotated[str | None, typer.Option("--trace-filter", help="Filter on each run's root.")] = None,
    feedback: Annotated[
        str | None, typer.Option("--feedback", help="Only runs whose own or root's feedback has this key.")
    ] = None,
    min_score: Annotated[float | None, typer.Option("--min-score", help="… with at least this score.")] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="openai, hf, sharegpt, or dpo (corrected runs as preference pairs).")
    ] = "openai",
    split: Annotated[
        float | None,
        typer.Option("--split", help="Share of traces/threads in train, e.g. 0.9 (by trace, never by row)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split.")] = 0,
    dedupe: Annotated[bool, typer.Option("--dedupe", help="Drop exact and normalised duplicates.")] = False,
    scrub_pii: Annotated[bool, typer.Option("--scrub-pii", help="Replace e-mails, cards, IPs, phones.")] = False,
    use_corrections: Annotated[
        bool, typer.Option("--use-corrections", help="Human corrections (feedback) replace the answers.")
    ] = False,
    merge: Annotated[
        bool, typer.Option("--merge/--no-merge", help="Fold each trace's tool loop into one conversation.")
    ] = True,
    model: Annotated[str | None, typer.Option("--model", help="Target model (tokens, context length).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Also store as the next version of this dataset.")] = None,
    rating_key: Annotated[
        str | None,
        typer.Option(
            "--rating-key",
            help="dpo: also pair disliked runs with liked runs of the same input by this feedback key's scores.",
        ),
    ] = None,
    good_score: Annotated[float, typer.Option("--good-score", help="dpo: a run rated at least this is liked.")] = 1.0,
    bad_score: Annotated[float, typer.Option("--bad-score", help="dpo: a run rated at most this is disliked.")] = 0.0,
    workspace: Annotated[str, typer.Option(help="Workspace name.")] = "default",
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Export runs as fine-tuning JSONL and print a summary (examples, skips, tokens, split, problems)."""
    from tracetune.convert.dataset_builder import ExportOptions, Selection
    from tracetune.convert.export import export_dataset, export_runs, load_target
    from tracetune.errors import TracetuneError

    if (project is None) == (input_file is None):
        fail("give exactly one of --project (the store) or --input (a JSONL file of runs)")
    if output is None and name is None:
        fail("give --output FILE, --name DATASET, or both")
    if input_file is not None and name is not None:
        fail("--name stores a dataset of the store's runs; it cannot be used with --input")
    try:
        options = ExportOptions(
            format=fmt,
            split=split,
            seed=seed,
            dedupe=dedupe,
            scrub_pii=scrub_pii,
            use_corrections=use_corrections,
            merge=merge,
            model=model,
            name=name,
            rating_key=rating_key,
            good_score=good_score,
            bad_score=bad_score,
        )
        if input_file is not None:
            from tracetune.config import load_settings

            settings = load_settings(home=home, database_url=database_url)
            if not input_file.is_file():
                fail(f"no such file: {input_file}")
            assert output is not None
            result = export_runs(input_file, options, out=output, target=load_target(settings.home, model))
        else:
            settings, store = open_store_for(home, database_url)
            ws = store.workspaces.get(workspace)
            selection = Selection(
                project=project,
                run_type=run_type,
                filter=filter_,
                trace_filter=trace_filter,
                feedback_key=feedback,
                min_score=min_score,
            )
            result = export_dataset(store, ws.id, selection, options, out=output, home=settings.home)
    except TracetuneError as exc:
        fail(str(exc))
    _print_summary(result.summary, result.paths, result.dataset)


def _print_summary(summary: dict[str, Any], paths: dict[str, Path], dataset: dict[str, Any] | None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("", "", title="export", show_header=False)
    table.add_row("runs read", str(summary["runs_read"]))
    table.add_row("examples", str(summary["examples"]))
    table.add_row("  train / validation", f"{summary['train']} / {summary['validation']}")
    skipped = summary["skipped"]
    table.add_row("skipped", str(sum(skipped.values())))
    for reason, n in skipped.items():
        table.add_row(f"  {reason}", str(n))
    table.add_row("runs merged into tool loops", str(summary["runs_merged"]))
    dup = summary["duplicates"]
    table.add_row(
        "duplicates removed",
        f"{dup['exact'] + dup['normalized']} (exact {dup['exact']}, normalized {dup['normalized']})",
    )
    pii = summary["pii"]
    table.add_row("PII replaced", ", ".join(f"{k} {v}" for k, v in pii.items()) or "0")
    preference = summary.get("preference")
    if preference is not None:
        table.add_row(
            "pairs from corrections / ratings", f"{preference['from_corrections']} / {preference['from_ratings']}"
        )
        table.add_row("disliked runs no liked run pairs", str(preference["unpaired_disliked"]))
    corrections = summary["corrections"]
    if corrections["applied"] or corrections["invalid"]:
        table.add_row("corrections applied / unreadable", f"{corrections['applied']} / {corrections['invalid']}")
    tokens = summary["tokens"]
    model = summary["model"]
    table.add_row(
        f"tokens per example ({model['id']})",
        f"min {tokens['min']}, median {tokens['median']}, max {tokens['max']}" if tokens["min"] is not None else "-",
    )
    table.add_row("tokens total", str(tokens["total"]))
    table.add_row(f"over the context length ({model['context_length']})", str(summary["over_context"]))
    problems = summary["validation_problems"]
    table.add_row("validation problems", f"{problems['errors']} errors, {problems['warnings']} warnings")
    for code, n in problems["by_code"].items():
        table.add_row(f"  {code}", str(n))
    for split, path in paths.items():
        table.add_row(f"written ({split})", str(path))
    if dataset is not None:
        table.add_row("dataset", f"{dataset['name']} v{dataset['version']} ({dataset['id']})")
    for argument, counts in summary["arguments"].items():
        table.add_row(f"values of {argument} (train)", ", ".join(f"{v} {n}" for v, n in counts.items()))
    Console().print(table)
    for finding in summary["advice"]:
        typer.echo(f"warning: {finding['message']}\n  what to do: {finding['advice']}")


def validate_command(
    file: Annotated[Path, typer.Argument(help="OpenAI chat fine-tuning JSONL.")],
    model: Annotated[
        str | None, typer.Option("--model", help="Also check against this target model (default: the built-in one).")
    ] = None,
    max_problems: Annotated[int | None, typer.Option("--max-problems", help="Print at most this many.")] = None,
    home: HomeOpt = None,
) -> None:
    """Validate a JSONL file: every problem with its line and field. Exit code 2 when there are errors. A valid
    file also gets the dataset advice a job would give (rare answer values, calls of tools the records do not
    declare)."""
    from tracetune.chat.validate import validate_lines
    from tracetune.config import load_settings
    from tracetune.convert.export import load_target
    from tracetune.convert.target_check import target_model_check
    from tracetune.errors import TracetuneError

    if not file.is_file():
        fail(f"no such file: {file}")
    try:
        target = load_target(load_settings(home=home).home, model)
    except TracetuneError as exc:
        fail(str(exc))
    check = target_model_check(target.counter.tokenizer, target.context_length)
    with open(file, "rb") as f:
        report = validate_lines(f, checks=[check])
    typer.echo(report.format_text(max_problems))
    if report.errors:
        raise typer.Exit(2)
    import orjson

    from tracetune.chat.diagnose import diagnose_data

    records = [orjson.loads(line) for line in file.read_bytes().splitlines() if line.strip()]
    for finding in diagnose_data(records):
        typer.echo(f"warning: {finding.message}\n  what to do: {finding.advice}")
