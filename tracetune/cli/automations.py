"""``tracetune automations …``: rules that retrain, evaluate and promote a model through a gate
(``/tt/v1/automations``). They are stored; the automation runner of every ``tracetune serve`` on the store (with
``run_automations``) fires them and runs their firings; their fine-tuning jobs run wherever jobs run."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from tracetune.cli._common import DbOpt, HomeOpt, WorkspaceOpt, fail, in_workspace

automations_app = typer.Typer(
    no_args_is_help=True, help="Automations: retrain from new traces, evaluate, promote an alias through a gate."
)


def _firing_line(f: Any) -> str:
    outcome = f["decision"] or f["status"]
    if f["status"] in ("queued", "running"):
        outcome = f"{f['status']} ({f['step']})"
    line = f"#{f['number']} {outcome}  trigger: {f['trigger']}"
    if f["candidate_model"]:
        line += f"  candidate: {f['candidate_model']}"
    if f["reason"]:
        line += f"\n    why: {f['reason']}"
    return line


def _automation_line(row: Any, last: Any) -> str:
    rule = row["rule"]
    trigger = rule["trigger"]
    when = f"every {trigger['every_runs']} new runs" if trigger.get("every_runs") else f"every {trigger['every_s']:g} s"
    state = "paused" if row["paused"] else "active"
    head = f"{row['name']} ({state}): {rule['project']} → {rule['alias']}, {when}, gate: {rule['gate']}"
    return head + (f"\n  last firing {_firing_line(last)}" if last else "\n  never fired")


@automations_app.command("create")
def automations_create(
    name: str,
    project: Annotated[str, typer.Option(help="The project whose runs it learns from.")],
    eval_dataset: Annotated[str, typer.Option(help="A stored dataset of held-out conversations to evaluate on.")],
    gate: Annotated[str, typer.Option(help="e.g. 'tool_args_exact >= 0.9 and tool_args_exact >= current + 0.02'.")],
    alias: Annotated[str, typer.Option(help="The alias a passing candidate is promoted to.")],
    every_runs: Annotated[int | None, typer.Option(help="Fire after this many new matching runs.")] = None,
    every_s: Annotated[float | None, typer.Option(help="Or fire every this many seconds.")] = None,
    filter: Annotated[str | None, typer.Option("--filter", help="The runs: a LangSmith filter expression.")] = None,
    trace_filter: Annotated[str | None, typer.Option(help="A filter on the trace's root run.")] = None,
    feedback_key: Annotated[str | None, typer.Option(help="Only runs (or traces) with this feedback key …")] = None,
    min_score: Annotated[float | None, typer.Option(help="… scored at least this.")] = None,
    sample_rate: Annotated[float, typer.Option(help="Share of the new runs trained on (0 < rate <= 1).")] = 1.0,
    method: Annotated[str, typer.Option(help="supervised or dpo.")] = "supervised",
    base_model: Annotated[str | None, typer.Option(help="The base model (default: the built-in one).")] = None,
    start_from: Annotated[str, typer.Option(help="base, or current: train further from the alias's model.")] = "base",
    hyperparameters: Annotated[str | None, typer.Option(help='JSON, e.g. {"n_epochs": 3}.')] = None,
    max_attempts: Annotated[int, typer.Option(help="Tries per firing before it is recorded failed.")] = 2,
    seed: Annotated[int | None, typer.Option(help="Every firing's job trains with this seed.")] = None,
    workspace: WorkspaceOpt = "default",
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Create the automation NAME (checked whole first: a bad filter, gate, dataset or model is refused)."""
    from tracetune.loop.rules import check_rule, parse_rule

    try:
        params = json.loads(hyperparameters) if hyperparameters else {}
    except ValueError as exc:
        fail(f"--hyperparameters is not JSON: {exc}")
    trigger = {k: v for k, v in (("every_runs", every_runs), ("every_s", every_s)) if v is not None}
    body = {
        "name": name, "project": project, "eval_dataset": eval_dataset, "gate": gate, "alias": alias,
        "trigger": trigger, "filter": filter, "trace_filter": trace_filter, "feedback_key": feedback_key,
        "min_score": min_score, "sample_rate": sample_rate, "method": method, "start_from": start_from,
        "hyperparameters": params, "max_attempts": max_attempts, "seed": seed,
        **({"base_model": base_model} if base_model else {}),
    }  # fmt: skip

    def work(settings: Any, store: Any, ws: Any) -> Any:
        rule = parse_rule(body)
        check_rule(rule, store, settings, ws)
        return store.automations.create(ws, rule.name, rule.model_dump(mode="json"))

    row = in_workspace(home, database_url, workspace, work, create=True)
    typer.echo(_automation_line(row, None))
    typer.echo("it fires from every `tracetune serve` on this store that runs jobs", err=True)


