"""Automations (``/tt/v1/automations``) on a real server whose job runner trains a tiny random Llama ("tiny"):
rules checked at creation, firings on new runs (dataset version → job → evaluation over the server's own /v1 →
gate → alias), only new runs taken by the next firing, one firing at a time, a firing left by a dead runner
resumed without a second dataset version or job, a refusing evaluation endpoint recorded as a failed firing.
The real SmolLM2 runs the loop in tests/acceptance/test_closed_loop.py."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.dataset_support import chat_run, ingest
from tests.models import shared_smollm2_tokenizer
from tests.train import make_tiny_home
from tracetune.convert.examples import iter_dataset_records
from tracetune.store.blobs import Blobs
from tracetune.store.workspaces import DEFAULT_WORKSPACE

PASSING = "accuracy >= 0"  # the tiny random model scores 0: this gate passes, the next one cannot
REFUSING = "accuracy >= current + 0.5"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tracetune.config import Settings
    from tracetune.store import open_store

    home = make_tiny_home(tmp_path_factory.mktemp("loop"), shared_smollm2_tokenizer(tmp_path_factory))
    settings = Settings(
        home=home, database_url=f"sqlite:///{home / 'tracetune.db'}", job_stale_after_s=3, automation_poll_s=0.2
    )
    store = open_store(settings.resolved_database_url, sqlite_synchronous="NORMAL")
    server = LiveServer(settings, store, lifespan="on")
    try:
        yield server
    finally:
        server.stop()
        store.close()


@pytest.fixture(scope="module")
def api(server) -> httpx.Client:
    with httpx.Client(base_url=f"{server.url}/tt/v1", timeout=60) as client:
        yield client


def traffic(server: LiveServer, project: str, n: int, *, start: int = 0) -> list[str]:
    runs = [chat_run(f"What is {i} plus {i}?", f"{2 * i}", n=i) for i in range(start, start + n)]
    ingest(server.store, server.store.workspaces.ensure(DEFAULT_WORKSPACE).id, runs, project)
    return [r["id"] for r in runs]


@pytest.fixture(scope="module")
def heldout(server) -> str:
    from tracetune.convert.dataset_builder import ExportOptions, Selection
    from tracetune.convert.export import export_dataset

    traffic(server, "heldout", 3, start=100)
    ws = server.store.workspaces.ensure(DEFAULT_WORKSPACE)
    options = ExportOptions(model="tiny", name="loop-heldout")
    export_dataset(server.store, ws.id, Selection(project="heldout"), options, home=server.settings.home)
    return "loop-heldout"


def rule(name: str, project: str, heldout: str, **overrides: Any) -> dict[str, Any]:
    return {
        "name": name, "project": project, "base_model": "tiny", "trigger": {"every_runs": 4},
        "eval_dataset": heldout, "gate": PASSING, "alias": f"{name}-bot", "eval_max_tokens": 8,
        "hyperparameters": {"n_epochs": 1, "batch_size": 2}, **overrides,
    }  # fmt: skip


def wait_firing(api: httpx.Client, name: str, number: int, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(f"/automations/{name}/firings/{number}")
        if response.status_code == 200 and response.json()["status"] in ("succeeded", "failed"):
            return response.json()
        assert time.monotonic() < deadline, f"firing #{number} of {name} not over: {response.text[:2000]}"
        time.sleep(0.3)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"filter": 'eq(name, "x"'}, "filter"),
        ({"trace_filter": "and(eq(feedback_key))"}, "trace_filter"),
        ({"gate": "accuracy >="}, "gate"),
        ({"gate": "bleu >= 0.5"}, "gate"),
        ({"gate": "__import__('os')"}, "gate"),
        ({"eval_dataset": "no-such-dataset"}, "eval_dataset"),
        ({"alias": "ft:tiny:default:x:abc"}, "alias"),
        ({"alias": "tiny"}, "alias"),
        ({"trigger": {"every_runs": 3, "every_s": 60}}, "trigger"),
        ({"trigger": {}}, "trigger"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"base_model": "no-such-model"}, "base_model"),
        ({"hyperparameters": {"n_epochs": 0}}, "n_epochs"),
        ({"method": "reinforcement"}, "method"),
        ({"surprise": 1}, "surprise"),
        ({"name": "has space"}, "name"),
    ],
)
def test_a_bad_rule_is_refused_at_creation_naming_the_field(api, heldout, change, field):
    response = api.post("/automations", json={**rule(f"bad-{uuid.uuid4().hex[:6]}", "p", heldout), **change})
    assert 400 <= response.status_code < 500, response.text
    assert field in response.text, response.text
    assert api.get("/automations").status_code == 200


def test_an_automation_fires_on_new_runs_promotes_and_the_next_firing_takes_only_new_runs(server, api, heldout):
    project = f"app-{uuid.uuid4().hex[:6]}"
    created = api.post("/automations", json=rule("grow", project, heldout, start_from="current", seed=11))
    assert created.status_code == 201, created.text
    assert created.json()["last_firing"] is None
    first_ids = traffic(server, project, 5)

    first = wait_firing(api, "grow", 1)
    assert first["status"] == "succeeded" and first["decision"] == "promoted", first
    assert first["trigger"] == "5 new runs" and first["runs_taken"] == 5 and first["runs_left_out"] == 0
    assert [s["step"] for s in first["steps"]] == ["dataset", "dataset", "train", "train", "evaluate", "decide"]
    # the lineage: runs → dataset version → job → models evaluated → alias version
    ws = server.store.workspaces.ensure(DEFAULT_WORKSPACE)
    version = server.store.datasets.get(ws.id, uuid.UUID(first["dataset_version_id"]))
    assert version["name"] == "automation-grow" and version["selection"]["firing_id"] == first["id"]
    lineage = {str(i) for r in iter_dataset_records(server.store, ws.id, version["id"]) for i in r["run_ids"]}
    assert lineage == set(first_ids)
    job = server.store.jobs.get(ws.id, first["job_id"])
    assert job["user_metadata"]["firing_id"] == first["id"] and job["model"] == "tiny" and job["seed"] == 11
    assert first["candidate_model"] == job["fine_tuned_model"] and first["current_model"] == "tiny"
    assert set(first["scores"]) == {first["candidate_model"], "tiny"}
    assert first["evaluation"]["dataset"] == {"name": heldout, "version": 1}
    assert len(first["evaluation"]["models"]["tiny"]["results"]) == 3
    # kept as LangSmith experiments over the evaluation dataset, one per model
    experiments = first["evaluation"]["experiments"]
    assert set(experiments) == set(first["scores"])
    experiment = httpx.get(f"{server.url}/api/v1/sessions/{experiments['tiny']['id']}").json()
    held = server.store.datasets.list(ws.id, name=heldout, limit=1)[0]
    assert experiment["reference_dataset_id"] == str(held["dataset_id"])
    alias = api.get("/aliases/grow-bot").json()
    assert alias["model"] == first["candidate_model"] and alias["version"] == first["alias_version"] == 1

    second_ids = traffic(server, project, 4, start=10)
    second = wait_firing(api, "grow", 2)
    assert second["decision"] == "promoted" and second["runs_taken"] == 4, second
    version2 = server.store.datasets.get(ws.id, uuid.UUID(second["dataset_version_id"]))
    assert version2["version"] == 2
    lineage2 = {str(i) for r in iter_dataset_records(server.store, ws.id, version2["id"]) for i in r["run_ids"]}
    assert lineage2 == set(second_ids)  # none of the first batch again
    job2 = server.store.jobs.get(ws.id, second["job_id"])
    assert job2["model"] == first["candidate_model"]  # start_from current: trained further from the promoted model
    assert second["current_model"] == first["candidate_model"]
    assert set(second["scores"]) == {second["candidate_model"], first["candidate_model"], "tiny"}  # and the base
    assert api.get("/aliases/grow-bot").json()["model"] == second["candidate_model"]
    page = httpx.get(f"{server.url}/automations/grow/firings/2").text  # the evaluation page: each model by its role
    assert all(f'data-role="{role}"' in page for role in ("candidate", "current", "base"))
    assert '<ul class="diff"><li>' in page  # the tiny random model's answers, where they differ from the reference
    models = httpx.get(f"{server.url}/models").text  # each model's newest evaluation: this firing's, for all three
    assert models.count('on 3 held-out (<a href="/automations/grow/firings/2">grow #2</a>)') >= 2, models  # both tuned

    shown = api.get("/automations/grow").json()
    assert [f["number"] for f in shown["firings"]] == [2, 1] and shown["last_firing"]["number"] == 2


def test_a_refusing_gate_leaves_the_alias_where_it_was_and_says_why(server, api, heldout):
    project = f"app-{uuid.uuid4().hex[:6]}"
    api.put("/aliases/strict-bot", json={"model": "tiny"}).raise_for_status()
    body = rule("strict", project, heldout, gate=REFUSING, alias="strict-bot", trigger={"every_s": 10})
    assert api.post("/automations", json=body).status_code == 201
    traffic(server, project, 2)
    fired = wait_firing(api, "strict", 1)
    assert fired["trigger"] == "schedule (2 new runs)"
    assert fired["status"] == "succeeded" and fired["decision"] == "refused", fired
    assert fired["reason"].startswith("accuracy >= current + 0.5: 0 >= 0.5: no"), fired["reason"]
    alias = api.get("/aliases/strict-bot").json()
    assert alias["model"] == "tiny" and alias["version"] == 1 and fired["alias_version"] is None


def test_two_firings_never_overlap_and_a_paused_rule_does_not_fire(server, api, heldout):
    project = f"app-{uuid.uuid4().hex[:6]}"
    body = rule("manual", project, heldout, trigger={"every_runs": 1000})
    assert api.post("/automations", json=body).status_code == 201
    assert api.post("/automations/manual/pause").json()["paused"] is True
    traffic(server, project, 3)
    started = api.post("/automations/manual/run")
    assert started.status_code == 202 and started.json()["trigger"] == "manual"
    again = api.post("/automations/manual/run")
    assert again.status_code == 409 and "queued or running" in again.json()["detail"]
    fired = wait_firing(api, "manual", 1)
    assert fired["status"] == "succeeded" and fired["runs_taken"] == 3
    # nothing new: a manual firing fails, recorded with the reason, after the rule's attempts (2)
    assert api.post("/automations/manual/run").status_code == 202
    empty = wait_firing(api, "manual", 2)
    assert empty["status"] == "failed" and empty["reason"] == "dataset: no new runs match the rule", empty
    assert empty["attempts"] == 2
    assert api.post("/automations/nope/run").status_code == 404


def test_a_firing_left_by_a_dead_runner_resumes_without_a_second_dataset_version_or_job(server, api, heldout):
    from tracetune.loop.firing import Firing

    project = f"app-{uuid.uuid4().hex[:6]}"
    body = rule("crash", project, heldout, trigger={"every_runs": 1000})
    assert api.post("/automations", json=body).status_code == 201
    api.post("/automations/crash/pause").raise_for_status()
    traffic(server, project, 3)
    store = server.store
    automation = store.automations.get(store.workspaces.ensure(DEFAULT_WORKSPACE).id, "crash")
    # A runner that dies after making the dataset version and the job (before recording the job): its firing is
    # queued and claimed here first, under a worker id that will never heartbeat again. The server's runner is
    # stopped meanwhile: polling every 0.2 s, it could claim the queued firing first (seen once in CI).
    runner = server.app.state.tt.automations
    runner.stop()
    try:
        firing = store.automations.add_firing(automation, "manual")
        assert firing is not None
        claimed = store.automations.claim("dead-runner", stale_after=3600)
        while claimed is not None and claimed["id"] != firing["id"]:  # an older queued firing: left, resumed later
            claimed = store.automations.claim("dead-runner", stale_after=3600)
        assert claimed is not None and claimed["id"] == firing["id"]
        dead = Firing(store, server.settings, automation, claimed, "dead-runner")
        dead._dataset()
        job = dead._job()
        store.automations.update(firing["id"], "dead-runner", job_id=None, heartbeat_at=time.time() - 100)
    finally:
        runner.start()

    done = wait_firing(api, "crash", 1)
    assert done["status"] == "succeeded" and done["job_id"] == job["id"], done
    ws = store.workspaces.ensure(DEFAULT_WORKSPACE)
    versions = store.datasets.list(ws.id, name="automation-crash")
    assert len(versions) == 1
    jobs, _ = store.jobs.list(ws.id, limit=100, metadata={"firing_id": str(firing["id"])})
    assert [j["id"] for j in jobs] == [job["id"]]


def test_an_evaluation_endpoint_that_refuses_is_a_recorded_failed_firing(store, tmp_path_factory):
    from tracetune.config import Settings
    from tracetune.loop.rules import Rule
    from tracetune.loop.runner import AutomationRunner

    home = make_tiny_home(tmp_path_factory.mktemp("loop-refused"), shared_smollm2_tokenizer(tmp_path_factory))
    ws = store.workspaces.ensure(DEFAULT_WORKSPACE)
    spec = Rule.model_validate(rule("refused", "p", "h", max_attempts=1)).model_dump(mode="json")
    automation = store.automations.create(ws.id, "refused", spec)
    firing = store.automations.add_firing(automation, "manual")
    assert firing is not None
    held = store.automations.claim("w", stale_after=60)
    assert held is not None and held["id"] == firing["id"]
    # as if trained: straight to the evaluation, which needs the held-out dataset and the endpoint
    _store_heldout(store, ws.id, home)
    store.automations.update(firing["id"], "w", step="evaluate", candidate_model="tiny")
    store.automations.requeue(firing["id"], "w")
    settings = Settings(home=home, database_url="sqlite://", grader_base_url="http://127.0.0.1:9/v1")
    assert AutomationRunner(store, settings, worker_id="w2").tick()
    failed = store.automations.firing_by_id(firing["id"])
    assert failed["status"] == "failed" and failed["attempts"] == 1
    assert failed["reason"].startswith("evaluate: evaluation on http://127.0.0.1:9/v1 failed"), failed["reason"]
    assert failed["steps"][-1]["message"].startswith("failed: evaluation on")


def _store_heldout(store: Any, workspace_id: uuid.UUID, home: Path) -> None:
    from tracetune.convert.dataset_builder import ExportOptions, Selection
    from tracetune.convert.export import export_dataset

    ingest(store, workspace_id, [chat_run("What is 1 plus 1?", "2")], "h-project")
    export_dataset(
        store, workspace_id, Selection(project="h-project"), ExportOptions(model="tiny", name="h"), home=home
    )


def test_the_cli_creates_lists_fires_shows_and_pauses(server, api, heldout):
    from typer.testing import CliRunner

    from tracetune.cli import app

    def cli(*args: str) -> Any:
        where = ["--database-url", server.settings.resolved_database_url, "--home", str(server.settings.home)]
        return CliRunner().invoke(app, ["automations", *args, *where])

    project = f"app-{uuid.uuid4().hex[:6]}"
    common = ["--project", project, "--eval-dataset", heldout, "--alias", "cli-bot", "--base-model", "tiny"]
    bad = cli("create", "cli", *common, "--gate", "f1 >= 0.5", "--every-runs", "1000")
    assert bad.exit_code == 2 and "gate" in bad.output and "unknown metric 'f1'" in bad.output
    made = cli("create", "cli", *common, "--gate", PASSING, "--every-runs", "1000", "--hyperparameters",
               '{"n_epochs": 1}')  # fmt: skip
    assert made.exit_code == 0, made.output
    assert f"cli (active): {project} → cli-bot, every 1000 new runs, gate: {PASSING}" in made.stdout
    assert "never fired" in cli("list").stdout
    traffic(server, project, 2)
    fired = cli("run", "cli")
    assert fired.exit_code == 0 and "#1 queued" in fired.stdout, fired.output
    wait_firing(api, "cli", 1)
    shown = cli("show", "cli", "--firing", "1")
    assert shown.exit_code == 0 and shown.stdout.startswith("#1 promoted  trigger: manual  candidate: ft:tiny:")
    assert "dataset: took 2 new runs (0 left out by sampling)" in shown.stdout
    assert "  current (base) tiny: accuracy 0" in shown.stdout and "why: accuracy >= 0: 0 >= 0: yes" in shown.stdout
    assert "(paused)" in cli("pause", "cli").stdout and "(active)" in cli("resume", "cli").stdout
    assert cli("show", "nope").exit_code == 2


def test_the_servers_internal_key_cannot_be_guessed(server):
    ws = server.store.workspaces.ensure(DEFAULT_WORKSPACE)
    for key in (f"tt-internal-guess.{ws.id}", "tt-internal-", f"{server.app.state.tt.internal_key}.{uuid.uuid4()}"):
        response = httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 401 and "invalid internal key" in response.text
    own = f"{server.app.state.tt.internal_key}.{ws.id}"
    assert httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {own}"}).status_code == 200


def test_a_dpo_automation_trains_on_the_reviewers_corrections(server, api, heldout):
    from tracetune.ingest.service import IngestService

    project = f"app-{uuid.uuid4().hex[:6]}"
    body = rule("prefs", project, heldout, method="dpo", trigger={"every_runs": 1000},
                hyperparameters={"n_epochs": 1, "batch_size": 2, "beta": 0.1})  # fmt: skip
    assert api.post("/automations", json=body).status_code == 201
    ids = traffic(server, project, 3)
    ws = server.store.workspaces.ensure(DEFAULT_WORKSPACE)
    service = IngestService(server.store, Blobs(server.settings.home))
    for n, run_id in enumerate(ids):
        service.feedback(ws.id, {"run_id": run_id, "key": "correctness", "correction": f"exactly {2 * n}"})
    api.post("/automations/prefs/run").raise_for_status()
    fired = wait_firing(api, "prefs", 1)
    assert fired["status"] == "succeeded" and fired["decision"] == "promoted", fired
    job = server.store.jobs.get(ws.id, fired["job_id"])
    assert job["method"]["type"] == "dpo" and job["method"]["dpo"]["hyperparameters"]["beta"] == 0.1
    records = [r["record"] for r in iter_dataset_records(server.store, ws.id, uuid.UUID(fired["dataset_version_id"]))]
    assert len(records) == 3 and all({"input", "preferred_output", "non_preferred_output"} <= set(r) for r in records)
    assert {r["preferred_output"][0]["content"] for r in records} == {"exactly 0", "exactly 2", "exactly 4"}


def test_a_firing_whose_training_process_is_killed_ends_with_one_job(server, api, heldout):
    import os
    import signal

    from tests.train import training_processes

    project = f"app-{uuid.uuid4().hex[:6]}"
    body = rule("killed", project, heldout, trigger={"every_runs": 1000},
                hyperparameters={"n_epochs": 6, "batch_size": 1})  # fmt: skip
    assert api.post("/automations", json=body).status_code == 201
    traffic(server, project, 4)
    api.post("/automations/killed/run").raise_for_status()
    deadline = time.monotonic() + 120
    pids: list[int] = []
    while not pids:  # the firing's job is training
        assert time.monotonic() < deadline, "no training process started"
        job_id = api.get("/automations/killed/firings/1").json()["job_id"]
        pids = training_processes(job_id) if job_id else []
        time.sleep(0.2)
    os.kill(pids[0], signal.SIGKILL)
    fired = wait_firing(api, "killed", 1)
    assert fired["status"] == "succeeded" and fired["job_id"] == job_id, fired
    ws = server.store.workspaces.ensure(DEFAULT_WORKSPACE)
    jobs, _ = server.store.jobs.list(ws.id, limit=100, metadata={"firing_id": fired["id"]})
    assert [j["id"] for j in jobs] == [job_id]
    messages = [e["message"] for e in server.store.jobs.all_events(job_id)]
    assert "The training process was killed by SIGKILL; restarting it" in messages


def test_a_server_without_a_job_runner_fires_and_a_worker_trains_the_job(tmp_path_factory):
    """``TRACETUNE_RUN_JOBS=false`` (jobs left to ``tracetune worker`` processes): the server still fires the
    automation; its job waits, queued, until a worker runs it; then the firing evaluates and promotes."""
    from typer.testing import CliRunner

    from tracetune.cli import app
    from tracetune.config import Settings
    from tracetune.store import open_store

    home = make_tiny_home(tmp_path_factory.mktemp("loop-worker"), shared_smollm2_tokenizer(tmp_path_factory))
    settings = Settings(
        home=home, database_url=f"sqlite:///{home / 'tracetune.db'}", run_jobs=False, automation_poll_s=0.2
    )
    store = open_store(settings.resolved_database_url, sqlite_synchronous="NORMAL")
    live = LiveServer(settings, store, lifespan="on")
    try:
        ws = store.workspaces.ensure(DEFAULT_WORKSPACE)
        _store_heldout(store, ws.id, home)
        with httpx.Client(base_url=f"{live.url}/tt/v1", timeout=60) as api:
            assert api.post("/automations", json=rule("far", "far-app", "h")).status_code == 201
            traffic(live, "far-app", 4)
            deadline = time.monotonic() + 60
            while not (firing := api.get("/automations/far/firings/1").json()).get("job_id"):
                assert time.monotonic() < deadline, firing
                time.sleep(0.2)
            assert firing["status"] == "running" and firing["step"] == "train"
            waiting = store.jobs.get(ws.id, firing["job_id"])["status"]
            assert waiting in ("validating_files", "queued"), waiting  # nobody here trains it
            where = ["--home", str(home), "--database-url", settings.resolved_database_url]
            worked = CliRunner().invoke(app, ["worker", "--once", *where])
            assert worked.exit_code == 0 and f"{firing['job_id']}: done" in worked.output, worked.output
            fired = wait_firing(api, "far", 1)
        assert fired["status"] == "succeeded" and fired["decision"] == "promoted", fired
        assert (
            fired["job_id"] == firing["job_id"] and store.aliases.resolve(ws.id, "far-bot") == fired["candidate_model"]
        )
    finally:
        live.stop()
        store.close()
