"""``tracetune demo``: the whole loop on the real SmolLM2 (full size: the issue's acceptance), and its failures.

The end-to-end test takes about three minutes on a 2-core CPU and runs in the default suite (the README's main
job is tested wherever the README's test command runs; ``TRACETUNE_TEST_SKIP_DEMO=1`` skips it for a quick local
run, never in CI). It asserts on the summary the demo writes, and on what it leaves in its home's
store. (``--quick`` trains on fewer examples in about the same time, so CI runs the real thing.)
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.models import smollm2_home
from tracetune.cli import app
from tracetune.demo.pipeline import STAGES, DemoOptions, run_demo
from tracetune.demo.report import markdown, result_rows

skippable = pytest.mark.skipif(
    os.environ.get("TRACETUNE_TEST_SKIP_DEMO") == "1" and not os.environ.get("CI"),
    reason="TRACETUNE_TEST_SKIP_DEMO=1: the whole demo (~3 min) is skipped in this run",
)


class Collect:
    """A reporter that keeps what the demo reports."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.done: dict[str, str] = {}
        self.progress_calls = 0

    def stage_started(self, stage: str, description: str, total: int | None = None) -> None:
        self.started.append(stage)

    def progress(self, done: int, total: int | None = None, text: str | None = None) -> None:
        self.progress_calls += 1

    def stage_done(self, stage: str, seconds: float, result: str) -> None:
        self.done[stage] = result


@skippable
def test_demo_traces_selects_fine_tunes_and_beats_the_base(tmp_path, tmp_path_factory):
    from tracetune.store import open_store

    reporter = Collect()
    home = tmp_path / "demo-home"
    summary = run_demo(DemoOptions(home=home), reporter, settings_home=smollm2_home(tmp_path_factory))
    print(json.dumps({k: summary[k] for k in ("stages_s", "total_s", "runs", "accuracy", "loss")}))

    assert reporter.started == list(STAGES) and list(reporter.done) == list(STAGES) and reporter.progress_calls > 0
    assert json.loads((home / "report" / "summary.json").read_text()) == summary
    runs = summary["runs"]
    assert runs["traced"] == 40 and runs["failed"] == 4  # the four divisions by zero raised in the app
    assert runs["root_runs"] == 40
    # selected = rated right + corrected by the reviewer, never a failed or uncorrected wrong one
    assert runs["selected"] == runs["rated_up"] + runs["corrected"] == runs["exported"]
    assert 0 < runs["corrected"] < runs["rated_down"] - runs["failed"] + 1
    assert summary["job"]["status"] == "succeeded" and summary["job"]["fine_tuned_model"].startswith(
        "ft:smollm2-135m-instruct:default:calculator:"
    )
    loss = summary["loss"]
    assert len(loss["steps"]) >= 4 and loss["last"] < loss["first"] / 3
    assert summary["heldout"] == 20
    acc = summary["accuracy"]
    assert acc["tuned"] >= 0.9 and acc["base"] <= 0.1, acc
    report = Path(summary["files"]["report"]).read_text()
    assert "Held-out answers" in report and summary["job"]["fine_tuned_model"] in report
    assert Path(summary["files"]["chart"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # everything stays in the demo's store, for `tracetune serve --home`
    store = open_store(f"sqlite:///{home / 'tracetune.db'}")
    try:
        ws = store.workspaces.get("default").id
        (dataset,) = store.datasets.list(ws)
        assert dataset["record_count"] == runs["exported"]
        assert dataset["summary"]["corrections"]["applied"] == runs["corrected"]
        (job,), _ = store.jobs.list(ws)
        assert job["status"] == "succeeded"
        assert [m["id"] for m in store.models.list(ws)] == [summary["job"]["fine_tuned_model"]]
    finally:
        store.close()


def test_a_failed_stage_says_what_failed_and_where_to_look(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = CliRunner().invoke(app, ["demo", "--url", f"http://127.0.0.1:{port}", "--home", str(tmp_path / "h")])
    assert result.exit_code == 1
    assert "the demo stopped at stage 'start'" in result.output and "did not answer /healthz" in result.output
    assert "look at:" in result.output and str(tmp_path / "h" / "demo.log") in result.output
    assert "Traceback" not in result.output


def test_teacher_url_needs_a_teacher_model():
    result = CliRunner().invoke(app, ["demo", "--teacher-base-url", "http://127.0.0.1:1/v1"])
    assert result.exit_code == 2 and "--teacher-base-url needs --teacher-model" in result.output


def _summary(**over: Any) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "home": "/tmp/h", "model": "base", "stages_s": {"start": 1.0, "trace": 2.5}, "total_s": 3.5,
        "runs": {"traced": 40, "failed": 4, "rated_up": 18, "selected": 30, "exported": 29},
        "job": {"id": "ftjob-1", "fine_tuned_model": "ft:base:default:calculator:abcd1234"},
        "loss": {"first": 0.8, "last": 0.01, "steps": [[1, 0.8], [2, 0.01]]},
        "heldout": 20, "accuracy": {"base": 0.0, "tuned": 0.95}, "files": {},
    }  # fmt: skip
    summary.update(over)
    return summary


def test_result_rows_name_every_stage_and_figure():
    rows = dict(result_rows(_summary()))
    assert rows["stage: trace"] == "2.5 s" and rows["total"] == "3.5 s"
    assert rows["runs traced (failed)"] == "40 (4)" and rows["LLM runs selected"] == "30"
    assert rows["conversations exported"] == "29"
    assert rows["training loss first → last"] == "0.800 → 0.010"
    assert rows["held-out accuracy (20 questions)"] == "base 0%, tuned 95%"


def test_markdown_report_lists_each_held_out_answer():
    call = {"tool_calls": [{"function": {"name": "Calculator", "arguments": '{"num1": 1, "num2": 2}'}}]}
    evaluation = {
        "models": {
            "base": {"results": [{"line": 1, "correct": False, "reply": {"content": "3 | maybe"}}]},
            "ft:x": {"results": [{"line": 1, "correct": True, "reply": call}]},
        }
    }
    text = markdown(_summary(), evaluation, chart="demo.png")
    assert "![loss and accuracy](demo.png)" in text
    assert '| #1 | ❌ "3 \\| maybe" | ✅ `Calculator({"num1": 1, "num2": 2})` |' in text
    assert "tracetune serve --home /tmp/h" in text
    assert "a rerun trains to the same losses" in text and "can flip between runs" in text  # what still varies
