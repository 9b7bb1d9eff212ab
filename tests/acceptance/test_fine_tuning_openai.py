"""Acceptance: the unmodified ``openai`` client fine-tunes the real SmolLM2 through tracetune's ``/v1`` API, on the
records of the LangSmith "LLM runs" notebook, its code unmodified (issue 21), then further with DPO and RFT (issue 16).

A LangChain app offers the Calculator as a legacy *function* (``functions=``) to its hosted model (the stand-in for
the hosted OpenAI service, scripted to answer the 20 traced questions right) and is traced to tracetune by the
``langsmith`` SDK. The notebook's code reads the LLM runs back, ``LangSmithRunChatLoader`` +
``convert_messages_for_finetuning`` make the fine-tuning records (which drop the functions: the records call a
function none of them declares), and the ``openai`` client uploads them and fine-tunes SmolLM2 with the defaults
("auto": 5 epochs of batch 4 at lr 1e-3). The job recovers the declarations from the stored runs the records came
from (a warning event says so), so the model trains on the prompt the app serves it. Its events and checkpoints
are listed; the loss must go down, and the adapter must make the calculator call right on the held-out questions
(>= 17/20: the TRL baseline's score, ``/work/shared/reference/baselines/README.md`` §2; the base model makes 0-2,
as tests/demo and tests/acceptance/test_closed_loop.py find where they serve it); served by the same server, called
as the app calls it (``ChatOpenAI(...).bind(functions=[…])``, the function offered, not forced) it must make the
exact call on at least 14 of 20 (issue 21's goal; 25% on this path before the recovery), and with ``tools`` and
``tool_choice`` left to the model score as it does directly, within one. Then a DPO job trains that model further
on preference pairs, and an RFT job (a string_check grader) does too; both results are served. Figures are
printed as JSON lines.

One supervised training serves every test here (CI's time budget: the LangSmith dataset → fine-tuning file path
of issue 15 is checked without training one more). About six minutes on a 2-core CPU: it belongs to the slow tier
(marker ``slow``: ``scripts/test.sh --slow``, which CI runs after the default suite); a plain ``pytest`` skips it
unless ``CI`` or ``TRACETUNE_TEST_SLOW=1`` is set, with that reason shown.
"""

from __future__ import annotations

import json
import math
import os
import time

import openai
import pytest

from tests.acceptance.conftest import sdk_client
from tests.acceptance.helpers import KNOWN_CLIENT_WARNINGS
from tests.acceptance.openai_standin import running_standin
from tests.conftest import LiveServer
from tests.models import smollm2_home
from tests.train import (
    CALCULATOR_HELDOUT,
    CALCULATOR_TRAIN,
    expected_call,
    first_calls,
    read_jsonl,
    same_call,
    write_preference_file,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (os.environ.get("CI") or os.environ.get("TRACETUNE_TEST_SLOW") == "1"),
        reason="trains the real SmolLM2 for minutes: set TRACETUNE_TEST_SLOW=1 (always runs in CI)",
    ),
    pytest.mark.filterwarnings(*KNOWN_CLIENT_WARNINGS),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tracetune.config import Settings
    from tracetune.store import open_store

    home = smollm2_home(tmp_path_factory)  # shares the session's converted tokenizer and cached weights
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'fine-tuning-acceptance.db'}")
    store = open_store(settings.resolved_database_url, sqlite_synchronous="NORMAL")
    live = LiveServer(settings, store, lifespan="on")
    try:
        yield live
    finally:
        live.stop()
        store.close()


def run_job(client: openai.OpenAI, **request):
    """Create a job, poll it to its end; ``(job, seconds)``."""
    started = time.perf_counter()
    job = client.fine_tuning.jobs.create(**request)
    while job.status not in ("succeeded", "failed", "cancelled"):
        assert time.perf_counter() - started < 1200, f"job still {job.status} after 20 minutes"
        time.sleep(0.25)
        job = client.fine_tuning.jobs.retrieve(job.id)
    return job, time.perf_counter() - started


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def calculator_function() -> dict:
    """The Calculator as a legacy function (the notebook's ``functions=``), from the fixture's tool."""
    return read_jsonl(CALCULATOR_TRAIN)[0]["tools"][0]["function"]


def ask(llm, records: list[dict], **config) -> list[tuple[str, dict] | None]:
    """The app's calls, eight at a time (LangChain's ``batch``): each record's system and user messages; the
    function call the model made, if any."""
    from langchain_core.messages import HumanMessage, SystemMessage

    prompts = [[SystemMessage(r["messages"][0]["content"]), HumanMessage(r["messages"][1]["content"])] for r in records]
    calls = [
        reply.additional_kwargs.get("function_call") for reply in llm.batch(prompts, {**config, "max_concurrency": 8})
    ]
    return [(call["name"], json.loads(call["arguments"])) if call else None for call in calls]


