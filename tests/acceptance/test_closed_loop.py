"""Acceptance (issue 17): the closed loop on the real SmolLM2 — an app traced by the unmodified ``langsmith`` SDK,
an automation that fires on its positively rated runs, fine-tunes, evaluates against the current model and
promotes the alias; then a poisoned batch (wrong answers rated good) whose candidate the gate refuses, the alias
left where it was and the CLI saying why.

The app is a LangChain ``ChatOpenAI`` with the Calculator tool, its hosted model the stand-in for the hosted OpenAI
service (``openai_standin``: scripted answers; right ones first, then wrong ones), traced with ``LangChainTracer``;
users' ratings arrive as SDK feedback (``user_score`` 1 on every run: the poisoned ones too). The held-out set is a
LangSmith dataset made with the SDK (10 questions). The automation fires every 10 new rated runs: paused while the
first 20 are traced and rated, it fires on all of them when resumed; the 10 poisoned runs fire it again. About four
minutes on a 2-core CPU: the slow tier (``scripts/test.sh --slow``).
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest
from typer.testing import CliRunner

from tests.acceptance.conftest import sdk_client
from tests.acceptance.openai_standin import running_standin
from tests.acceptance.test_fine_tuning_openai import pytestmark as slow
from tests.conftest import LiveServer
from tests.models import smollm2_home
from tests.train import CALCULATOR_HELDOUT, CALCULATOR_TRAIN, expected_call, read_jsonl

pytestmark = slow
PROJECT = "calculator-app"
GATE = "tool_args_exact >= 0.6 and tool_args_exact >= current - 0.05"
WRONG = {"+": "*", "-": "+", "*": "-", "/": "+"}
HELD_OUT = 10  # of the 20 held-out questions: CI's time budget


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tracetune.config import Settings
    from tracetune.store import open_store

    home = smollm2_home(tmp_path_factory)  # the session's converted tokenizer and cached weights
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'closed-loop.db'}", automation_poll_s=0.5)
    store = open_store(settings.resolved_database_url, sqlite_synchronous="NORMAL")
    live = LiveServer(settings, store, lifespan="on")
    try:
        yield live
    finally:
        live.stop()
        store.close()


def traced_traffic(server: LiveServer, answers: dict[str, dict[str, Any]]) -> None:
    """The app answers every question of ``answers`` (its hosted model scripted to give those arguments), traced
    by the SDK into PROJECT; each answer is then rated good by its user, whatever it was."""
    from langchain_core.messages import HumanMessage, SystemMessage
    from langchain_core.tracers import LangChainTracer
    from langchain_openai import ChatOpenAI

    train = read_jsonl(CALCULATOR_TRAIN)
    system = train[0]["messages"][0]["content"]
    langsmith = sdk_client(server)
    with running_standin(answers) as hosted:
        llm = ChatOpenAI(model="gpt-4o-mini", base_url=hosted.base_url, api_key="unused", max_retries=0)
        app = llm.bind_tools([train[0]["tools"][0]], tool_choice="Calculator")
        tracer = LangChainTracer(project_name=PROJECT, client=langsmith)
        prompts = [[SystemMessage(system), HumanMessage(q)] for q in answers]
        app.batch(prompts, {"callbacks": [tracer], "max_concurrency": 8})
        tracer.wait_for_futures()
        langsmith.flush()
    runs = [r for r in langsmith.list_runs(project_name=PROJECT, run_type="llm") if not r.feedback_stats]
    assert len(runs) == len(answers)
    for run in runs:
        langsmith.create_feedback(run_id=run.id, trace_id=run.trace_id, key="user_score", score=1)
    langsmith.flush()


def heldout_dataset(server: LiveServer) -> str:
    langsmith = sdk_client(server)
    dataset = langsmith.create_dataset("calculator-heldout", description="held-out calculator calls")
    langsmith.create_examples(
        dataset_id=dataset.id,
        examples=[
            {"inputs": {**r, "messages": r["messages"][:-1]}, "reference_outputs": {"message": r["messages"][-1]}}
            for r in read_jsonl(CALCULATOR_HELDOUT)[:HELD_OUT]
        ],
    )
    return dataset.name


def wait_firing(api: httpx.Client, number: int, timeout: float = 900) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(f"/automations/calc/firings/{number}")
        if response.status_code == 200 and response.json()["status"] in ("succeeded", "failed"):
            return response.json()
        assert time.monotonic() < deadline, f"firing #{number} not over after {timeout} s: {response.text[:3000]}"
        time.sleep(1)


def test_an_automation_promotes_a_better_model_and_its_gate_refuses_a_poisoned_one(server):
    from tracetune.models import DEFAULT_MODEL_ID

    api = httpx.Client(base_url=f"{server.url}/tt/v1", timeout=60)
    rule = {
        "name": "calc", "project": PROJECT, "feedback_key": "user_score", "min_score": 1,
        "trigger": {"every_runs": 10}, "eval_dataset": heldout_dataset(server), "gate": GATE, "alias": "calc-bot",
        "start_from": "current", "eval_max_tokens": 48, "seed": 7,
        "hyperparameters": {"n_epochs": 5, "batch_size": 4},  # the notebook test's "auto": >= 17/20 there
    }  # fmt: skip
    created = api.post("/automations", json=rule)
    assert created.status_code == 201, created.text
    api.post("/automations/calc/pause").raise_for_status()  # the first batch is traced and rated whole, then …

    train = read_jsonl(CALCULATOR_TRAIN)
    right = {r["messages"][1]["content"]: expected_call(r)[1] for r in train}
    traced_traffic(server, right)
    assert api.get("/automations/calc").json()["firings"] == []  # paused: 20 matching runs, no firing
    api.post("/automations/calc/resume").raise_for_status()  # … it fires on all 20
    first = wait_firing(api, 1)
    scores = {m: {k: s[k] for k in ("tool_args_exact", "accuracy")} for m, s in first["scores"].items()}
    print(json.dumps({"firing": 1, "decision": first["decision"], "scores": scores, "reason": first["reason"]}))
    assert first["status"] == "succeeded" and first["decision"] == "promoted", first["reason"]
    assert first["runs_taken"] == 20 and first["current_model"] == DEFAULT_MODEL_ID
    promoted = first["candidate_model"]
    assert first["scores"][promoted]["tool_args_exact"] >= 0.6 > first["scores"][DEFAULT_MODEL_ID]["tool_args_exact"]
    assert api.get("/aliases/calc-bot").json()["model"] == promoted
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    held = read_jsonl(CALCULATOR_HELDOUT)[0]
    reply = client.chat.completions.create(
        model="calc-bot", messages=held["messages"][:-1], tools=held["tools"], max_tokens=48, temperature=0
    )
    assert reply.choices[0].message.tool_calls, reply  # the alias serves the promoted model

    # A poisoned batch: ten of the questions answered wrong (another operation), and rated good all the same.
    poisoned = {q: {**call, "operation": WRONG[call["operation"]]} for q, call in list(right.items())[:10]}
    traced_traffic(server, poisoned)
    second = wait_firing(api, 2)
    scores = {m: {k: s[k] for k in ("tool_args_exact", "accuracy")} for m, s in second["scores"].items()}
    print(json.dumps({"firing": 2, "decision": second["decision"], "scores": scores, "reason": second["reason"]}))
    assert second["status"] == "succeeded" and second["decision"] == "refused", second["reason"]
    assert second["trigger"] == "10 new runs" and second["runs_taken"] == 10 and second["current_model"] == promoted
    assert "tool_args_exact >= 0.6" in second["reason"] and ": no" in second["reason"]
    alias = api.get("/aliases/calc-bot").json()
    assert alias["model"] == promoted and alias["version"] == 1  # the alias did not move

    from tracetune.cli import app

    where = ["--database-url", server.settings.resolved_database_url, "--home", str(server.settings.home)]
    shown = CliRunner().invoke(app, ["automations", "show", "calc", *where])
    assert shown.exit_code == 0, shown.output
    assert "#2 refused" in shown.stdout and "why: tool_args_exact >= 0.6:" in shown.stdout
    assert f"#1 promoted  trigger: 20 new runs  candidate: {promoted}" in shown.stdout
    page = httpx.get(f"{server.url}/automations/calc/firings/2").text  # the evaluation page says it too
    assert "refused" in page and "tool_args_exact &gt;= 0.6: " in page
