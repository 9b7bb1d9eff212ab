"""``/v1/fine_tuning/jobs`` driven by the unmodified ``openai`` client against a real server whose job runner
trains a tiny random Llama ("tiny", registered from a local directory) in a separate process: the whole job
life, bad files and bad requests, cancel, and a training process killed mid-job resuming from its checkpoint.
The real SmolLM2 runs the same path in tests/acceptance/test_fine_tuning_openai.py."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import signal
import time
from pathlib import Path

import openai
import pytest

from tests.conftest import LiveServer
from tests.models import shared_smollm2_tokenizer
from tests.train import CALCULATOR_TRAIN, make_tiny_home, read_jsonl, training_processes, write_preference_file

TERMINAL = ("succeeded", "failed", "cancelled")
EXACT = {"type": "string_check", "name": "exact", "operation": "eq", "input": "{{sample.output_text}}",
         "reference": "{{item.answer}}"}  # fmt: skip


@pytest.fixture(scope="module")
def ft_server(tmp_path_factory):
    from tracetune.config import Settings
    from tracetune.store import open_store

    tokenizer = shared_smollm2_tokenizer(tmp_path_factory)
    home = make_tiny_home(tmp_path_factory.mktemp("ft"), tokenizer)
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'tracetune.db'}", job_stale_after_s=5)
    store = open_store(settings.resolved_database_url, sqlite_synchronous="NORMAL")
    server = LiveServer(settings, store, lifespan="on")
    try:
        yield server
    finally:
        server.stop()
        store.close()


@pytest.fixture(scope="module")
def client(ft_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{ft_server.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def training_file(client) -> str:
    return client.files.create(file=("calculator.jsonl", CALCULATOR_TRAIN.read_bytes()), purpose="fine-tune").id


def wait_for(client: openai.OpenAI, job_id: str, predicate, timeout: float = 240.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if predicate(job):
            return job
        if job.status in TERMINAL:
            raise AssertionError(f"job ended {job.status} before the condition held: {job.error}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting on {job_id}")


def finish(client: openai.OpenAI, job_id: str, timeout: float = 240.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in TERMINAL:
            return job
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting on {job_id}")


def events(client: openai.OpenAI, job_id: str) -> list:
    """Every event, oldest first (the API pages newest first; small pages exercise has_more)."""
    return list(reversed(list(client.fine_tuning.jobs.list_events(job_id, limit=3))))


def test_a_job_runs_to_a_fine_tuned_model(client, training_file, ft_server):
    job = client.fine_tuning.jobs.create(
        model="tiny", training_file=training_file, suffix="calc", seed=7, metadata={"origin": "test"},
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 4}}},
    )  # fmt: skip
    assert job.status == "validating_files" and job.fine_tuned_model is None and job.error is None
    assert job.hyperparameters.n_epochs == 2 and job.hyperparameters.learning_rate_multiplier == "auto"
    done = finish(client, job.id)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == f"ft:tiny:default:calc:{job.id[-8:]}"
    assert done.hyperparameters.model_dump() == {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 2.0}
    assert done.trained_tokens and done.trained_tokens > 0 and done.finished_at and done.seed == 7
    assert done.metadata == {"origin": "test"}

    log = events(client, job.id)
    messages = [e.message for e in log]
    assert messages[:4] == [
        f"Created fine-tuning job: {job.id}",
        f"Validating training file: {training_file}",
        "Files validated, moving job to queued state",
        "Fine-tuning job started",
    ]
    assert messages[-1] == "The job has successfully completed"
    metrics = [e for e in log if e.type == "metrics"]
    assert [m.data["step"] for m in metrics] == list(range(1, 11))  # 20 examples / batch 4, 2 epochs
    assert all(m.data["total_steps"] == 10 and m.data["train_loss"] > 0 for m in metrics)

    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id, limit=1))
    assert [c.step_number for c in checkpoints] == [10, 5]
    assert checkpoints[0].fine_tuned_model_checkpoint == f"{done.fine_tuned_model}:ckpt-step-10"
    assert checkpoints[0].metrics.train_loss == metrics[-1].data["train_loss"]

    # a checkpoint is served by its model id, as OpenAI serves them: the last one holds the final adapter's weights
    ask = {"messages": [{"role": "user", "content": "What is 2 + 3?"}], "max_tokens": 6, "temperature": 0}
    answers = {}
    for model in (checkpoints[0].fine_tuned_model_checkpoint, done.fine_tuned_model, "tiny"):
        answer = client.chat.completions.create(model=model, **ask)
        assert answer.model == model
        answers[model] = answer.choices[0].message.content
    assert answers[checkpoints[0].fine_tuned_model_checkpoint] == answers[done.fine_tuned_model]
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model=f"{done.fine_tuned_model}:ckpt-step-7", **ask)  # no such step

    [result_id] = done.result_files
    assert client.files.retrieve(result_id).purpose == "fine-tune-results"
    rows = list(csv.DictReader(io.StringIO(client.files.content(result_id).text)))
    assert [int(r["step"]) for r in rows] == list(range(1, 11))
    assert float(rows[0]["train_loss"]) == pytest.approx(metrics[0].data["train_loss"])

    assert done.fine_tuned_model in [m.id for m in client.models.list()]
    assert client.models.retrieve(done.fine_tuned_model).owned_by == "default"
    adapter = ft_server.settings.home / "jobs" / job.id / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "adapter_config.json").is_file()

    listed = client.fine_tuning.jobs.list(limit=1)
    assert listed.has_more is not None and any(j.id == job.id for j in client.fine_tuning.jobs.list(limit=1))
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"origin": "test"})] == [job.id]


def test_a_dpo_job_trains_a_fine_tuned_model_further(client, training_file, tmp_path):
    sft = client.fine_tuning.jobs.create(
        model="tiny", training_file=training_file, suffix="sft", hyperparameters={"n_epochs": 1, "batch_size": 4}
    )
    sft = finish(client, sft.id)
    assert sft.status == "succeeded", sft.error
    pairs = write_preference_file(CALCULATOR_TRAIN, tmp_path / "pairs.jsonl")
    pairs_id = client.files.create(file=("pairs.jsonl", pairs.read_bytes()), purpose="fine-tune").id
    dpo = {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": 1, "batch_size": 4}}}
    job = client.fine_tuning.jobs.create(model=sft.fine_tuned_model, training_file=pairs_id, suffix="pref", method=dpo)
    assert job.model == sft.fine_tuned_model and job.method.type == "dpo"
    assert (
        job.method.dpo.hyperparameters.beta == 0.2 and job.method.dpo.hyperparameters.learning_rate_multiplier == "auto"
    )
    done = finish(client, job.id)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == f"ft:tiny:default:pref:{job.id[-8:]}"  # named after the base model
    resolved = done.method.dpo.hyperparameters
    assert (resolved.beta, resolved.n_epochs, resolved.batch_size) == (0.2, 1, 4)
    assert isinstance(resolved.learning_rate_multiplier, float)
    log = events(client, job.id)
    assert any(e.message.startswith("Training started: 20 preference pairs (DPO, beta 0.2)") for e in log)
    metrics = [e.data for e in log if e.type == "metrics"]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5]
    # the reference is the SFT model the job starts from: before the first update the policy is the reference
    assert metrics[0]["train_loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert all("train_reward_margin" in m and "train_reward_accuracy" in m for m in metrics)
    assert done.fine_tuned_model in [m.id for m in client.models.list()]


def test_a_reinforcement_job_samples_grades_and_reports_the_held_out_reward(client, tmp_path):
    lines = []
    for record in read_jsonl(CALCULATOR_TRAIN)[:8]:
        lines.append({"messages": record["messages"][:-1], "tools": record["tools"], "answer": "42"})
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    file_id = client.files.create(file=("prompts.jsonl", data), purpose="fine-tune").id
    similar = {**EXACT, "type": "text_similarity", "evaluation_metric": "fuzzy_match"}
    similar.pop("operation")
    hyperparameters = {"n_epochs": 1, "batch_size": 4, "compute_multiplier": 0.75}
    method = {"type": "reinforcement", "reinforcement": {"grader": similar, "hyperparameters": hyperparameters}}
    job = client.fine_tuning.jobs.create(model="tiny", training_file=file_id, validation_file=file_id, method=method)
    assert job.method.type == "reinforcement" and job.method.reinforcement.grader.name == "exact"
    done = finish(client, job.id)
    assert done.status == "succeeded", done.error
    hp = done.method.reinforcement.hyperparameters
    assert (hp.n_epochs, hp.batch_size, hp.compute_multiplier) == (1, 4, 0.75)  # 3 answers per prompt
    log = events(client, job.id)
    assert any(e.message.startswith("Training started: 8 prompts (RFT, 3 answers each, graded by 'exact')")
               for e in log)  # fmt: skip
    metrics = [e.data for e in log if e.type == "metrics"]
    assert [m["step"] for m in metrics] == [1, 2] and all(0 <= m["train_mean_reward"] <= 1 for m in metrics)
    assert "valid_mean_reward" in metrics[-1]
    assert any(e.message.startswith("Held-out reward of the fine-tuned model: ") and "start model" in e.message
               for e in log)  # fmt: skip


def test_a_reinforcement_job_over_answered_lines_fails_naming_them(client, training_file):
    method = {"type": "reinforcement", "reinforcement": {"grader": EXACT}}
    job = client.fine_tuning.jobs.create(model="tiny", training_file=training_file, method=method)
    done = finish(client, job.id, timeout=30)
    assert done.status == "failed" and done.error.code == "invalid_training_file"
    assert "line 1: messages[2]: an RFT prompt must end before the answer" in done.error.message


def test_a_dpo_job_over_chat_records_fails_naming_the_lines(client, training_file):
    job = client.fine_tuning.jobs.create(model="tiny", training_file=training_file, method={"type": "dpo"})
    done = finish(client, job.id, timeout=30)
    assert done.status == "failed" and done.error.code == "invalid_training_file"
    message = done.error.message
    assert "20 invalid lines" in message and "line 1: messages: unknown top-level key 'messages'" in message
    assert "non_preferred_output: missing" in message


def test_a_training_file_with_bad_lines_fails_validation_naming_every_line(client, ft_server):
    good = CALCULATOR_TRAIN.read_text().splitlines()
    bad_lines = [good[0], '{"messages": [{"role": "robot", "content": "hi"}]}', good[1], "{}", '{"messages": []}']
    bad = client.files.create(file=("bad.jsonl", "\n".join(bad_lines).encode()), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny", training_file=bad.id)
    done = finish(client, job.id, timeout=30)
    assert done.status == "failed"
    assert done.error.code == "invalid_training_file" and done.error.param == "training_file"
    assert "3 invalid lines" in done.error.message
    for line in ("line 2:", "line 4:", "line 5:"):
        assert line in done.error.message
    assert "line 1:" not in done.error.message and "line 3:" not in done.error.message
    assert not (ft_server.settings.home / "jobs" / job.id).exists()  # nothing written for it
    assert events(client, job.id)[-1].level == "error"


@pytest.mark.parametrize(
    ("change", "param", "code"),
    [
        ({"model": "no-such-model"}, "model", "model_not_available"),
        ({"model": "ft:tiny:default::abc"}, "model", "model_not_available"),
        ({"training_file": "file-doesnotexist"}, "training_file", "file_not_found"),
        ({"training_file": "PURPOSE"}, "training_file", "invalid_file_purpose"),
        ({"validation_file": "file-doesnotexist"}, "validation_file", "file_not_found"),
        ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs", "invalid_value"),
        ({"hyperparameters": {"n_epochs": "three"}}, "hyperparameters.n_epochs", "invalid_value"),
        ({"hyperparameters": {"epochs": 3}}, "hyperparameters.epochs", "invalid_value"),
        (
            {"method": {"type": "supervised", "supervised": {"hyperparameters": {"batch_size": -1}}}},
            "method.supervised.hyperparameters.batch_size",
            "invalid_value",
        ),
        ({"method": {"type": "reinforcement", "reinforcement": {}}}, "method.reinforcement.grader", "invalid_value"),
        (
            {"method": {"type": "reinforcement", "reinforcement": {"grader": {**EXACT, "input": "{{x.y}}"}}}},
            "method.reinforcement.grader.input",
            "invalid_value",
        ),
        (
            {
                "method": {
                    "type": "reinforcement",
                    "reinforcement": {"grader": EXACT, "hyperparameters": {"compute_multiplier": 9}},
                }
            },
            "method.reinforcement.hyperparameters.compute_multiplier",
            "invalid_value",
        ),
        (
            {"method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0}}}},
            "method.dpo.hyperparameters.beta",
            "invalid_value",
        ),
        (
            {"method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1, "gamma": 1}}}},
            "method.dpo.hyperparameters.gamma",
            "invalid_value",
        ),
        ({"method": {"type": "distill"}}, "method.type", "invalid_value"),
        (
            {
                "hyperparameters": {"n_epochs": 2},
                "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3}}},
            },
            "hyperparameters",
            "invalid_value",
        ),
        ({"seed": True}, "seed", "invalid_value"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "invalid_value"),
        ({"metadata": {"k" * 65: "v"}}, "metadata." + "k" * 65 + ".[key]", "invalid_value"),  # the key is too long
        ({"suffix": "has space"}, "suffix", "invalid_value"),
        ({"suffix": "my-gpt-5-copy"}, "suffix", "invalid_value"),
        ({"seed": -1}, "seed", "invalid_value"),
        ({"metadata": {"k": 1}}, "metadata.k", "invalid_value"),
    ],
)
def test_bad_requests_are_refused_at_creation(client, training_file, ft_server, change, param, code):
    if change.get("training_file") == "PURPOSE":
        change = {"training_file": client.files.create(file=("x.jsonl", b"{}\n"), purpose="user_data").id}
    before = len(list(client.fine_tuning.jobs.list(limit=100)))
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(**{"model": "tiny", "training_file": training_file, **change})
    body = err.value.body
    assert body["param"] == param and body["code"] == code and body["message"], body
    assert not re.search(r"\{[a-z_]+(![rs])?\}", body["message"]), body  # every placeholder filled in
    assert len(list(client.fine_tuning.jobs.list(limit=100))) == before


def test_a_file_over_the_limit_is_refused(client, training_file, ft_server):
    settings = ft_server.settings
    old = settings.fine_tune_max_file_bytes
    settings.fine_tune_max_file_bytes = 1000
    try:
        with pytest.raises(openai.BadRequestError) as err:
            client.fine_tuning.jobs.create(model="tiny", training_file=training_file)
    finally:
        settings.fine_tune_max_file_bytes = old
    assert err.value.body["code"] == "file_too_large" and "limit is 1000" in err.value.body["message"]


def test_unknown_jobs_are_404_and_ended_jobs_cannot_be_cancelled(client, training_file):
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-nope")
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.cancel("ftjob-nope")
    with pytest.raises(openai.NotFoundError):
        list(client.fine_tuning.jobs.list_events("ftjob-nope"))
    bad = client.files.create(file=("b.jsonl", b'{"messages": []}\n'), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny", training_file=bad.id)
    assert finish(client, job.id, timeout=30).status == "failed"
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.cancel(job.id)
    assert err.value.body["code"] == "invalid_state"


def test_cancel_stops_the_training_process_within_seconds(client, training_file):
    job = client.fine_tuning.jobs.create(
        model="tiny", training_file=training_file, hyperparameters={"n_epochs": 50, "batch_size": 1}
    )
    wait_for(client, job.id, lambda j: j.status == "running" and training_processes(j.id), timeout=120)
    wait_for(client, job.id, lambda j: any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(j.id)))
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    started = time.time()
    while training_processes(job.id):
        assert time.time() - started < 10, "the training process is still running 10 s after cancel"
        time.sleep(0.1)
    time.sleep(1.5)  # the runner has let go: nothing more is written for the job
    after = client.fine_tuning.jobs.retrieve(job.id)
    assert after.status == "cancelled" and after.fine_tuned_model is None
    assert events(client, job.id)[-1].message == "Fine-tuning job cancelled"


def test_a_killed_training_process_resumes_from_its_checkpoint(client, training_file, ft_server):
    job = client.fine_tuning.jobs.create(
        model="tiny", training_file=training_file, hyperparameters={"n_epochs": 6, "batch_size": 1}
    )
    wait_for(client, job.id, lambda j: list(client.fine_tuning.jobs.checkpoints.list(j.id)), timeout=180)
    [pid] = training_processes(job.id)
    os.kill(pid, signal.SIGKILL)
    done = finish(client, job.id)
    assert done.status == "succeeded", done.error

    log = events(client, job.id)
    messages = [e.message for e in log]
    killed = messages.index("The training process was killed by SIGKILL; restarting it")
    resumed = next(m for m in messages[killed:] if m.startswith("Resuming from the checkpoint at step"))
    step = int(resumed.split("step ")[1].split(" ")[0])
    assert step % 20 == 0 and step >= 20  # an epoch's end (20 steps per epoch)
    resumed_at = messages.index(resumed)
    after = [e.data["step"] for e in log[resumed_at:] if e.type == "metrics"]
    assert after == list(range(step + 1, 121))  # the step count carries on to the end
    assert [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id, limit=10)] == [
        120, 100, 80, 60, 40, 20
    ]  # fmt: skip
    config = json.loads((Path(ft_server.settings.home) / "jobs" / job.id / "config.json").read_text())
    assert config["model"] == "tiny"
    assert "== attempt 2" in (ft_server.settings.home / "jobs" / job.id / "train.log").read_text()


def test_an_alias_names_the_base_model_and_is_listed(client, training_file, ft_server):
    settings = ft_server.settings
    settings.model_aliases = {"gpt-4o-mini": "tiny"}
    try:
        assert "gpt-4o-mini" in [m.id for m in client.models.list()]
        assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
        job = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=training_file, suffix="alias")
        assert job.model == "tiny"
        client.fine_tuning.jobs.cancel(job.id)
    finally:
        settings.model_aliases = {}
    assert "gpt-4o-mini" not in [m.id for m in client.models.list()]


def test_a_stored_alias_names_the_model_a_job_starts_from(client, training_file, ft_server):
    """An alias set through /tt/v1/aliases: a job on it trains the model it names now (and is listed)."""
    import httpx

    put = httpx.put(f"{ft_server.url}/tt/v1/aliases/support-bot", json={"model": "tiny"}, timeout=30)
    assert put.status_code == 200, put.text
    assert "support-bot" in [m.id for m in client.models.list()]
    job = client.fine_tuning.jobs.create(model="support-bot", training_file=training_file, suffix="stored")
    assert job.model == "tiny"
    client.fine_tuning.jobs.cancel(job.id)
    httpx.delete(f"{ft_server.url}/tt/v1/aliases/support-bot", timeout=30)
