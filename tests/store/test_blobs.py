"""Blobs (:mod:`tracetune.store.blobs`): the data home alone, and shared through an S3-compatible object store.

The object store is **moto's S3 server** (``moto[server]``'s ``ThreadedMotoServer``), a real HTTP server on
127.0.0.1 speaking the S3 REST API, standing in for AWS S3 or MinIO (neither can run here); s3fs and botocore talk
to it over HTTP as they would to S3. Two "machines" are two data homes: a worker trains in one, a server with the
other serves the model, sharing only the database and the object store.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer
from tests.models import shared_smollm2_tokenizer
from tests.train import CALCULATOR_TRAIN, make_tiny_home
from tracetune.errors import InvalidInput
from tracetune.store.blobs import Blobs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, Any]]:
    """moto's S3 server on a free loopback port: the fsspec storage options that reach it."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per S3 request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        yield {
            "endpoint_url": endpoint,
            "key": "test-key",
            "secret": "test-secret",
            "client_kwargs": {"region_name": "us-east-1"},
        }
    finally:
        server.stop()


@pytest.fixture
def bucket(s3: dict[str, Any]) -> str:
    """A new bucket (made as an operator would, with boto3): ``s3://<bucket>/tracetune``."""
    import boto3

    name = f"tt-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3", endpoint_url=s3["endpoint_url"], aws_access_key_id=s3["key"], aws_secret_access_key=s3["secret"],
        region_name="us-east-1",
    ).create_bucket(Bucket=name)  # fmt: skip
    return f"s3://{name}/tracetune"


def _objects(blobs: Blobs) -> set[str]:
    fs = blobs._fs
    fs.invalidate_cache()
    root = blobs._root
    return {p[len(root) + 1 :] for p in fs.find(root)}


# -- the data home alone -----------------------------------------------------------------------------------------


def test_local_blobs_live_in_the_data_home(tmp_path: Path) -> None:
    blobs = Blobs(tmp_path)
    assert not blobs.shared
    path = blobs.write("files/ws/file-1", b"hello")
    assert path == tmp_path / "files" / "ws" / "file-1" and path.read_bytes() == b"hello"
    assert blobs.path("files/ws/file-1") == path and blobs.location("files/ws/file-1") == str(path)
    assert not list(path.parent.glob(".*"))  # no temporary file left beside it
    blobs.publish("files/ws/file-1")  # nothing to share with: a no-op
    (tmp_path / "jobs" / "j" / "adapter").mkdir(parents=True)
    (tmp_path / "jobs" / "j" / "adapter" / "a.bin").write_bytes(b"x")
    blobs.delete("jobs/j/adapter")
    blobs.delete("files/ws/file-1")
    assert not path.exists() and not (tmp_path / "jobs" / "j" / "adapter").exists()
    assert blobs.path("files/ws/missing") == tmp_path / "files" / "ws" / "missing"  # callers say what is missing
    for bad in ("", "/etc/passwd", "files/../../x", "files//x", "./x"):
        with pytest.raises(ValueError, match="blob key"):
            blobs.path(bad)


def test_an_object_store_that_cannot_be_opened_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="TRACETUNE_BLOB_URL 'nosuchproto://x' cannot be opened") as info:
        Blobs(tmp_path, "nosuchproto://x")
    assert info.value.field == "blob_url"


# -- shared through an object store ------------------------------------------------------------------------------


def test_a_blob_written_on_one_machine_is_fetched_on_another(tmp_path: Path, s3: dict[str, Any], bucket: str) -> None:
    here, there = Blobs(tmp_path / "a", bucket, s3), Blobs(tmp_path / "b", bucket, s3)
    assert here.shared and there.shared
    here.write("files/ws/file-1", b'{"a": 1}\n')
    assert _objects(here) == {"files/ws/file-1"}
    assert not (tmp_path / "b" / "files").exists()
    assert there.location("files/ws/file-1") == f"{bucket}/files/ws/file-1"  # shown without fetching
    fetched = there.path("files/ws/file-1")
    assert fetched == tmp_path / "b" / "files" / "ws" / "file-1" and fetched.read_bytes() == b'{"a": 1}\n'

    adapter = tmp_path / "a" / "jobs" / "job-1" / "adapter"  # a directory, as training writes it
    (adapter / "sub").mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "sub" / "weights.bin").write_bytes(os.urandom(70_000))
    here.publish("jobs/job-1/adapter")
    got = there.path("jobs/job-1/adapter")
    assert sorted(p.relative_to(got).as_posix() for p in got.rglob("*")) == [
        "adapter_config.json", "sub", "sub/weights.bin",
    ]  # fmt: skip
    assert (got / "sub" / "weights.bin").read_bytes() == (adapter / "sub" / "weights.bin").read_bytes()
    assert not [p for p in got.parent.iterdir() if p.name.startswith(".")]  # the fetch's temporary name is gone

    there.delete("jobs/job-1/adapter")  # both copies: the object store's and this home's
    assert _objects(here) == {"files/ws/file-1"} and not got.exists()
    assert there.path("jobs/job-2/adapter") == tmp_path / "b" / "jobs" / "job-2" / "adapter"  # nowhere: not fetched
    assert not (tmp_path / "b" / "jobs" / "job-2").exists()


