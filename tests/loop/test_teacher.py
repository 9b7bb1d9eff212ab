"""Distillation (``tracetune teacher label``): a teacher answers the runs rated bad, failed or never rated, at a
bounded rate; its answers are stored as runs tagged ``teacher`` with their source and token usage, selectable and
exportable; a second call resumes (nothing asked twice); a teacher that refuses stops the call naming its URL.

The teacher here is ``openai_standin``, the stand-in for a hosted OpenAI-compatible service (the app's production
model is such a service; it cannot be reached from a test run)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from tests.acceptance.openai_standin import running_standin
from tests.dataset_support import chat_run, ingest, tokenizer_home
from tracetune.cli import app
from tracetune.ingest.service import IngestService
from tracetune.store.blobs import Blobs
from tracetune.store.workspaces import DEFAULT_WORKSPACE

TOOLS = [{"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}}]  # fmt: skip


def traffic(store: Any, project: str) -> dict[str, str]:
    """Eight runs: 2 rated good, 3 rated bad, 2 never rated, 1 failed; their ids by kind."""
    ws = store.workspaces.ensure(DEFAULT_WORKSPACE)
    kinds = ["good"] * 2 + ["bad"] * 3 + ["unrated"] * 2 + ["failed"]
    runs = []
    for n, kind in enumerate(kinds):
        run = chat_run(f"What is {n} plus {n}?", "no idea" if kind == "bad" else str(2 * n), n=n)
        run["inputs"]["tools"] = TOOLS
        if kind == "failed":
            run["error"] = "RateLimitError: try again"
            run["outputs"] = None
        runs.append(run)
    ingest(store, ws.id, runs, project)
    service = IngestService(store, Blobs(Path("/nonexistent")))
    for run, kind in zip(runs, kinds, strict=True):
        if kind in ("good", "bad"):
            service.feedback(ws.id, {"run_id": run["id"], "key": "user_score", "score": 1 if kind == "good" else 0})
    return {run["id"]: kind for run, kind in zip(runs, kinds, strict=True)}


def label(db_url: str, home: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["teacher", "label", *args, "--database-url", db_url, "--home", str(home)])


def test_the_teacher_answers_bad_failed_and_unrated_runs_once_stored_as_runs(store, db_url, tmp_path_factory):
    from tracetune.convert.dataset_builder import ExportOptions, Selection
    from tracetune.convert.export import export_dataset
    from tracetune.query.runs_query import RunQuery, query_runs

    project = f"app-{uuid.uuid4().hex[:6]}"
    kinds = traffic(store, project)
    home = tokenizer_home(tmp_path_factory)
    with running_standin() as hosted:
        args = ["--project", project, "--teacher-base-url", hosted.base_url, "--teacher-model", "gpt-4o",
                "--rate", "20"]  # fmt: skip
        started = time.monotonic()
        first = label(db_url, home, *args, "--limit", "4")
        second = label(db_url, home, *args)
        elapsed = time.monotonic() - started
        third = label(db_url, home, *args)
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("4 runs labeled by gpt-4o (0 already were; 6 of 8 LLM runs picked")
    assert second.exit_code == 0 and second.stdout.startswith("2 runs labeled by gpt-4o (4 already were;")
    assert third.stdout.startswith("0 runs labeled by gpt-4o (6 already were;")
    assert elapsed >= 5 / 20 * 0.9  # six requests, 20 a second at most
    assert "teacher tokens:" in first.stdout

    ws = store.workspaces.ensure(DEFAULT_WORKSPACE)
    pid = store.projects.list(ws.id, name=project, limit=1)[0]["id"]
    taught = query_runs(store, ws.id, RunQuery(project_ids=[pid], filter='has(tags, "teacher")')).runs
    assert len(taught) == 6
    sources = {r["extra"]["metadata"]["teacher_source_run_id"] for r in taught}
    assert {kinds[s] for s in sources} == {"bad", "unrated", "failed"} and len(sources) == 6
    one = taught[0]
    assert one["name"] == "teacher" and one["run_type"] == "llm" and one["tags"] == ["teacher"]
    assert one["inputs"]["tools"] == TOOLS and one["inputs"]["messages"][-1]["role"] == "user"
    assert one["outputs"]["choices"][0]["message"]["tool_calls"]  # the stand-in calls the offered tool
    assert one["prompt_tokens"] and one["completion_tokens"]

    # exportable like any run: the teacher's answers as training records
    result = export_dataset(
        store, ws.id, Selection(project=project, filter='has(tags, "teacher")'), ExportOptions(name="taught"),
        home=home,
    )  # fmt: skip
    assert result.dataset is not None and result.dataset["train_count"] == 6


def test_a_teacher_that_refuses_stops_the_call_naming_its_url(store, db_url, tmp_path_factory):
    project = f"app-{uuid.uuid4().hex[:6]}"
    traffic(store, project)
    home = tokenizer_home(tmp_path_factory)
    refused = label(db_url, home, "--project", project, "--teacher-base-url", "http://127.0.0.1:9/v1",
                    "--teacher-model", "gpt-4o")  # fmt: skip
    assert refused.exit_code == 2
    assert "the teacher at http://127.0.0.1:9/v1 failed" in refused.output and "field 'base_url'" in refused.output
    bad = label(db_url, home, "--project", project, "--teacher-base-url", "ftp://x", "--teacher-model", "m")
    assert bad.exit_code == 2 and "http(s)://" in bad.output
    which = label(db_url, home, "--project", project, "--teacher-base-url", "http://x/v1", "--teacher-model", "m",
                  "--which", "some")  # fmt: skip
    assert which.exit_code == 2 and "which must be one of" in which.output
    missing = label(db_url, home, "--project", "nope", "--teacher-base-url", "http://x/v1", "--teacher-model", "m")
    assert missing.exit_code == 2 and "no project named 'nope'" in missing.output


def test_the_teacher_gives_reference_answers_to_held_out_inputs(tmp_path):
    import json

    data = tmp_path / "heldout.jsonl"
    asked = {"messages": [{"role": "user", "content": "What is 2 plus 3?"}], "tools": TOOLS}
    answered = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                             {"role": "assistant", "content": "an old answer"}]}  # fmt: skip
    data.write_text("".join(json.dumps(r) + "\n" for r in (asked, answered, asked)))
    out = tmp_path / "refs.jsonl"
    with running_standin() as hosted:
        args = ["teacher", "references", "--data", str(data), "-o", str(out), "--teacher-base-url", hosted.base_url,
                "--teacher-model", "gpt-4o", "--rate", "50"]  # fmt: skip
        first = CliRunner().invoke(app, args)
        again = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("3 reference answers by gpt-4o (0 of 3 were in")
    assert again.stdout.startswith("0 reference answers by gpt-4o (3 of 3 were in")  # resumed: nothing asked twice
    refs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(refs) == 3
    assert refs[0]["tools"] == TOOLS and refs[0]["messages"][:1] == asked["messages"]
    assert refs[0]["messages"][-1]["role"] == "assistant" and refs[0]["messages"][-1]["tool_calls"]
    assert refs[1]["messages"][:2] == answered["messages"][:2] and refs[1]["messages"][-1]["content"] == "Echo: Hi"
    refused = CliRunner().invoke(
        app, ["teacher", "references", "--data", str(data), "-o", str(tmp_path / "x.jsonl"), "--teacher-base-url",
              "http://127.0.0.1:9/v1", "--teacher-model", "gpt-4o"],
    )  # fmt: skip
    assert refused.exit_code == 2 and "the teacher at http://127.0.0.1:9/v1 failed" in refused.output
    data.write_text('{"messages": [{"role": "assistant", "content": "only an answer"}]}\n')
    bad = CliRunner().invoke(
        app, ["teacher", "references", "--data", str(data), "-o", str(tmp_path / "y.jsonl"), "--teacher-base-url",
              "http://127.0.0.1:9/v1", "--teacher-model", "m"],
    )  # fmt: skip
    assert bad.exit_code == 2 and "line 1: nothing to answer" in bad.output
