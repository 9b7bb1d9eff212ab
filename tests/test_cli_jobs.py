"""``tracetune train``, ``worker``, ``jobs`` and ``models`` as a user runs them (real processes, a tiny random
Llama registered as "tiny"), including a worker killed mid-job whose job another worker resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.models import shared_smollm2_tokenizer
from tests.train import CALCULATOR_TRAIN, make_tiny_home, training_processes, write_preference_file

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_home(tmp_path, tmp_path_factory) -> Path:
    return make_tiny_home(tmp_path, shared_smollm2_tokenizer(tmp_path_factory))


def env(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRACETUNE_HOME": str(home), "PYTHONPATH": str(REPO), **extra}


def tracetune(home: Path, *args: str, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracetune", *args], capture_output=True, text=True, env=env(home, **extra),
        timeout=timeout,
    )  # fmt: skip


def test_train_offline_then_inspect_the_job_and_model(tiny_home):
    out = tracetune(tiny_home, "train", str(CALCULATOR_TRAIN), "--model", "tiny", "--epochs", "1", "--batch-size", "10",
                    "--suffix", "calc", "--seed", "3")  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(":", 1) for line in out.stdout.splitlines() if line.startswith(("model:", "adapter:")))
    model_id, adapter = lines["model"].strip(), Path(lines["adapter"].strip())
    assert model_id.startswith("ft:tiny:default:calc:")
    assert (adapter / "adapter_model.safetensors").is_file()
    # stdout is a pipe, not a terminal: progress comes as plain lines (a bar would show nothing in a log file)
    progress = [line for line in out.stdout.splitlines() if line.startswith("training step: ")]
    assert progress[0].startswith("training step: 0/2 (0%)") and progress[-1].startswith("training step: 2/2 (100%)")

    listed = json.loads(tracetune(tiny_home, "jobs", "list", "--json").stdout)
    assert [(j["status"], j["fine_tuned_model"], j["seed"]) for j in listed] == [("succeeded", model_id, 3)]
    assert listed[0]["hyperparameters"] == {"n_epochs": 1, "batch_size": 10, "learning_rate_multiplier": 3.0}
    job_id = listed[0]["id"]
    assert json.loads(tracetune(tiny_home, "jobs", "show", job_id).stdout)["trained_tokens"] > 0
    events = tracetune(tiny_home, "jobs", "events", job_id).stdout.splitlines()
    assert "Step 2/2: training loss=" in "\n".join(events) and events[-1].endswith("The job has successfully completed")
    models = tracetune(tiny_home, "models", "list").stdout
    assert "tiny  base" in models and f"{model_id}  fine-tuned from tiny  {adapter}" in models
    cancel = tracetune(tiny_home, "jobs", "cancel", job_id)
    assert cancel.returncode == 2 and "already completed" in cancel.stderr

    # DPO from the model just made: preference pairs, --method dpo
    pairs = write_preference_file(CALCULATOR_TRAIN, tiny_home / "pairs.jsonl")
    out = tracetune(tiny_home, "train", str(pairs), "--model", model_id, "--method", "dpo", "--beta", "0.2",
                    "--epochs", "1", "--batch-size", "10", "--suffix", "pref")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "20 pairs (DPO, beta 0.2), 1 epochs, batch 10" in out.stdout and " margin " in out.stdout, out.stdout
    dpo_model = next(line.split(":", 1)[1].strip() for line in out.stdout.splitlines() if line.startswith("model:"))
    assert dpo_model.startswith("ft:tiny:default:pref:")
    models = tracetune(tiny_home, "models", "list").stdout
    assert f"{dpo_model}  fine-tuned from tiny" in models
    wrong = tracetune(tiny_home, "train", str(CALCULATOR_TRAIN), "--model", "tiny", "--method", "kto")
    assert wrong.returncode == 2 and "unknown method type 'kto'" in wrong.stderr


def test_train_refuses_bad_input_in_one_line(tiny_home, tmp_path):
    out = tracetune(tiny_home, "train", str(CALCULATOR_TRAIN), "--model", "nope")
    assert out.returncode == 2 and out.stderr.startswith("error: Model nope is not available for fine-tuning")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\n')
    out = tracetune(tiny_home, "train", str(bad), "--model", "tiny")
    assert out.returncode == 2 and "invalid_training_file" not in out.stderr
    assert "failed: Training file" in out.stderr and "line 1:" in out.stderr
    assert "Traceback" not in out.stderr


def test_models_add_registers_a_local_model(tiny_home, tmp_path):
    out = tracetune(tiny_home, "models", "add", "tiny2", str(tiny_home.parent / "tiny-model"))
    assert out.returncode == 0, out.stderr
    assert "tiny2" in tracetune(tiny_home, "models", "list").stdout
    missing = tracetune(tiny_home, "models", "add", "x", str(tmp_path / "missing"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_a_dead_workers_job_is_resumed_by_another_worker(tiny_home):
    from tracetune.config import Settings
    from tracetune.store import open_store
    from tracetune.store.blobs import Blobs
    from tracetune.train.jobs import FineTuningJobCreate, create_job

    settings = Settings(home=tiny_home)
    store = open_store(settings.resolved_database_url)
    ws = store.workspaces.ensure("default")
    upload = store.files.create(
        ws.id, Blobs(tiny_home), filename="calc.jsonl", purpose="fine-tune", data=CALCULATOR_TRAIN.read_bytes()
    )
    job = create_job(
        store, settings, ws,
        FineTuningJobCreate.parse(
            {"model": "tiny", "training_file": upload["id"], "hyperparameters": {"n_epochs": 6, "batch_size": 1}}
        ),
    )  # fmt: skip
    stale = {"TRACETUNE_JOB_STALE_AFTER_S": "8"}
    first = subprocess.Popen(
        [sys.executable, "-m", "tracetune", "worker", "--poll", "0.2"], env=env(tiny_home, **stale),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 180
        while store.jobs.latest_checkpoint(job["id"]) is None:
            assert time.time() < deadline and first.poll() is None, "no checkpoint from the first worker"
            time.sleep(0.2)
        [trainer] = training_processes(job["id"])
        first.send_signal(signal.SIGKILL)  # the worker dies; its training process must die with it
        killed_at = time.time()
        first.wait(10)
        deadline = time.time() + 10
        while training_processes(job["id"]):
            assert time.time() < deadline, f"training process {trainer} outlived its worker"
            time.sleep(0.1)
    finally:
        if first.poll() is None:
            first.kill()
    assert store.jobs.row(job["id"])["status"] == "running"  # still held by the dead worker
    assert "done" not in tracetune(tiny_home, "worker", "--once", **stale).stdout  # not stale yet: left alone
    assert store.jobs.row(job["id"])["attempts"] == 1
    time.sleep(max(0.0, killed_at + 8.5 - time.time()))
    second = tracetune(tiny_home, "worker", "--once", **stale)
    assert second.returncode == 0, second.stderr
    row = store.jobs.row(job["id"])
    assert row["status"] == "succeeded" and row["attempts"] == 2, row["error"]
    messages = [e["message"] for e in store.jobs.all_events(job["id"])]
    resumed = [m for m in messages if m.startswith("Resuming from the checkpoint at step")]
    assert len(resumed) == 1 and int(resumed[0].split("step ")[1].split(" ")[0]) >= 20
    steps = [e["data"]["step"] for e in store.jobs.all_events(job["id"]) if e["type"] == "metrics"]
    assert steps[-1] == 120 and len(set(steps)) == 120  # every step once at least; the count carried on
    store.close()