def _tracetune(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "HF_HUB_OFFLINE": "1", "TRACETUNE_HOME": str(home), "PYTHONPATH": str(REPO), **env}
    return subprocess.run(
        [sys.executable, "-m", "tracetune", *args], capture_output=True, text=True, env=full, timeout=300
    )


def test_a_job_trained_on_one_machine_is_served_by_a_server_on_another(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, db_url: str, s3: dict[str, Any], bucket: str
) -> None:
    import openai

    from tracetune.config import Settings
    from tracetune.store import open_store

    tokenizer = shared_smollm2_tokenizer(tmp_path_factory)
    worker_home = make_tiny_home(tmp_path / "worker", tokenizer)  # each machine has the base model installed
    server_home = make_tiny_home(tmp_path / "server", tokenizer)
    shared = {"TRACETUNE_DATABASE_URL": db_url, "TRACETUNE_BLOB_URL": bucket, "TRACETUNE_BLOB_OPTIONS": json.dumps(s3)}

    out = _tracetune(worker_home, "train", str(CALCULATOR_TRAIN), "--model", "tiny", "--epochs", "2",
                     "--batch-size", "10", "--suffix", "calc", "--seed", "3", **shared)  # fmt: skip
    assert out.returncode == 0, out.stderr
    model_id = next(line.split(":", 1)[1].strip() for line in out.stdout.splitlines() if line.startswith("model:"))
    store = open_store(db_url)
    ws = store.workspaces.ensure("default")
    row = store.models.get(ws.id, model_id)
    [job] = store.jobs.list(ws.id, limit=1)[0]
    checkpoints = store.jobs.checkpoints(ws.id, job["id"])[0]
    assert len(checkpoints) == 2
    objects = _objects(Blobs(worker_home, bucket, s3))
    assert f"{row['adapter_dir']}/adapter_model.safetensors" in objects
    assert {f"{c['path']}/adapter_model.safetensors" for c in checkpoints} <= objects
    assert f"files/{ws.id}/{job['training_file']}" in objects and f"jobs/{job['id']}/train.log" in objects
    assert not (server_home / "jobs").exists() and not (server_home / "files").exists()

    settings = Settings(home=server_home, database_url=db_url, blob_url=bucket, blob_options=s3, run_jobs=False)
    server = LiveServer(settings, open_store(db_url))
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        ask: Any = [{"role": "user", "content": "What is 2 + 3?"}]
        answer = client.chat.completions.create(model=model_id, messages=ask, max_tokens=4, temperature=0)
        assert answer.model == model_id and answer.choices[0].message is not None
        fetched = server_home / row["adapter_dir"] / "adapter_model.safetensors"
        assert fetched.read_bytes() == (worker_home / row["adapter_dir"] / "adapter_model.safetensors").read_bytes()

        step = checkpoints[-1]  # the first epoch's
        early = client.chat.completions.create(
            model=step["fine_tuned_model_checkpoint"], messages=ask, max_tokens=4, temperature=0
        )
        assert early.model == step["fine_tuned_model_checkpoint"] and (server_home / step["path"]).is_dir()

        # the training file uploaded on the worker's machine is this server's file too, and its deletion is shared
        assert client.files.content(job["training_file"]).read() == CALCULATOR_TRAIN.read_bytes()
        client.files.delete(job["training_file"])
        assert f"files/{ws.id}/{job['training_file']}" not in _objects(Blobs(server_home, bucket, s3))

        # an adapter gone from the object store (and this home) is a clear 404, not a 500
        Blobs(server_home, bucket, s3).delete(step["path"])
        with pytest.raises(openai.NotFoundError, match="is missing from"):
            client.chat.completions.create(
                model=step["fine_tuned_model_checkpoint"], messages=ask, max_tokens=4, temperature=0
            )
    finally:
        server.stop()
        store.close()


