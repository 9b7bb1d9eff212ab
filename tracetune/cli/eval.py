"""``tracetune eval`` (registered on the app in ``cli/app.py``): held-out conversations replayed against models."""

from __future__ import annotations

import json
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from tracetune.cli._common import DbOpt, HomeOpt, fail


def eval_command(
    model: Annotated[list[str], typer.Option("--model", "-m", help="A model id to evaluate (repeatable).")],
    data: Annotated[
        Path | None, typer.Option("--data", help="Held-out chat JSONL (OpenAI format).", exists=True)
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            help="A dataset on the server instead of --data: its examples are the held-out records, and each "
            "model's results are kept as a LangSmith experiment over it (runs and feedback).",
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Evaluate the first N records only.")] = None,
    url: Annotated[
        str | None, typer.Option("--url", help="A running server (default: start one here on a free port).")
    ] = None,
    api_key: Annotated[str, typer.Option("--api-key", help="API key for --url.")] = "unused",
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for eval.json and eval.png.")] = Path(
        "eval"
    ),
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Longest reply.")] = 256,
    gate: Annotated[
        str | None,
        typer.Option(
            "--gate",
            help="An expression the last --model (the candidate) must pass against the first (current), e.g. "
            "'tool_args_exact >= 0.9 and tool_args_exact >= current + 0.02': exit status 1 when it fails.",
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="Requests in flight at once (the server batches them).")
    ] = 8,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Replay each conversation of DATA (or DATASET's examples) up to its last assistant turn against each model
    (tools offered, not forced; greedy) and score the reply: tool-call name accuracy, exact arguments, valid JSON,
    text exact/fuzzy, latency. Prints a table and what the answers show (one answer for every input: the model
    learned the format, not the decision), with what to do; writes OUTPUT/eval.json and OUTPUT/eval.png. With
    --dataset, each model's results are also an experiment over the dataset (list_projects(reference_dataset_id=…)
    lists them). With --gate, the last model is the candidate and the first the current one: the decision and
    each comparison are printed (and kept in eval.json), and a failed gate exits with status 1."""
    import httpx
    import openai
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from tracetune.config import load_settings
    from tracetune.errors import TracetuneError
    from tracetune.evaluate.experiments import dataset_records, record_experiments
    from tracetune.evaluate.replay import evaluate, read_records, table_rows, write_chart
    from tracetune.server.inprocess import InProcessServer

    if (data is None) == (dataset is None):
        fail("give exactly one of --data (a JSONL file) and --dataset (a dataset on the server)")
    checked_gate = None
    if gate is not None:
        from tracetune.evaluate.gates import parse_gate

        try:
            checked_gate = parse_gate(gate, field="--gate")
            if checked_gate.uses_current and len(model) < 2:
                fail("--gate compares with 'current': give the current model first, then the candidate (two --model)")
        except TracetuneError as exc:
            fail(str(exc))
    examples: list[tuple[str, dict[str, Any]]] = []
    if data is not None:
        try:
            records = read_records(data, limit)
        except TracetuneError as exc:
            fail(str(exc))
    settings = load_settings(home=home, database_url=database_url, run_jobs=False)  # serve only: queued jobs wait
    server: Any = nullcontext(None) if url else InProcessServer(settings)
    console = Console()
    with server as running, httpx.Client(headers={"x-api-key": api_key}, timeout=60) as http:
        root = (url or running.url).rstrip("/").removesuffix("/v1")
        http.base_url = httpx.URL(root)
        if dataset is not None:
            try:
                found, examples = dataset_records(http, dataset, limit)
            except TracetuneError as exc:
                fail(str(exc))
            records = [(line, record) for line, (_, record) in enumerate(examples, 1)]
        started = datetime.now(UTC)
        client = openai.OpenAI(base_url=f"{root}/v1", api_key=api_key)
        with Progress(console=console, transient=True) as bar:
            tasks = {m: bar.add_task(m, total=len(records)) for m in model}
            try:
                results = evaluate(
                    client, model, records, max_tokens=max_tokens, concurrency=concurrency,
                    progress=lambda m, done, _total: bar.update(tasks[m], completed=done),
                )  # fmt: skip
            except openai.APIError as exc:
                fail(f"the chat API refused a request: {exc}")
        if dataset is not None:
            try:
                results["experiments"] = record_experiments(http, found, examples, results, started=started)
            except TracetuneError as exc:
                fail(f"could not keep the results as experiments: {exc}")
    title = data.name if data is not None else f"dataset {dataset}"
    table = Table(title=f"{title}: {len(records)} held-out examples")
    table.add_column("metric")
    for name in model:
        table.add_column(name, justify="right")
    for row in table_rows(results):
        table.add_row(*row)
    console.print(table)
    for model_id, result in results["models"].items():
        for finding in result["diagnostics"]:
            typer.echo(f"warning ({model_id}): {finding['message']}\n  what to do: {finding['advice']}")
    passed = True
    if checked_gate is not None:
        candidate, current = model[-1], model[0] if len(model) > 1 else None
        decision = checked_gate.decide(
            results["models"][candidate]["summary"], results["models"][current]["summary"] if current else None
        )
        passed = decision.passed
        results["gate"] = {"expression": checked_gate.expression, "candidate": candidate, "current": current,
                           "passed": passed, "checks": decision.checks}  # fmt: skip
        verdict = "passed" if passed else "FAILED"
        typer.echo(f"gate {verdict} for {candidate}" + (f" against {current}" if current else ""))
        for check in decision.checks:
            typer.echo(f"  {check}")
    output.mkdir(parents=True, exist_ok=True)
    (output / "eval.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    for model_id, experiment in results.get("experiments", {}).items():
        typer.echo(f"experiment {experiment['name']} ({model_id}) over dataset {dataset}")
    try:
        chart = write_chart(results, output / "eval.png")
        typer.echo(f"wrote {output / 'eval.json'} and {chart}")
    except ImportError:
        typer.echo(f"wrote {output / 'eval.json'} (no chart: install the 'demo' extra for matplotlib)")
    if not passed:
        raise typer.Exit(1)
