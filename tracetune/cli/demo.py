"""``tracetune demo`` (registered on the app in ``cli/app.py``): the whole loop, drawn with rich."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from tracetune.cli._common import HomeOpt, LogLines, fail


def demo_command(
    quick: Annotated[bool, typer.Option("--quick", help="A smaller run: 24 questions traced, 10 held out.")] = False,
    loop: Annotated[
        bool,
        typer.Option(
            "--loop",
            help="The closed loop instead: an automation fine-tunes, evaluates and promotes an alias from the "
            "app's rated traffic, two firings over two batches (the second served by the alias).",
        ),
    ] = False,
    url: Annotated[
        str | None, typer.Option("--url", help="Use a running tracetune (default: start one here on a free port).")
    ] = None,
    api_key: Annotated[str, typer.Option("--api-key", help="API key for --url (when it has keys).")] = "demo",
    teacher_base_url: Annotated[
        str | None,
        typer.Option(
            "--teacher-base-url",
            help="An OpenAI-compatible endpoint for the app's model (default: the "
            "base model here, with the Calculator call forced).",
        ),
    ] = None,
    teacher_model: Annotated[str | None, typer.Option("--teacher-model", help="The teacher's model id.")] = None,
    teacher_api_key: Annotated[str | None, typer.Option("--teacher-api-key", help="The teacher's API key.")] = None,
    model: Annotated[str, typer.Option("--model", help="The base model to fine-tune.")] = "smollm2-135m-instruct",
    epochs: Annotated[str, typer.Option("--epochs", help="Training epochs, or auto.")] = "3",
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON at the end (also in HOME/report/summary.json).")
    ] = False,
    home: HomeOpt = None,
) -> None:
    """Run the whole loop on this machine: trace an accounting-assistant app (LangChain + langsmith SDK), rate it,
    pick the good LLM runs, build a dataset, fine-tune the base model, and compare base vs tuned on held-out
    questions. Leaves everything in HOME (default: a fresh $TRACETUNE_HOME/demo/<time>) for `tracetune serve`.

    With --loop: the closed loop — an automation over the app's good runs fires on a first batch of traffic
    (fine-tune, evaluate against the current model, promote an alias through a gate), the app then calls the alias
    on a second batch, and the automation fires again; prints each decision, why, and its evaluation page."""
    from rich.console import Console
    from rich.table import Table

    from tracetune.demo.loop import decision_rows, run_loop_demo
    from tracetune.demo.pipeline import DemoFailed, DemoOptions, run_demo
    from tracetune.demo.report import result_rows

    if teacher_base_url and not teacher_model:
        fail("--teacher-base-url needs --teacher-model")
    n_epochs: int | str = epochs
    if epochs != "auto":
        try:
            n_epochs = int(epochs)
        except ValueError:
            fail(f"--epochs takes a whole number or auto, not {epochs!r}")
    options = DemoOptions(
        home=home, url=url, api_key=api_key, quick=quick, model=model, teacher_base_url=teacher_base_url,
        teacher_model=teacher_model, teacher_api_key=teacher_api_key, n_epochs=n_epochs,
    )  # fmt: skip
    console = Console()
    try:
        with _StageDisplay(console) as display:
            summary = run_loop_demo(options, display) if loop else run_demo(options, display)
    except DemoFailed as exc:
        console.print(f"[red]✗ the demo stopped at stage '{exc.stage}':[/red] {exc.message}", soft_wrap=True)
        if exc.look:
            console.print(f"  look at: {exc.look}", soft_wrap=True)
        raise typer.Exit(1) from None
    if loop:  # lines, not a table: the pages' URLs must print whole
        for label, value in decision_rows(summary):
            console.print(f"{label:<26} {value}", soft_wrap=True, highlight=False)
        console.print(f"report: {summary['home']}/report/loop.json", soft_wrap=True)
        if not options.url:
            console.print(f"for the evaluation pages: tracetune serve --home {summary['home']}", soft_wrap=True)
    else:
        table = Table(title="tracetune demo", show_header=False)
        table.add_column("", style="bold")
        table.add_column("", justify="right")
        for label, value in result_rows(summary):
            table.add_row(label, value)
        console.print(table)
        files = summary["files"]
        chart = f"   chart: {files['chart']}" if "chart" in files else "   (no chart: install the 'demo' extra)"
        console.print(f"report: {files['report']}{chart}", soft_wrap=True)
        console.print(f"look around: tracetune serve --home {summary['home']}", soft_wrap=True)
    if json_out:
        typer.echo(json.dumps(summary))


class _StageDisplay:
    """A line per finished stage, and a progress bar for the running one (plain progress lines, :class:`LogLines`,
    when the output is not a terminal: a log file would otherwise show nothing until the stage ends)."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = console
        self.lines = None if console.is_terminal else LogLines(console.print)
        self.bar = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=console, transient=True,
            disable=self.lines is not None,
        )  # fmt: skip
        self.task: Any = None
        self.description = ""

    def __enter__(self) -> _StageDisplay:
        self.bar.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.bar.stop()

    def stage_started(self, stage: str, description: str, total: int | None = None) -> None:
        self.description = f"{stage}: {description}"
        self.task = self.bar.add_task(self.description, total=total, note="")
        if self.lines is not None:
            self.lines.update(self.description, 0, total)

    def progress(self, done: int, total: int | None = None, text: str | None = None) -> None:
        if self.task is not None:
            self.bar.update(self.task, completed=done, total=total, note=text or "")
            if self.lines is not None:
                self.lines.update(self.description, done, total, text or "")

    def stage_done(self, stage: str, seconds: float, result: str) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
            self.task = None
        self.console.print(f"[green]✓[/green] {stage:<10} {seconds:6.1f} s  {result}", soft_wrap=True)
