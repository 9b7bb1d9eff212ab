"""``tracetune eval`` (registered on the app in ``cli/app.py``): held-out conversations replayed against models."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer

from tracetune.cli._common import DbOpt, HomeOpt, fail


def eval_command(
    model: Annotated[list[str], typer.Option("--model", "-m", help="A model id to evaluate (repeatable).")],
    data: Annotated[Path, typer.Option("--data", help="Held-out chat JSONL (OpenAI format).", exists=True)],
    limit: Annotated[int | None, typer.Option("--limit", help="Evaluate the first N records only.")] = None,
    url: Annotated[
        str | None, typer.Option("--url", help="A running server (default: start one here on a free port).")
    ] = None,
    api_key: Annotated[str, typer.Option("--api-key", help="API key for --url.")] = "unused",
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for eval.json and eval.png.")] = Path(
        "eval"
    ),
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Longest reply.")] = 256,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="Requests in flight at once (the server batches them).")
    ] = 8,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Replay each conversation of DATA up to its last assistant turn against each model (tools offered, not
    forced; greedy) and score the reply: tool-call name accuracy, exact arguments, valid JSON, text exact/fuzzy,
    latency. Prints a table; writes OUTPUT/eval.json and OUTPUT/eval.png."""
    import openai
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from tracetune.config import load_settings
    from tracetune.errors import TracetuneError
    from tracetune.evaluate.replay import evaluate, read_records, table_rows, write_chart
    from tracetune.server.inprocess import InProcessServer

    try:
        records = read_records(data, limit)
    except TracetuneError as exc:
        fail(str(exc))
    settings = load_settings(home=home, database_url=database_url, run_jobs=False)  # serve only: queued jobs wait
    server: Any = nullcontext(None) if url else InProcessServer(settings)
    console = Console()
    with server as running:
        base_url = (url or running.url).rstrip("/")
        client = openai.OpenAI(base_url=base_url if base_url.endswith("/v1") else f"{base_url}/v1", api_key=api_key)
        with Progress(console=console, transient=True) as bar:
            tasks = {m: bar.add_task(m, total=len(records)) for m in model}
            try:
                results = evaluate(
                    client, model, records, max_tokens=max_tokens, concurrency=concurrency,
                    progress=lambda m, done, _total: bar.update(tasks[m], completed=done),
                )  # fmt: skip
            except openai.APIError as exc:
                fail(f"the chat API refused a request: {exc}")
    table = Table(title=f"{data.name}: {len(records)} held-out examples")
    table.add_column("metric")
    for name in model:
        table.add_column(name, justify="right")
    for row in table_rows(results):
        table.add_row(*row)
    console.print(table)
    output.mkdir(parents=True, exist_ok=True)
    (output / "eval.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    try:
        chart = write_chart(results, output / "eval.png")
        typer.echo(f"wrote {output / 'eval.json'} and {chart}")
    except ImportError:
        typer.echo(f"wrote {output / 'eval.json'} (no chart: install the 'demo' extra for matplotlib)")