def test_an_object_store_that_is_down_is_a_503_and_the_upload_is_not_kept(
    tmp_path: Path, s3: dict[str, Any], store
) -> None:
    import socket

    from tracetune.errors import Unavailable

    with socket.socket() as sock:  # a port with nothing listening on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = {
        **s3,
        "endpoint_url": f"http://127.0.0.1:{port}",
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2},
    }
    blobs = Blobs(tmp_path, "s3://nowhere/tracetune", down)
    ws = store.workspaces.ensure("default")
    with pytest.raises(Unavailable, match="object store s3://nowhere/tracetune could not store") as info:
        store.files.create(ws.id, blobs, filename="a.jsonl", purpose="fine-tune", data=b'{"a": 1}\n')
    assert info.value.status_code == 503 and info.value.code == "blob_store_unavailable"
    assert store.files.list(ws.id) == ([], False)  # not acknowledged: no row
    assert not [p for p in (tmp_path / "files").rglob("*") if p.is_file()]  # and no bytes left behind
    with pytest.raises(Unavailable, match="could not look for"):
        blobs.path("jobs/j/adapter")


def test_a_checkpoint_the_object_store_refuses_stops_its_training_process(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The object store goes down during training: the first checkpoint cannot be shared, so it is not recorded,
    the runner says why (503 Unavailable) and no training process is left behind; the job waits, held, to be
    resumed from its last recorded checkpoint (none here) once its worker is found stale."""
    import threading

    import boto3
    from moto.server import ThreadedMotoServer

    from tests.train import training_processes
    from tracetune.config import Settings
    from tracetune.errors import Unavailable
    from tracetune.store import open_store
    from tracetune.train.jobs import FineTuningJobCreate, create_job
    from tracetune.train.runner import JobRunner

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {
        "endpoint_url": f"http://{host}:{port}", "key": "k", "secret": "s",
        "client_kwargs": {"region_name": "us-east-1"},
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2},
    }  # fmt: skip
    boto3.client(
        "s3", endpoint_url=options["endpoint_url"], aws_access_key_id="k", aws_secret_access_key="s",
        region_name="us-east-1",
    ).create_bucket(Bucket="tt-refused")  # fmt: skip
    home = make_tiny_home(tmp_path, shared_smollm2_tokenizer(tmp_path_factory))
    settings = Settings(home=home, blob_url="s3://tt-refused/x", blob_options=options, train_threads=1)
    store = open_store(settings.resolved_database_url)
    errors: list[BaseException] = []
    checked = threading.Event()
    try:
        ws = store.workspaces.ensure("default")
        runner = JobRunner(store, settings)
        upload = store.files.create(
            ws.id, runner.blobs, filename="calc.jsonl", purpose="fine-tune", data=CALCULATOR_TRAIN.read_bytes()
        )
        request = {"model": "tiny", "training_file": upload["id"], "hyperparameters": {"n_epochs": 3, "batch_size": 2}}
        job = create_job(store, settings, ws, FineTuningJobCreate.parse(request))
        assert runner.run_once()  # validating_files -> queued

        def train() -> None:  # as serve_forever: the runner's thread lives on after the error
            try:
                runner.run_once()
            except BaseException as exc:
                errors.append(exc)
            checked.wait(60)  # (a training process dies with the thread that started it: --die-with-parent)

        thread = threading.Thread(target=train)
        thread.start()
        deadline = time.time() + 120
        while not training_processes(job["id"]):
            assert time.time() < deadline and thread.is_alive(), errors
            time.sleep(0.05)
        server.stop()  # down before the first checkpoint (an epoch of 10 steps)
        deadline = time.time() + 180
        while not errors:
            assert time.time() < deadline, "the runner did not fail on the refused checkpoint"
            time.sleep(0.1)
        assert len(errors) == 1 and isinstance(errors[0], Unavailable), errors
        assert "could not store 'jobs/" in errors[0].message and "checkpoints" in errors[0].message
        assert training_processes(job["id"]) == []  # stopped, not orphaned
        assert store.jobs.latest_checkpoint(job["id"]) is None  # not recorded: no machine could resume from it
        assert store.jobs.row(job["id"])["status"] == "running"  # held until found stale, then resumed
    finally:
        checked.set()
        server.stop()
        store.close()