@pytest.fixture(scope="module")
def sft_job(server, client):
    """The notebook's path to a supervised job on the calculator examples (the DPO and RFT tests start from its
    model): ``(job, seconds)``."""
    from langchain_community.adapters.openai import convert_messages_for_finetuning
    from langchain_community.chat_loaders.langsmith import LangSmithRunChatLoader
    from langchain_core.tracers import LangChainTracer
    from langchain_openai import ChatOpenAI

    from tracetune.models import DEFAULT_MODEL_ID

    train = read_jsonl(CALCULATOR_TRAIN)
    answers = {r["messages"][1]["content"]: expected_call(r)[1] for r in train}
    langsmith = sdk_client(server)
    project = "notebook"
    with running_standin(answers) as hosted:
        app = ChatOpenAI(model="gpt-4o-mini", base_url=hosted.base_url, api_key="unused", max_retries=0).bind(
            functions=[calculator_function()], function_call={"name": "Calculator"}
        )
        tracer = LangChainTracer(project_name=project, client=langsmith)
        traced = ask(app, train, callbacks=[tracer])
        tracer.wait_for_futures()
        langsmith.flush()
    assert all(same_call(c, expected_call(r)) for c, r in zip(traced, train, strict=True))

    # The notebook, unmodified: LLM runs → chat sessions → fine-tuning messages → a file → a job.
    runs = list(langsmith.list_runs(project_name=project, run_type="llm"))
    assert len(runs) == 20
    sessions = list(LangSmithRunChatLoader(runs=runs, client=langsmith).lazy_load())
    assert all(s.get("functions") for s in sessions)  # the loader keeps them...
    records = [{"messages": m} for m in convert_messages_for_finetuning(sessions)]
    assert len(records) == 20 and not any("functions" in r or "tools" in r for r in records)  # ...the converter not
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    upload = client.files.create(file=("notebook.jsonl", data), purpose="fine-tune")
    return run_job(client, model=DEFAULT_MODEL_ID, training_file=upload.id, suffix="calculator", seed=42)


def test_a_langsmith_dataset_reads_back_as_the_fine_tuning_file(server):
    """Issue 15's path to a training file: examples in through the SDK, the file out with
    ``read_dataset_openai_finetuning``, exactly the records that went in (what a job then does with such a file is
    the tests below)."""
    langsmith = sdk_client(server)
    train = read_jsonl(CALCULATOR_TRAIN)
    dataset = langsmith.create_dataset("calculator-train", description="calculator function calls")
    langsmith.create_examples(
        dataset_id=dataset.id,
        examples=[
            {"inputs": {**r, "messages": r["messages"][:-1]}, "reference_outputs": {"message": r["messages"][-1]}}
            for r in train
        ],
    )
    assert langsmith.read_dataset_openai_finetuning(dataset_id=dataset.id) == train


def test_the_notebooks_records_train_with_the_functions_recovered_from_the_stored_runs(server, client, sft_job):
    from langchain_openai import ChatOpenAI

    job, _ = sft_job
    assert job.status == "succeeded", job.error
    events = list(reversed(list(client.fine_tuning.jobs.list_events(job.id, limit=100))))
    recovered = [e.message for e in events if e.level == "warn" and "recovered" in e.message]
    assert len(recovered) == 1, [e.message for e in events]
    assert "20 records called tools without declaring them" in recovered[0]
    assert "20 by their prompt, 0 by the tools' names" in recovered[0]

    # Served as the app calls it: the function offered, the choice left to the model.
    llm = ChatOpenAI(
        model=job.fine_tuned_model, base_url=f"{server.url}/v1", api_key="unused", max_retries=0, temperature=0,
        max_tokens=64,
    )  # a call takes ~35 tokens  # fmt: skip
    bound = llm.bind(functions=[calculator_function()])
    held_out = read_jsonl(CALCULATOR_HELDOUT)
    tuned_right = sum(same_call(c, expected_call(r)) for c, r in zip(ask(bound, held_out), held_out, strict=True))
    print(json.dumps({"notebook_path_tuned": tuned_right, "of": len(held_out)}))
    assert tuned_right >= 14


