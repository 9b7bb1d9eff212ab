"""``tracetune eval --dataset``: a LangSmith dataset's examples are the held-out set, on the real SmolLM2 served by
tracetune, and each model's results are an experiment the ``langsmith`` SDK reads like one ``evaluate()`` made:
listed by ``list_projects(reference_dataset_id=…)``, a run per example with its ``reference_example_id``, the
scores as feedback equal to the report's."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from langsmith.schemas import DataType
from typer.testing import CliRunner

from tests.acceptance.conftest import sdk_client
from tests.acceptance.helpers import KNOWN_CLIENT_WARNINGS
from tests.serve.support import smollm2_server, stop_shared
from tracetune.cli import app

pytestmark = pytest.mark.filterwarnings(*KNOWN_CLIENT_WARNINGS)

CAPITALS = [("France", "Paris"), ("Italy", "Rome")]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[object]:
    yield smollm2_server(tmp_path_factory)
    stop_shared()


def _question(country: str) -> str:
    return f"What is the capital of {country}? Answer in one word."


def test_eval_over_a_dataset_keeps_each_model_as_an_experiment(server, tmp_path: Path) -> None:
    client = sdk_client(server)
    ds = client.create_dataset(f"capitals-{uuid.uuid4().hex[:6]}", data_type=DataType.chat)
    for country, city in CAPITALS:
        client.create_example(
            inputs={"messages": [{"role": "user", "content": _question(country)}]},
            reference_outputs={"message": {"role": "assistant", "content": city}},
            dataset_id=ds.id,
        )
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--url",
            server.url,
            "--model",
            "gpt-4o-mini",
            "--dataset",
            ds.name,
            "--max-tokens",
            "8",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    experiment = report["experiments"]["gpt-4o-mini"]
    assert f"experiment {experiment['name']}" in result.output

    (project,) = client.list_projects(reference_dataset_id=ds.id)
    assert (str(project.id), project.name) == (experiment["id"], experiment["name"])
    assert project.metadata["model"] == "gpt-4o-mini" and project.end_time is not None
    examples = {str(e.id): e for e in client.list_examples(dataset_id=ds.id)}
    runs = list(client.list_runs(project_id=project.id))
    assert sorted(str(r.reference_example_id) for r in runs) == sorted(examples)
    rows = report["models"]["gpt-4o-mini"]["results"]
    by_question = {r.inputs["messages"][0]["content"]: r for r in runs}
    for (country, city), row in zip(CAPITALS, rows, strict=True):
        run = by_question[_question(country)]
        assert run.outputs["message"] == row["reply"]
        assert examples[str(run.reference_example_id)].outputs["message"]["content"] == city
        scores = {f.key: f.score for f in client.list_feedback(run_ids=[run.id])}
        assert scores == {k: float(row[k]) for k in ("correct", "text_exact", "text_fuzzy")}
    assert "Paris" in by_question[_question("France")].outputs["message"]["content"]  # the real model answered


def test_eval_needs_exactly_one_source_and_an_existing_dataset(server, tmp_path: Path) -> None:
    both = CliRunner().invoke(app, ["eval", "--url", server.url, "--model", "m", "-o", str(tmp_path)])
    assert both.exit_code != 0 and "exactly one of --data" in both.output
    missing = CliRunner().invoke(
        app, ["eval", "--url", server.url, "--model", "m", "--dataset", "no-such-dataset", "-o", str(tmp_path)]
    )
    assert missing.exit_code != 0 and "no dataset named 'no-such-dataset'" in missing.output


def test_eval_gate_passes_or_fails_the_candidate_against_the_current_model(server, tmp_path: Path) -> None:
    """``--gate``: the last model against the first; every comparison printed and kept; a failed gate exits 1, a
    gate that is not one exits 2 before anything runs."""
    data = tmp_path / "capitals.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": _question(country)},
                                                     {"role": "assistant", "content": city}]}) + "\n"
                            for country, city in CAPITALS))  # fmt: skip
    args = ["eval", "--url", server.url, "--data", str(data), "--max-tokens", "8", "-o", str(tmp_path / "out"),
            "--model", "smollm2-135m-instruct", "--model", "gpt-4o-mini"]  # fmt: skip
    same = CliRunner().invoke(app, [*args, "--gate", "text_fuzzy >= current and latency_p50_s < 60"])
    assert same.exit_code == 0, same.output  # one model under two names: the candidate is as good
    assert "gate passed for gpt-4o-mini against smollm2-135m-instruct" in same.output
    report = json.loads((tmp_path / "out" / "eval.json").read_text())["gate"]
    assert report["passed"] and report["checks"][0].startswith("text_fuzzy >= current:")
    better = CliRunner().invoke(app, [*args, "--gate", "text_fuzzy >= current + 0.5 or tool_args_exact >= 0.9"])
    assert better.exit_code == 1, better.output
    assert "gate FAILED" in better.output and "tool_args_exact does not apply to this data" in better.output
    for bad, words in (("accuracy >= 0.9 +", "does not parse"), ("speed > 1", "unknown metric 'speed'"),
                       ("__import__('os')", "is not a comparison")):  # fmt: skip
        refused = CliRunner().invoke(app, [*args, "--gate", bad])
        assert refused.exit_code == 2 and words in refused.output, refused.output
