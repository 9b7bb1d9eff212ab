"""Acceptance: ``langsmith.evaluate()`` / ``aevaluate()`` and ``evaluate_comparative`` against tracetune, unmodified,
on SQLite and PostgreSQL. The target is a real LangChain ``ChatOpenAI`` calling SmolLM2 served by tracetune
(greedy); the experiment, its runs (each with its ``reference_example_id``) and the evaluators' feedback are read
back through the SDK, and ``list_projects(reference_dataset_id=…)`` lists the experiments of the dataset."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from tests.serve.support import smollm2_server, stop_shared

from .helpers import KNOWN_CLIENT_WARNINGS

pytestmark = pytest.mark.filterwarnings(*KNOWN_CLIENT_WARNINGS)

QUESTIONS = [
    ("What is the capital of France? Answer in one word.", "Paris"),
    ("What is the capital of Italy? Answer in one word.", "Rome"),
    ("What is the capital of Japan? Answer in one word.", "Tokyo"),
]


@pytest.fixture(scope="module")
def model_server(tmp_path_factory) -> Iterator[object]:
    yield smollm2_server(tmp_path_factory)
    stop_shared()


@pytest.fixture
def dataset(client):
    ds = client.create_dataset(f"capitals-{uuid.uuid4().hex[:8]}", description="capital cities")
    client.create_examples(
        dataset_id=ds.id,
        examples=[{"inputs": {"question": q}, "reference_outputs": {"answer": a}} for q, a in QUESTIONS],
    )
    return ds


def _target(model_server, max_tokens: int = 8):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        base_url=f"{model_server.url}/v1", api_key="sk-local", model="gpt-4o-mini", temperature=0, max_tokens=max_tokens
    )

    def answer(inputs: dict) -> dict:
        return {"answer": llm.invoke(inputs["question"]).content}

    return answer


def correct(outputs: dict, reference_outputs: dict) -> dict:
    return {"key": "correct", "score": reference_outputs["answer"].lower() in outputs["answer"].lower()}


def brief(outputs: dict) -> bool:
    return len(outputs["answer"]) < 40


def test_evaluate_runs_an_experiment_with_feedback(client, dataset, model_server):
    results = client.evaluate(
        _target(model_server),
        data=dataset.name,
        evaluators=[correct, brief],
        experiment_prefix="smollm2",
        blocking=True,
    )
    rows = list(results)
    assert len(rows) == len(QUESTIONS)
    scores = {r["example"].inputs["question"]: r["evaluation_results"]["results"] for r in rows}
    assert all({e.key for e in evals} == {"correct", "brief"} for evals in scores.values())
    assert next(e.score for e in scores[QUESTIONS[0][0]] if e.key == "correct")  # SmolLM2 knows Paris
    client.flush()

    project = client.read_project(project_name=results.experiment_name)
    assert str(project.reference_dataset_id) == str(dataset.id)
    assert project.metadata.get("dataset_version")  # written by the SDK's end of the experiment
    assert [p.id for p in client.list_projects(reference_dataset_id=dataset.id)] == [project.id]
    assert client.read_dataset(dataset_id=dataset.id).session_count == 1

    examples = {str(e.id): e for e in client.list_examples(dataset_id=dataset.id)}
    runs = list(client.list_runs(project_id=project.id, is_root=True))
    assert sorted(str(r.reference_example_id) for r in runs) == sorted(examples)
    for run in runs:
        question = examples[str(run.reference_example_id)].inputs["question"]
        assert run.inputs == {"question": question} and run.outputs["answer"]

    async def v2_runs() -> list:  # the v2 query API finds the same runs from the dataset alone
        pager = client.runs.query_v2(reference_dataset_id=str(dataset.id), is_root=True, selects=["ID"])
        return [str(item.id) async for item in pager]

    assert sorted(asyncio.run(v2_runs())) == sorted(str(r.id) for r in runs)
    feedback = list(client.list_feedback(run_ids=[r.id for r in runs]))
    assert sorted(f.key for f in feedback) == sorted(["correct", "brief"] * len(QUESTIONS))
    by_run = {(str(f.run_id), f.key): f.score for f in feedback}
    for r in rows:
        for e in r["evaluation_results"]["results"]:
            assert by_run[(str(r["run"].id), e.key)] == float(e.score)


def test_aevaluate_and_compare_two_experiments(client, dataset, model_server):
    sync_target = _target(model_server)

    async def target(inputs: dict) -> dict:
        return await asyncio.to_thread(sync_target, inputs)

    async def run_both():
        first = await client.aevaluate(target, data=dataset.name, evaluators=[correct], experiment_prefix="a")
        terse = _target(model_server, max_tokens=2)

        async def short(inputs: dict) -> dict:
            return await asyncio.to_thread(terse, inputs)

        second = await client.aevaluate(short, data=dataset.name, evaluators=[correct], experiment_prefix="b")
        return first, second

    first, second = asyncio.run(run_both())
    client.flush()

    def longer(runs: list, example) -> dict:
        lengths = [len(r.outputs["answer"]) for r in runs]
        return {"key": "longer", "scores": {r.id: float(n == max(lengths)) for r, n in zip(runs, lengths, strict=True)}}

    compared = client.evaluate((first.experiment_name, second.experiment_name), evaluators=[longer])
    assert len(list(compared)) == len(QUESTIONS)  # one comparison per example
    (stored,) = client.request_with_retries("GET", f"/datasets/{dataset.id}/comparative").json()
    assert stored["id"] == str(compared.comparative_experiment.id)
    experiments = {p.name for p in client.list_projects(reference_dataset_id=dataset.id)}
    assert {first.experiment_name, second.experiment_name} <= experiments
    feedback = list(client.list_feedback(feedback_key=["longer"]))
    first_runs = {r.id for r in client.list_runs(project_name=first.experiment_name, is_root=True)}
    assert sum(f.score for f in feedback if f.run_id in first_runs) == len(QUESTIONS)  # 8 tokens beat 2
