"""``tracetune demo --loop``: the closed loop on this machine — an automation retrains, evaluates and promotes the
app's model from the app's own rated traffic, over two batches of it.

1. ``trace 1``: the app answers a first batch of questions with its teacher (the base model with the call forced,
   or ``--teacher-base-url``); users rate each answer, a reviewer corrects some wrong ones (as in ``tracetune
   demo``);
2. ``automation``: the held-out questions become a LangSmith dataset (the SDK's ``create_examples``), and a rule is
   created over ``/tt/v1/automations``: the project's LLM runs of successful traces rated right, or corrected;
   every :data:`EVERY_RUNS` new such runs; fine-tune from the alias's current model; the gate :data:`GATE`; the
   alias :data:`ALIAS`. The first batch is already there, so it fires at once;
3. ``firing 1``: waited for, its steps shown (dataset version, training loss, evaluation, decision);
4. ``trace 2``: the app now calls the alias (``/v1/chat/completions`` resolves it on every request) on a second
   batch, rated and corrected the same way. The automation is paused while the batch is traced and rated, so that
   its firing learns from the whole batch (in production the trigger's count does that over time);
5. ``firing 2``: fine-tunes the alias's model further on the new runs; the gate decides whether the alias moves;
6. ``report``: ``report/loop.json``, each firing's decision, scores and evaluation page.

Everything goes through public interfaces (the SDKs, ``/tt/v1``), so ``--url`` runs it against a running tracetune
(its names then carry the demo home's time, so that a rerun starts clean).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tracetune.demo.app import APP_NAME, FEEDBACK_KEY, Calculator
from tracetune.demo.pipeline import (
    Demo,
    DemoFailed,
    DemoOptions,
    Reporter,
    demo_server,
    heldout_record,
    logging_to,
    new_demo,
    ok,
    openai_client,
    stage,
    trace_batch,
    tt_client,
)
from tracetune.demo.questions import Question, make_questions

LOOP_STAGES = ("start", "trace 1", "automation", "firing 1", "trace 2", "firing 2", "report")
EVERY_RUNS = 8
GATE = "tool_args_exact >= 0.5 and tool_args_exact >= current"
METRIC = "tool_args_exact"
FIRING_STEPS = ("dataset", "train", "evaluate", "decide")
FIRING_TIMEOUT_S = 1800.0


class Names:
    """The project, automation, alias and held-out dataset the loop demo makes (``tag``: a suffix, for ``--url``)."""

    def __init__(self, tag: str = "") -> None:
        suffix = f"-{tag}" if tag else ""
        self.project = f"{APP_NAME}{suffix}"
        self.automation = f"accounting{suffix}"
        self.alias = f"accounting-bot{suffix}"
        self.heldout = f"accounting-heldout{suffix}"


def run_loop_demo(options: DemoOptions, reporter: Reporter, *, settings_home: Path | None = None) -> dict[str, Any]:
    """Every stage of the loop demo; its summary (also in ``HOME/report/loop.json``). Raises :class:`DemoFailed`."""
    from tracetune.config import load_settings

    settings = load_settings()
    settings_home = settings_home or settings.home
    demo = new_demo(options, settings_home)
    names = Names(demo.home.name if options.url else "")
    demo.project = names.project
    traced, failing, heldout = options.sizes
    questions, heldout_questions = make_questions(2 * traced, heldout, n_failing=2 * failing, seed=options.seed)
    batches: list[dict[str, Any]] = []
    firings: list[dict[str, Any]] = []
    with logging_to(demo.home / "demo.log"), demo_server(demo, reporter, settings_home) as url:
        demo.url = url
        pages = options.url.rstrip("/") if options.url else f"http://{settings.host}:{settings.port}"
        for number, batch in enumerate((questions[:traced], questions[traced:]), 1):
            # the teacher answers until the alias exists; then the app calls the alias that the loop moves
            promoted = any(f["decision"] == "promoted" for f in firings)
            model = names.alias if promoted else None
            with stage(demo, reporter, f"trace {number}", _trace_description(len(batch), model), len(batch)) as done:
                if number > 1:
                    _post(demo, f"/tt/v1/automations/{names.automation}/pause")
                counts, line = trace_batch(demo, reporter, batch, model=model, stage_name=f"trace {number}")
                batches.append({**counts, "model": model or "teacher"})
                if number > 1:
                    _post(demo, f"/tt/v1/automations/{names.automation}/resume")
                done(line)
            if number == 1:
                with stage(demo, reporter, "automation", "a held-out dataset and an automation over the runs") as done:
                    done(_create_automation(demo, names, heldout_questions))
            with stage(demo, reporter, f"firing {number}", "dataset → fine-tune → evaluate → decide", 4) as done:
                firing = _wait_firing(demo, reporter, names, number)
                firing["page"] = f"{pages}/automations/{names.automation}/firings/{number}"
                firings.append(firing)
                done(firing_line(firing))
        with stage(demo, reporter, "report", "writing the report") as done:
            with tt_client(demo) as http:
                response = http.get(f"/tt/v1/aliases/{names.alias}")
            alias = ok(response).json() if response.status_code != 404 else {"model": None, "version": None}
            path = demo.home / "report" / "loop.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            done(str(path))
    summary = {
        "home": str(demo.home), "url": demo.url, "pages": pages, "project": names.project,
        "automation": names.automation, "alias": {"name": names.alias, **{k: alias[k] for k in ("model", "version")}},
        "model": options.model, "quick": options.quick, "seed": options.seed, "gate": GATE, "heldout": heldout,
        "batches": batches, "firings": firings, "stages_s": demo.timings,
        "total_s": round(sum(demo.timings.values()), 1),
    }  # fmt: skip
    path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def _trace_description(n: int, model: str | None) -> str:
    return f"the app on {n} questions, " + (f"now calling the alias {model}" if model else "with its teacher")


def _create_automation(demo: Demo, names: Names, heldout_questions: list[Question]) -> str:
    """The held-out dataset (with the ``langsmith`` SDK) and the automation (``POST /tt/v1/automations``)."""
    import langsmith
    from langchain_core.utils.function_calling import convert_to_openai_tool

    tools = [convert_to_openai_tool(Calculator)]  # the schema the app's LangChain model sends
    client = langsmith.Client(api_url=f"{demo.url}/api/v1", api_key=demo.options.api_key)
    dataset = client.create_dataset(names.heldout, description="held-out questions for the loop demo's gate")
    records = [heldout_record(q, tools) for q in heldout_questions]
    client.create_examples(
        dataset_id=dataset.id,
        examples=[
            {"inputs": {"messages": r["messages"][:-1], "tools": r["tools"]},
             "reference_outputs": {"message": r["messages"][-1]}}
            for r in records
        ],
    )  # fmt: skip
    opts = demo.options
    rule = {
        "name": names.automation, "project": names.project, "run_type": "llm", "filter": 'eq(status, "success")',
        "trace_filter": 'eq(status, "success")', "feedback_key": FEEDBACK_KEY, "min_score": 1,
        "use_corrections": True, "base_model": opts.model, "start_from": "current", "seed": opts.seed,
        "hyperparameters": {"n_epochs": opts.n_epochs, "batch_size": opts.batch_size,
                            "learning_rate_multiplier": opts.learning_rate_multiplier},
        "trigger": {"every_runs": EVERY_RUNS}, "eval_dataset": names.heldout, "gate": GATE, "alias": names.alias,
        "eval_max_tokens": 64,
    }  # fmt: skip
    with tt_client(demo) as http:
        ok(http.post("/tt/v1/automations", json=rule))
    return (
        f"'{names.automation}': every {EVERY_RUNS} new good runs, gate {GATE!r} on {len(records)} held-out "
        f"questions, alias {names.alias}"
    )


def _wait_firing(demo: Demo, reporter: Reporter, names: Names, number: int) -> dict[str, Any]:
    """Firing ``number``, once over (its steps shown as they go); :class:`DemoFailed` when it failed."""
    deadline = time.monotonic() + FIRING_TIMEOUT_S
    look = f"`tracetune automations show {names.automation} --home {demo.home}` and {demo.home / 'demo.log'}"
    with tt_client(demo) as http:
        while True:
            response = http.get(f"/tt/v1/automations/{names.automation}/firings/{number}")
            if response.status_code != 404:
                firing = ok(response).json()
                if firing["status"] == "failed":
                    raise DemoFailed(f"firing {number}", f"firing #{number} failed: {firing['reason']}", look)
                if firing["status"] == "succeeded":
                    return _firing_result(firing)
                step = firing["step"] or "dataset"
                done = FIRING_STEPS.index(step) if step in FIRING_STEPS else 0
                reporter.progress(done, len(FIRING_STEPS), _step_note(demo, firing))
            if time.monotonic() > deadline:
                raise DemoFailed(f"firing {number}", f"firing #{number} not over in {FIRING_TIMEOUT_S:.0f} s", look)
            time.sleep(1.0)


def _step_note(demo: Demo, firing: dict[str, Any]) -> str:
    """What the running step is doing: the training loss while it trains."""
    if firing["step"] != "train" or not firing.get("job_id"):
        return firing["step"] or "queued"
    events = openai_client(demo.url, demo.options.api_key).fine_tuning.jobs.list_events(firing["job_id"], limit=20)
    for event in events.data:  # newest first
        data = event.data or {}
        if event.type == "metrics" and "train_loss" in data:
            return f"train: step {data['step']}/{data['total_steps']}, loss {data['train_loss']:.3f}"
    return "train"


def _firing_result(firing: dict[str, Any]) -> dict[str, Any]:
    keep = ("number", "trigger", "decision", "reason", "candidate_model", "current_model", "runs_taken", "job_id")
    scores = {model: {k: s.get(k) for k in (METRIC, "accuracy")} for model, s in firing["scores"].items()}
    return {**{k: firing.get(k) for k in keep}, "scores": scores}


def firing_line(firing: dict[str, Any]) -> str:
    """One line for a firing: its decision, the candidate's score against the current model's, the runs taken."""
    candidate, current = firing["candidate_model"], firing["current_model"]
    scores = firing["scores"]
    vs = f"{METRIC} {scores[candidate][METRIC]:.2f} vs {scores[current][METRIC]:.2f} for {current}"
    return f"{firing['decision']} {candidate} ({vs}; {firing['runs_taken']} runs)"


def decision_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """``(label, value)`` lines for the CLI: the stages' times, each batch's ratings, each firing's decision, why,
    and its evaluation page, where the alias ended."""
    rows = [(f"stage: {name}", f"{seconds:.1f} s") for name, seconds in summary["stages_s"].items()]
    rows.append(("total", f"{summary['total_s']:.1f} s"))
    for number, batch in enumerate(summary["batches"], 1):
        rows.append((f"batch {number} ({batch['model']})",
                     f"{batch['rated_up']}/{batch['traced']} right, {batch['corrected']} corrected"))  # fmt: skip
    for firing in summary["firings"]:
        rows.append((f"firing #{firing['number']}", firing_line(firing)))
        rows.append(("  why", firing["reason"] or ""))
        rows.append(("  evaluation page", firing["page"]))
    alias = summary["alias"]
    where = f"{alias['model']} (version {alias['version']})" if alias["model"] else "not created: nothing promoted"
    rows.append((f"alias {alias['name']}", where))
    return rows


def _post(demo: Demo, path: str) -> None:
    with tt_client(demo) as http:
        ok(http.post(path))
