"""Acceptance: validation-driven fine-tuning of the real SmolLM2 through the unmodified ``openai`` client, on a task
that needs a decision (support tickets routed by team and priority, ``tracetune.demo.tickets``).

A deliberately collapsed model — trained only on tickets answered ``{"team": "sales", "priority": 3}`` — must be
called out by the job's diagnostics: the job events say that every validation answer is the same call, and
that validation expects values the training data never shows, each with what to do; ``tracetune eval`` of the tuned
model says the same of its held-out answers.

About two minutes on a 2-core CPU (3 epochs, 6 validation tickets): the slow tier (``scripts/test.sh --slow``).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import openai
from typer.testing import CliRunner

from tests.acceptance.test_fine_tuning_openai import pytestmark as slow
from tests.acceptance.test_fine_tuning_openai import server  # noqa: F401 (the fixture)
from tracetune.cli import app
from tracetune.demo.tickets import Ticket, make_tickets

pytestmark = slow


def upload(client: openai.OpenAI, name: str, records: list[dict]) -> str:
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    return client.files.create(file=(name, data), purpose="fine-tune").id


def wait(client: openai.OpenAI, job_id: str, limit_s: float = 900) -> object:
    started = time.perf_counter()
    job = client.fine_tuning.jobs.retrieve(job_id)
    while job.status not in ("succeeded", "failed", "cancelled"):
        assert time.perf_counter() - started < limit_s, f"job still {job.status} after {limit_s} s"
        time.sleep(0.25)
        job = client.fine_tuning.jobs.retrieve(job_id)
    return job


def test_a_collapsed_model_is_called_out_by_the_job_diagnostics_and_by_eval(server, tmp_path: Path):  # noqa: F811
    from tracetune.models import DEFAULT_MODEL_ID

    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    traced, _ = make_tickets(20, 0, seed=7)
    collapsed = [Ticket(t.text, "sales", 3).record() for t in traced[:12]]  # one answer for every ticket
    valid = [t.record() for t in traced[12:18]]  # 6 tickets with their real, varied answers
    job = client.fine_tuning.jobs.create(
        model=DEFAULT_MODEL_ID, training_file=upload(client, "collapsed.jsonl", collapsed),
        validation_file=upload(client, "valid.jsonl", valid), suffix="collapsed",
        hyperparameters={"n_epochs": 3, "batch_size": 4},
    )  # fmt: skip
    job = wait(client, job.id)
    assert job.status == "succeeded", job.error
    events = list(reversed(list(client.fine_tuning.jobs.list_events(job.id, limit=100))))
    epochs = [e.data for e in events if e.type == "metrics" and "valid_tool_args_exact" in (e.data or {})]
    # never stopped early: no epoch scores better than one answer for every ticket would
    # the format is learned: every validation ticket answered with the call, or all but one still in prose (the job
    # is unseeded, as the client sends it: 5/6 was seen once in CI; the warning below allows the same)
    assert len(epochs) == 3 and epochs[-1]["valid_tool_name_accuracy"] >= 5 / 6
    assert all(m["valid_tool_args_exact"] <= 0.25 for m in epochs)  # the decision is not
    warnings = {e.data["diagnostic"]["code"]: e.message for e in events if e.level == "warn" and e.data}
    print(json.dumps({"epochs": epochs, "warnings": warnings}))
    # the best epoch's answers: all 6 the same call, or 4-5 of them when that epoch still answered a ticket in prose
    # or with another call (the job is unseeded: a sixth call named "<tool name>" was seen once in CI)
    collapsed = re.match(
        r"([4-6])/([4-6]) validation calls are the same call( \(\d more answered without a call\))?: "
        r'route_ticket\(\{"priority": 3, "team": "sales"\}\)',
        warnings["collapsed_outputs"],
    )
    assert collapsed and int(collapsed[1]) <= int(collapsed[2]), warnings["collapsed_outputs"]
    assert "tracetune models add" in warnings["collapsed_outputs"]
    assert "route_ticket.team: validation expects" in warnings["unseen_values"]
    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    assert {"valid_tool_args_exact", "valid_accuracy"} <= set(checkpoints[0].metrics.model_dump(exclude_none=True))

    held_out = tmp_path / "valid.jsonl"
    held_out.write_text("".join(json.dumps(r) + "\n" for r in valid))
    out = tmp_path / "eval"
    run = ["eval", "--url", server.url, "--model", job.fine_tuned_model, "--data", str(held_out), "-o", str(out)]
    result = CliRunner().invoke(app, run)
    assert result.exit_code == 0, result.output
    collapsed = re.search(
        rf"warning \({re.escape(job.fine_tuned_model)}\): ([4-6])/([4-6]) held-out calls are the same call",
        result.output,
    )
    assert collapsed and int(collapsed[1]) <= int(collapsed[2]), result.output
    assert "what to do: " in result.output
    report = json.loads((out / "eval.json").read_text())
    assert [d["code"] for d in report["models"][job.fine_tuned_model]["diagnostics"]] == ["collapsed_outputs"]