def test_openai_client_fine_tunes_smollm2_to_call_the_calculator(server, client, sft_job):
    from peft import PeftModel

    from tracetune.evaluate.replay import evaluate
    from tracetune.models import DEFAULT_MODEL_ID
    from tracetune.models.weights import load_base_model

    job, job_s = sft_job
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model == f"ft:{DEFAULT_MODEL_ID}:default:calculator:{job.id[-8:]}"
    assert job.fine_tuned_model in [m.id for m in client.models.list()]

    events = list(reversed(list(client.fine_tuning.jobs.list_events(job.id, limit=100))))
    metrics = [e.data for e in events if e.type == "metrics"]
    assert [m["step"] for m in metrics] == list(range(1, len(metrics) + 1)) and metrics[-1]["total_steps"] == len(
        metrics
    )
    first, last = metrics[0]["train_loss"], metrics[-1]["train_loss"]
    assert last < 0.5 * first, f"the loss did not go down enough: {first} → {last}"
    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    n_epochs = job.hyperparameters.n_epochs
    assert isinstance(n_epochs, int) and n_epochs > 1  # "auto", resolved and reported
    assert len(checkpoints) == n_epochs and checkpoints[0].step_number == len(metrics)  # one per epoch, newest first

    home = server.settings.home
    held_out = read_jsonl(CALCULATOR_HELDOUT)
    base, tokenizer = load_base_model(home, DEFAULT_MODEL_ID)
    adapter = home / "jobs" / job.id / "adapter"
    tuned = PeftModel.from_pretrained(base, str(adapter))
    tuned_calls = first_calls(tuned, tokenizer, held_out)
    tuned_right = sum(same_call(c, expected_call(r)) for (c, _), r in zip(tuned_calls, held_out, strict=True))
    print(
        json.dumps(
            {
                "job_s": round(job_s, 1), "steps": len(metrics), "tokens_per_s": metrics[-1]["tokens_per_s"],
                "trained_tokens": job.trained_tokens, "hyperparameters": job.hyperparameters.model_dump(),
                "loss_first": round(first, 4), "loss_last": round(last, 4), "tuned_correct": tuned_right,
                "of": len(held_out),
            }
        )
    )  # fmt: skip
    # (the base model's 0-2 of 20 on these questions is checked where it is served: the demo and the closed loop)
    misses = [(r["messages"][1]["content"], t) for (c, t), r in zip(tuned_calls, held_out, strict=True)
              if not same_call(c, expected_call(r))]  # fmt: skip
    assert tuned_right >= 17, misses

    # The same model served: /v1/chat/completions with the tools offered and tool_choice left to the model
    # (issue 5's acceptance), scored by tracetune eval's scorer; within one of the direct figure above.
    records = list(enumerate(held_out, 1))
    # (the base model is scored directly above: its 64 tokens of prose per question are not served again here)
    results = evaluate(client, [job.fine_tuned_model], records, max_tokens=64, concurrency=16)
    served = {m: r["summary"] for m, r in results["models"].items()}
    print(json.dumps({"served": served}))
    assert abs(round(served[job.fine_tuned_model]["tool_args_exact"] * len(held_out)) - tuned_right) <= 1


