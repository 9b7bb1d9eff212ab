"""The ``tracetune`` command line: one Typer app, a module per command group. Heavy modules are imported
inside the commands, never at start-up."""

from __future__ import annotations

import typer

from tracetune.cli.aliases import aliases_app
from tracetune.cli.automations import automations_app
from tracetune.cli.db import db_app
from tracetune.cli.demo import demo_command
from tracetune.cli.eval import eval_command
from tracetune.cli.export import export_command, validate_command
from tracetune.cli.jobs import jobs_app, models_app, train_command, worker_command
from tracetune.cli.keys import keys_app
from tracetune.cli.runs import runs_app
from tracetune.cli.serve import serve
from tracetune.cli.teacher import teacher_app

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="tracetune: traces → datasets → fine-tunes → served models.",
)
app.command("serve")(serve)
app.add_typer(keys_app, name="keys")
app.add_typer(runs_app, name="runs")
app.add_typer(db_app, name="db")
app.command("demo")(demo_command)
app.command("export")(export_command)
app.command("validate")(validate_command)
app.command("train")(train_command)
app.command("worker")(worker_command)
app.command("eval")(eval_command)
app.add_typer(jobs_app, name="jobs")
app.add_typer(models_app, name="models")
app.add_typer(aliases_app, name="aliases")
app.add_typer(automations_app, name="automations")
app.add_typer(teacher_app, name="teacher")


def main() -> None:
    app()
