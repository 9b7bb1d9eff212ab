"""``tracetune demo --loop``: the closed loop on the real SmolLM2 (the slow tier: about 3.5 minutes on 2 CPU cores),
its result lines, and its failure when nothing answers."""

from __future__ import annotations

import json
import socket
from typing import Any

from typer.testing import CliRunner

from tests.acceptance.test_fine_tuning_openai import pytestmark as slow
from tests.demo.test_demo import Collect
from tests.models import smollm2_home
from tracetune.cli import app
from tracetune.demo.loop import EVERY_RUNS, LOOP_STAGES, METRIC, decision_rows, run_loop_demo
from tracetune.demo.pipeline import DemoOptions
from tracetune.models import DEFAULT_MODEL_ID


def slow_tier(test: Any) -> Any:
    """The slow tier's marks (``scripts/test.sh --slow``) on one test of a module that has quick ones too."""
    for mark in slow:
        test = mark(test)
    return test


@slow_tier
def test_the_loop_demo_promotes_through_the_gate_twice_over_growing_traffic(tmp_path, tmp_path_factory):
    from tracetune.store import open_store

    reporter = Collect()
    home = tmp_path / "loop-home"
    summary = run_loop_demo(DemoOptions(home=home, quick=True), reporter, settings_home=smollm2_home(tmp_path_factory))
    print(json.dumps({k: summary[k] for k in ("stages_s", "total_s", "batches", "firings", "alias")}))

    assert reporter.started == list(LOOP_STAGES) and list(reporter.done) == list(LOOP_STAGES)
    assert json.loads((home / "report" / "loop.json").read_text()) == summary
    first_batch, second_batch = summary["batches"]
    assert first_batch["model"] == "teacher" and first_batch["traced"] == 24 and first_batch["failed"] == 2
    first, second = summary["firings"]
    # firing 1: on every good run of the first batch (rated right or corrected), against the base model
    assert first["trigger"] == f"{first_batch['rated_up'] + first_batch['corrected']} new runs"
    assert first["runs_taken"] == first_batch["rated_up"] + first_batch["corrected"] >= EVERY_RUNS
    assert first["current_model"] == DEFAULT_MODEL_ID and first["decision"] == "promoted", first["reason"]
    tuned = first["candidate_model"]
    assert first["scores"][tuned][METRIC] >= 0.5 > first["scores"][DEFAULT_MODEL_ID][METRIC]
    # then the app calls the alias; firing 2 takes only the new runs and continues from the promoted model
    assert second_batch["model"] == "accounting-bot" and second_batch["traced"] == 24
    assert second["runs_taken"] == second_batch["rated_up"] + second_batch["corrected"]
    assert second["current_model"] == tuned and second["candidate_model"] != tuned
    candidate, current = (second["scores"][m][METRIC] for m in (second["candidate_model"], tuned))
    passes = candidate >= 0.5 and candidate >= current
    assert second["decision"] == ("promoted" if passes else "refused"), second
    alias = summary["alias"]
    assert alias["model"] == (second["candidate_model"] if passes else tuned)
    assert alias["version"] == (2 if passes else 1)
    assert [f["page"] for f in summary["firings"]] == [
        f"{summary['pages']}/automations/accounting/firings/{n}" for n in (1, 2)
    ]

    # the lineage stays in the demo's store: two dataset versions, two jobs, the second from the first's model
    store = open_store(f"sqlite:///{home / 'tracetune.db'}")
    try:
        ws = store.workspaces.get("default").id
        (automation,) = store.automations.list(ws)
        firings = store.automations.firings(automation["id"])
        assert [(f["number"], f["status"]) for f in firings] == [(2, "succeeded"), (1, "succeeded")]
        assert len({f["dataset_version_id"] for f in firings}) == 2
        jobs = {f["job_id"]: store.jobs.get(ws, f["job_id"]) for f in firings}
        assert jobs[second["job_id"]]["model"] == tuned and jobs[first["job_id"]]["model"] == DEFAULT_MODEL_ID
    finally:
        store.close()


def _firing(number: int, decision: str, candidate: str, current: str, scores: tuple[float, float]) -> dict[str, Any]:
    return {
        "number": number, "decision": decision, "candidate_model": candidate, "current_model": current,
        "runs_taken": 19, "reason": f"{METRIC} >= current: {scores[0]} >= {scores[1]}: yes",
        "scores": {candidate: {METRIC: scores[0]}, current: {METRIC: scores[1]}},
        "page": f"http://127.0.0.1:8080/automations/accounting/firings/{number}",
    }  # fmt: skip


def test_the_loop_demo_lines_name_each_decision_why_and_its_page():
    summary = {
        "stages_s": {"start": 1.0, "firing 1": 40.0}, "total_s": 41.0,
        "batches": [{"model": "teacher", "traced": 24, "rated_up": 11, "corrected": 8}],
        "firings": [_firing(1, "promoted", "ft:a", "base", (0.6, 0.0)),
                    _firing(2, "refused", "ft:b", "ft:a", (0.5, 0.6))],
        "alias": {"name": "accounting-bot", "model": "ft:a", "version": 1},
    }  # fmt: skip
    rows = decision_rows(summary)
    lines = dict(rows)
    assert lines["stage: firing 1"] == "40.0 s" and lines["total"] == "41.0 s"
    assert lines["batch 1 (teacher)"] == "11/24 right, 8 corrected"
    assert lines["firing #1"] == f"promoted ft:a ({METRIC} 0.60 vs 0.00 for base; 19 runs)"
    assert lines["firing #2"] == f"refused ft:b ({METRIC} 0.50 vs 0.60 for ft:a; 19 runs)"
    pages = [value for label, value in rows if label.strip() == "evaluation page"]
    assert pages == [f"http://127.0.0.1:8080/automations/accounting/firings/{n}" for n in (1, 2)]
    assert lines["alias accounting-bot"] == "ft:a (version 1)"
    summary["alias"] = {"name": "accounting-bot", "model": None, "version": None}
    assert dict(decision_rows(summary))["alias accounting-bot"] == "not created: nothing promoted"


def test_the_loop_demo_says_which_stage_failed_when_nothing_answers(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tmp_path / "h"
    result = CliRunner().invoke(app, ["demo", "--loop", "--url", f"http://127.0.0.1:{port}", "--home", str(home)])
    assert result.exit_code == 1
    assert "the demo stopped at stage 'start'" in result.output and "did not answer /healthz" in result.output
    assert str(home / "demo.log") in result.output and "Traceback" not in result.output
