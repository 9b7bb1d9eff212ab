"""``tracetune train``, ``worker``, ``jobs …`` and ``models …`` (registered on the app in ``cli/app.py``).

They work on the store directly (no server needed), in one workspace (``--workspace``, default ``default``).
"""

from __future__ import annotations

import json
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tracetune.cli._common import DbOpt, HomeOpt, LogLines, WorkspaceOpt, fail, open_store_for

if TYPE_CHECKING:
    from tracetune.store.rows import JobRow

jobs_app = typer.Typer(no_args_is_help=True, help="Fine-tuning jobs in the store.")
models_app = typer.Typer(no_args_is_help=True, help="Base and fine-tuned models.")
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON output.")]


def train_command(
    file: Annotated[
        Path,
        typer.Argument(
            help="Fine-tuning JSONL (OpenAI's chat format; for --method dpo its preference format).",
            exists=True,
            dir_okay=False,
        ),
    ],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Base model id, or a fine-tuned model to train further.")
    ] = "smollm2-135m-instruct",
    method: Annotated[
        str,
        typer.Option("--method", help='"supervised" (learn the answers) or "dpo" (prefer one answer of each pair).'),
    ] = "supervised",
    beta: Annotated[str, typer.Option("--beta", help='DPO\'s beta, or "auto" (0.1).')] = "auto",
    epochs: Annotated[str, typer.Option("--epochs", help='Epochs, or "auto".')] = "auto",
    batch_size: Annotated[str, typer.Option("--batch-size", help='Batch size, or "auto".')] = "auto",
    lr: Annotated[str, typer.Option("--lr", help='Learning-rate multiplier, or "auto".')] = "auto",
    suffix: Annotated[str | None, typer.Option("--suffix", help="Suffix of the fine-tuned model's id.")] = None,
    validation: Annotated[
        Path | None, typer.Option("--validation", help="Validation JSONL.", exists=True, dir_okay=False)
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed (random when not given).")] = None,
    workspace: WorkspaceOpt = "default",
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Fine-tune MODEL on FILE here, without a server; prints the new model's id and where its adapter is.

    The job is recorded in the store like one made through the API, so `tracetune serve` serves the model."""
    from tracetune.errors import TracetuneError
    from tracetune.store.blobs import blobs_from_settings
    from tracetune.store.models import adapter_path
    from tracetune.train.jobs import FineTuningJobCreate, create_job
    from tracetune.train.runner import JobRunner

    settings, store = open_store_for(home, database_url)
    try:
        ws = store.workspaces.ensure(workspace)
        blobs = blobs_from_settings(settings)
        uploaded = [
            store.files.create(ws.id, blobs, filename=p.name, purpose="fine-tune", data=p.read_bytes())["id"]
            for p in (file, validation)
            if p is not None
        ]
        request: dict[str, Any] = {
            "model": model, "training_file": uploaded[0], "validation_file": uploaded[1] if validation else None,
            "suffix": suffix, "seed": seed,
        }  # fmt: skip
        hp = {"n_epochs": _number(epochs), "batch_size": _number(batch_size),
              "learning_rate_multiplier": _number(lr, float)}  # fmt: skip
        if method == "dpo":
            hp["beta"] = _number(beta, float)
        request["method"] = {"type": method, method: {"hyperparameters": hp}}
        job = create_job(store, settings, ws, FineTuningJobCreate.parse(request))
    except TracetuneError as exc:
        fail(str(exc))
    log_path = settings.home / "jobs" / job["id"] / "train.log"
    typer.echo(f"job {job['id']}: training {model} on {file} (log: {log_path})")
    with _Progress() as progress:
        runner = JobRunner(store, settings, observer=progress.on_event)
        _stop_on_signals(runner)
        final = runner.run_job(job["id"])
    if final["status"] != "succeeded":
        error = final["error"] or {}
        fail(f"job {job['id']} {final['status']}: {error.get('message', '')}".rstrip(": "))
    row = store.models.get(ws.id, final["fine_tuned_model"])
    typer.echo(f"model:   {row['id']}")
    typer.echo(f"adapter: {adapter_path(blobs, row)}")
    typer.echo(f"tokens:  {final['trained_tokens']}")


def worker_command(
    once: Annotated[bool, typer.Option("--once", help="Run the jobs waiting now, then exit.")] = False,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between looks for new jobs.")] = 1.0,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Run fine-tuning jobs from the store (another process or machine sharing the database, and the data home or
    the object store of TRACETUNE_BLOB_URL)."""
    from tracetune.train.runner import JobRunner

    settings, store = open_store_for(home, database_url)

    def report(job_id: str, event: dict[str, Any]) -> None:
        if event.get("type") in ("setup", "checkpoint", "done", "error"):
            typer.echo(f"{job_id}: {event.get('type')} {json.dumps({k: v for k, v in event.items() if k != 'type'})}")

    runner = JobRunner(store, settings, poll_s=poll, observer=report)
    shared = f", blobs shared in {settings.blob_url}" if settings.blob_url else ""
    typer.echo(f"worker {runner.worker_id} on {store.db.engine.url!r}, home {settings.home}{shared}")
    if once:
        while runner.run_once():
            pass
        return
    _stop_on_signals(runner)
    runner.serve_forever()


@jobs_app.command("list")
def jobs_list(
    limit: Annotated[int, typer.Option("--limit", help="How many (newest first).")] = 20,
    workspace: WorkspaceOpt = "default",
    as_json: JsonOpt = False,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Fine-tuning jobs, newest first."""
    _, store = open_store_for(home, database_url)
    rows, _ = store.jobs.list(_workspace(store, workspace).id, limit=limit)
    if as_json:
        typer.echo(json.dumps([_job_json(r) for r in rows], indent=2))
        return
    for r in rows:
        typer.echo(
            f"{r['id']}  {r['status']:<16} {_time(r['created_at'])}  {r['model']}  {r['fine_tuned_model'] or ''}"
        )


@jobs_app.command("show")
def jobs_show(
    job_id: str, workspace: WorkspaceOpt = "default", home: HomeOpt = None, database_url: DbOpt = None
) -> None:
    """One job (JSON, as the API shows it)."""
    _, store = open_store_for(home, database_url)
    typer.echo(json.dumps(_job_json(_job(store, workspace, job_id)), indent=2))


@jobs_app.command("events")
def jobs_events(
    job_id: str,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events until the job ends.")
    ] = False,
    workspace: WorkspaceOpt = "default",
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """A job's events, oldest first."""
    import time

    from tracetune.store.jobs import TERMINAL

    _, store = open_store_for(home, database_url)
    _job(store, workspace, job_id)
    seen = 0
    while True:
        for event in store.jobs.all_events(job_id, after_seq=seen):
            seen = event["seq"]
            typer.echo(f"{_time(event['created_at'])}  {event['level']:<5} {event['message']}")
        if not follow or store.jobs.status(job_id) in TERMINAL:
            return
        time.sleep(1.0)


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: str, workspace: WorkspaceOpt = "default", home: HomeOpt = None, database_url: DbOpt = None
) -> None:
    """Cancel a job; a running one stops within seconds."""
    from tracetune.errors import TracetuneError

    _, store = open_store_for(home, database_url)
    try:
        row = store.jobs.cancel(_workspace(store, workspace).id, job_id)
    except TracetuneError as exc:
        fail(str(exc))
    typer.echo(f"{row['id']} {row['status']}")


@models_app.command("add")
def models_add(
    model_id: Annotated[str, typer.Argument(help="The id to register it under.")],
    path: Annotated[Path, typer.Argument(help="A Hugging Face model directory or a .gguf file.")],
    context_length: Annotated[
        int | None, typer.Option("--context-length", help="Override the context length read from the model.")
    ] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Re-register an id at another path.")] = False,
    home: HomeOpt = None,
) -> None:
    """Register a local base model (nothing is downloaded)."""
    from tracetune.config import load_settings
    from tracetune.errors import TracetuneError
    from tracetune.models.registry import register

    settings = load_settings(home=home)
    try:
        spec = register(settings.home, model_id, path, context_length=context_length, replace=replace)
    except TracetuneError as exc:
        fail(str(exc))
    typer.echo(f"{spec.id}: {spec.weights_path} (context {spec.context_length})")


@models_app.command("list")
def models_list(workspace: WorkspaceOpt = "default", home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Base models, then the workspace's fine-tuned models."""
    from tracetune.models.registry import list_models
    from tracetune.store.blobs import blobs_from_settings

    settings, store = open_store_for(home, database_url)
    blobs = blobs_from_settings(settings)
    for spec in list_models(settings.home):
        typer.echo(f"{spec.id}  base  {spec.weights_path}")
    for row in store.models.list(_workspace(store, workspace).id):
        typer.echo(f"{row['id']}  fine-tuned from {row['base_model']}  {blobs.location(row['adapter_dir'])}")


# -- helpers -------------------------------------------------------------------------------------------------------


VALIDATION_SHOWN = ("valid_accuracy", "valid_tool_args_exact")  # the task scores an epoch's log line shows


class _Progress:
    """A progress bar over the recipe's events (steps, loss, tokens/s, ETA); plain log lines (:class:`LogLines`)
    when the output is not a terminal."""

    def __enter__(self) -> _Progress:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console()
        self.lines = None if console.is_terminal else LogLines()
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"), console=console, disable=self.lines is not None,
        )  # fmt: skip
        self.bar.start()
        self.task = self.bar.add_task("loading model", total=None, status="")
        self.total: int | None = None
        return self

    def __exit__(self, *_: object) -> None:
        self.bar.stop()

    def _show(self, completed: int, status: str) -> None:
        self.bar.update(self.task, description="training", total=self.total, completed=completed, status=status)
        if self.lines is not None:
            self.lines.update("training step", completed, self.total, status)

    def _log(self, text: str) -> None:
        if self.lines is not None:
            typer.echo(text)
        else:
            self.bar.console.log(text)

    def on_event(self, _job_id: str, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "setup":
            hp = event["hyperparameters"]
            self.total = event["total_steps"]
            what = f"pairs (DPO, beta {hp['beta']:g})" if event.get("method") == "dpo" else "examples"
            status = f"{event['n_train_examples']} {what}, {hp['n_epochs']} epochs, batch {hp['batch_size']}"
            self._show(event.get("resumed_from_step") or 0, status)
        elif kind == "metrics":
            margin = f"  margin {event['train_reward_margin']:.4f}" if "train_reward_margin" in event else ""
            self._show(event["step"], f"loss {event['train_loss']:.4f}{margin}  {event['tokens_per_s']:.0f} tok/s")
            if "valid_loss" in event:
                scores = "".join(f", {k} {event[k]:.2f}" for k in VALIDATION_SHOWN if event.get(k) is not None)
                self._log(f"epoch {event['epoch']:g}: valid_loss {event['valid_loss']:.4f}{scores}")
        elif kind == "checkpoint":
            self._log(f"checkpoint at step {event['step']}: {event['path']}")
        elif kind == "early_stop":
            self._log(f"stopped early after epoch {event['epoch']}: {event['reason']}")
        elif kind == "diagnostics":
            for finding in event["findings"]:
                self._log(f"warning: {finding['message']}\n  what to do: {finding['advice']}")


def _stop_on_signals(runner: Any) -> None:
    """SIGINT / SIGTERM stop the runner: the training process stops and the job is handed back (resumable)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, _frame: Any) -> None:
        typer.echo(f"stopping ({signal.Signals(signum).name}); the job resumes from its last checkpoint", err=True)
        runner.request_stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _number(text: str, kind: type = int) -> Any:
    if text == "auto":
        return "auto"
    try:
        return kind(text)
    except ValueError:
        fail(f'expected a number or "auto", got {text!r}')


def _workspace(store: Any, name: str) -> Any:
    from tracetune.errors import NotFound

    try:
        return store.workspaces.get(name)
    except NotFound:
        fail(f"no workspace {name!r}")


def _job(store: Any, workspace: str, job_id: str) -> JobRow:
    from tracetune.errors import TracetuneError

    try:
        return store.jobs.get(_workspace(store, workspace).id, job_id)
    except TracetuneError as exc:
        fail(str(exc))
        raise


def _job_json(row: JobRow) -> dict[str, Any]:
    from tracetune.server.openai.protocol import fine_tuning_job

    return fine_tuning_job(row, "").model_dump(exclude={"organization_id"})


def _time(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