def test_openai_client_runs_dpo_from_the_fine_tuned_model(server, client, sft_job, tmp_path):
    """DPO as OpenAI specifies it, from the SFT model above: preference pairs (the right call preferred over the
    same call with its operands swapped), ``method={"type": "dpo", …}``; the job succeeds, its method comes back
    resolved, its step events carry the DPO metrics, and the new model is served and still calls the calculator
    (the held-out score of the SFT model within one; bench/preference.py shows what DPO fixes)."""
    from tracetune.evaluate.replay import evaluate

    sft, _ = sft_job
    assert sft.status == "succeeded", sft.error
    pairs = write_preference_file(CALCULATOR_TRAIN, tmp_path / "pairs.jsonl")
    eight = b"".join(pairs.read_bytes().splitlines(keepends=True)[:8])  # two steps of four pairs: CI's time budget
    upload = client.files.create(file=("pairs.jsonl", eight), purpose="fine-tune")
    job, job_s = run_job(
        client, model=sft.fine_tuned_model, training_file=upload.id, suffix="pref", seed=42,
        method={"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 1, "batch_size": 4, "beta": 0.1}}},
    )  # fmt: skip
    assert job.status == "succeeded", job.error
    assert job.model == sft.fine_tuned_model and job.method.type == "dpo"
    hp = job.method.dpo.hyperparameters
    assert hp.beta == 0.1 and hp.n_epochs == 1 and hp.batch_size == 4
    assert isinstance(hp.learning_rate_multiplier, float)
    events = list(reversed(list(client.fine_tuning.jobs.list_events(job.id, limit=100))))
    metrics = [e.data for e in events if e.type == "metrics"]
    assert metrics and metrics[0]["train_loss"] == pytest.approx(math.log(2), abs=1e-3)  # starts at the reference
    assert metrics[-1]["train_reward_margin"] > 0, metrics[-1]
    assert job.fine_tuned_model in [m.id for m in client.models.list()]
    # its checkpoint is served too, over the base model under the SFT model the job started from
    (last,) = client.fine_tuning.jobs.checkpoints.list(job.id, limit=1)
    ask = read_jsonl(CALCULATOR_HELDOUT)[0]
    answer = client.chat.completions.create(model=last.fine_tuned_model_checkpoint, messages=ask["messages"][:-1],
                                            tools=ask["tools"], max_tokens=64, temperature=0)  # fmt: skip
    assert answer.model == last.fine_tuned_model_checkpoint and answer.choices[0].message.tool_calls

    records = list(enumerate(read_jsonl(CALCULATOR_HELDOUT)[:10], 1))
    # (the SFT model's served score is the test above's: 0.95 in CI, within one of its direct 19/20)
    results = evaluate(client, [job.fine_tuned_model], records, max_tokens=64, concurrency=16)
    served = {m: r["summary"]["tool_args_exact"] for m, r in results["models"].items()}
    print(json.dumps({"dpo_job_s": round(job_s, 1), "steps": len(metrics), "served_args_exact": served,
                      "last_reward_margin": metrics[-1]["train_reward_margin"]}))  # fmt: skip
    dpo = results["models"][job.fine_tuned_model]
    misses = [(row["line"], row["reply"]) for row in dpo["results"] if not row.get("args_exact")]
    # served, and still calling the calculator on every question; DPO on these pairs (whose non-preferred calls are
    # near-copies of the preferred ones) may cost a few exact answers (0.95 → 0.80 seen): bench/preference.py is
    # where what DPO fixes is measured
    assert dpo["summary"]["tool_name_accuracy"] == 1.0, misses
    assert served[job.fine_tuned_model] >= 0.7, misses


def test_openai_client_runs_rft_from_the_fine_tuned_model(server, client, sft_job):
    """Reinforcement fine-tuning as OpenAI specifies it, from the SFT model: prompts (the calculator questions
    without their answers, the expected arguments as the item), a ``string_check`` grader on the call's arguments,
    ``method={"type": "reinforcement", …}``; the job succeeds, reports its mean reward per step and its held-out
    reward against the start model's, and the new model is served. (bench/preference.py measures what RFT fixes.)"""
    from tracetune.evaluate.replay import evaluate

    sft, _ = sft_job
    assert sft.status == "succeeded", sft.error

    def prompts(records: list[dict]) -> bytes:
        lines = []
        for record in records:
            *prompt, answer = record["messages"]
            arguments = json.loads(answer["tool_calls"][0]["function"]["arguments"])
            lines.append({"messages": prompt, "tools": record["tools"],
                          "arguments": json.dumps(arguments, separators=(",", ":"))})  # fmt: skip
        return "".join(json.dumps(line) + "\n" for line in lines).encode()

    # a short job (4 prompts, one step of 4 x 2 answers; 4 held-out prompts before and after): CI's time budget.
    # What RFT fixes is measured in bench/preference.py
    train = client.files.create(file=("prompts.jsonl", prompts(read_jsonl(CALCULATOR_TRAIN)[:4])), purpose="fine-tune")
    held_out = read_jsonl(CALCULATOR_HELDOUT)[:4]
    valid = client.files.create(file=("held-out.jsonl", prompts(held_out)), purpose="fine-tune")
    grader = {"type": "string_check", "name": "exact_arguments", "operation": "eq",
              "input": "{{sample.output_tools.0.function.arguments}}", "reference": "{{item.arguments}}"}  # fmt: skip
    job, job_s = run_job(
        client, model=sft.fine_tuned_model, training_file=train.id, validation_file=valid.id, suffix="rft", seed=42,
        method={"type": "reinforcement", "reinforcement": {
            "grader": grader, "hyperparameters": {"n_epochs": 1, "batch_size": 4, "compute_multiplier": 0.5}}},
    )  # fmt: skip
    assert job.status == "succeeded", job.error
    assert job.method.type == "reinforcement" and job.method.reinforcement.grader.name == "exact_arguments"
    assert job.method.reinforcement.hyperparameters.compute_multiplier == 0.5
    events = list(reversed(list(client.fine_tuning.jobs.list_events(job.id, limit=100))))
    metrics = [e.data for e in events if e.type == "metrics"]
    assert [m["step"] for m in metrics] == [1] and 0 <= metrics[0]["train_mean_reward"] <= 1
    summary = next(e.message for e in events if e.message.startswith("Held-out reward of the fine-tuned model"))
    records = list(enumerate(held_out, 1))
    results = evaluate(client, [job.fine_tuned_model], records, max_tokens=64, concurrency=8)
    served = results["models"][job.fine_tuned_model]["summary"]
    print(json.dumps({"rft_job_s": round(job_s, 1), "rewards": [m["train_mean_reward"] for m in metrics],
                      "summary": summary, "served": served}))  # fmt: skip
    assert served["tool_name_accuracy"] == 1.0  # served, and still calling the calculator