@automations_app.command("list")
def automations_list(workspace: WorkspaceOpt = "default", home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """The automations of a workspace, each with its last firing."""

    def work(_: Any, store: Any, ws: Any) -> Any:
        return [(row, store.automations.last_firing(row["id"])) for row in store.automations.list(ws)]

    rows = in_workspace(home, database_url, workspace, work)
    for row, last in rows:
        typer.echo(_automation_line(row, last))
    if not rows:
        typer.echo("no automations: `tracetune automations create` makes one", err=True)


@automations_app.command("show")
def automations_show(
    name: str,
    firing: Annotated[int | None, typer.Option(help="One firing's steps, scores and decision.")] = None,
    workspace: WorkspaceOpt = "default",
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """NAME's rule and firings (newest first), or one firing in full (--firing N)."""

    def work(_: Any, store: Any, ws: Any) -> Any:
        row = store.automations.get(ws, name)
        if firing is not None:
            return row, [store.automations.firing(row["id"], firing)]
        return row, store.automations.firings(row["id"])

    row, firings = in_workspace(home, database_url, workspace, work)
    if firing is None:
        typer.echo(_automation_line(row, firings[0] if firings else None))
        for f in firings:
            typer.echo(f"  {_firing_line(f)}")
        return
    f = firings[0]
    typer.echo(_firing_line(f))
    for step in f["steps"]:
        typer.echo(f"  {step['at'][:19]} {step['step']}: {step['message']}")
    from tracetune.loop.firing import model_roles

    models = (f["evaluation"] or {}).get("models") or {}
    for model, role in model_roles(f, row["rule"]["base_model"]).items():
        if model in models:
            summary = models[model]["summary"]
            scores = ", ".join(
                f"{k} {v:.3g}" for k, v in summary.items() if isinstance(v, int | float) and k != "examples"
            )
            typer.echo(f"  {role} {model}: {scores}")


@automations_app.command("run")
def automations_run(
    name: str, workspace: WorkspaceOpt = "default", home: HomeOpt = None, database_url: DbOpt = None
) -> None:
    """Fire NAME now (queued; a server's automation runner runs it). Refused while a firing is queued or running."""

    def work(_: Any, store: Any, ws: Any) -> Any:
        row = store.automations.get(ws, name)
        return store.automations.add_firing(row, "manual")

    queued = in_workspace(home, database_url, workspace, work)
    if queued is None:
        fail(f"automation {name!r} has a firing queued or running already: `tracetune automations show {name}`")
    typer.echo(f"#{queued['number']} queued: `tracetune automations show {name} --firing {queued['number']}`")


@automations_app.command("pause")
def automations_pause(
    name: str, workspace: WorkspaceOpt = "default", home: HomeOpt = None, database_url: DbOpt = None
) -> None:
    """Stop NAME from firing by itself (`run` still fires it; a running firing finishes)."""
    _pause(home, database_url, workspace, name, True)


@automations_app.command("resume")
def automations_resume(
    name: str, workspace: WorkspaceOpt = "default", home: HomeOpt = None, database_url: DbOpt = None
) -> None:
    """Let NAME fire by itself again."""
    _pause(home, database_url, workspace, name, False)


def _pause(home: Any, database_url: Any, workspace: str, name: str, paused: bool) -> None:
    row = in_workspace(
        home, database_url, workspace, lambda _, store, ws: store.automations.set_paused(ws, name, paused)
    )
    typer.echo(_automation_line(row, None))
