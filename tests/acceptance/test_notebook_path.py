"""Acceptance: the LangSmith "LLM runs" notebook's path, its code unmodified, fine-tunes through tracetune (issue 21).

A LangChain app offers the Calculator as a legacy *function* (``functions=``) to its hosted model (the stand-in for
the hosted OpenAI service, scripted to answer the 20 traced questions right) and is traced to tracetune by the
``langsmith`` SDK. The notebook's code reads the LLM runs back, ``LangSmithRunChatLoader`` +
``convert_messages_for_finetuning`` make the fine-tuning records (which drop the functions: the records call a
function none of them declares), and the ``openai`` client uploads them and fine-tunes SmolLM2 with the defaults.

The job recovers the declarations from the stored runs the records came from (a warning event says so), so the model
trains on the prompt the app serves it. Called as the app calls it — ``ChatOpenAI(...).bind(functions=[…])``, the
function offered, not forced — the tuned model must make the exact right call on at least 14 of 20 held-out
questions (issue 21's goal, 70%; the issue measured 25% on this path before the recovery; with it: 20/20; the base
model makes 0-2: ``test_fine_tuning_openai.py``).

Trains the real SmolLM2 (~3-5 min on 2 CPU cores): runs in CI (``CI`` set), locally with ``TRACETUNE_TEST_SLOW=1``.
"""

from __future__ import annotations

import json
import uuid

import openai
import pytest

from tests.acceptance.conftest import sdk_client
from tests.acceptance.helpers import KNOWN_CLIENT_WARNINGS
from tests.acceptance.openai_standin import running_standin
from tests.acceptance.test_fine_tuning_openai import pytestmark as slow
from tests.acceptance.test_fine_tuning_openai import server  # noqa: F401 (the fixture)
from tests.acceptance.test_routing_decision import upload, wait
from tests.train import CALCULATOR_HELDOUT, CALCULATOR_TRAIN, expected_call, read_jsonl, same_call

pytestmark = [slow, pytest.mark.filterwarnings(*KNOWN_CLIENT_WARNINGS)]


def calculator_function() -> dict:
    """The Calculator as a legacy function (the notebook's ``functions=``), from the fixture's tool."""
    return read_jsonl(CALCULATOR_TRAIN)[0]["tools"][0]["function"]


def ask(llm, record: dict, **config) -> tuple[str, dict] | None:
    """The app's call: the record's system and user messages; the function call the model made, if any."""
    from langchain_core.messages import HumanMessage, SystemMessage

    system, user = record["messages"][0]["content"], record["messages"][1]["content"]
    reply = llm.invoke([SystemMessage(system), HumanMessage(user)], config=config)
    call = reply.additional_kwargs.get("function_call")
    return (call["name"], json.loads(call["arguments"])) if call else None


def test_the_notebooks_records_train_with_the_functions_recovered_from_the_stored_runs(server):  # noqa: F811
    from langchain_community.adapters.openai import convert_messages_for_finetuning
    from langchain_community.chat_loaders.langsmith import LangSmithRunChatLoader
    from langchain_core.tracers import LangChainTracer
    from langchain_openai import ChatOpenAI

    from tracetune.models import DEFAULT_MODEL_ID

    function = calculator_function()
    train, held_out = read_jsonl(CALCULATOR_TRAIN), read_jsonl(CALCULATOR_HELDOUT)
    answers = {r["messages"][1]["content"]: expected_call(r)[1] for r in train}
    langsmith = sdk_client(server)
    project = f"notebook-{uuid.uuid4().hex[:8]}"
    with running_standin(answers) as hosted:
        app = ChatOpenAI(model="gpt-4o-mini", base_url=hosted.base_url, api_key="unused", max_retries=0).bind(
            functions=[function], function_call={"name": "Calculator"}
        )
        tracer = LangChainTracer(project_name=project, client=langsmith)
        traced = [ask(app, r, callbacks=[tracer]) for r in train]
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
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    job = client.fine_tuning.jobs.create(
        model=DEFAULT_MODEL_ID, training_file=upload(client, "notebook.jsonl", records), suffix="notebook", seed=42
    )
    job = wait(client, job.id)
    assert job.status == "succeeded", job.error
    events = list(reversed(list(client.fine_tuning.jobs.list_events(job.id, limit=100))))
    recovered = [e.message for e in events if e.level == "warn" and "recovered" in e.message]
    assert len(recovered) == 1, [e.message for e in events]
    assert "20 records called tools without declaring them" in recovered[0]
    assert "20 by their prompt, 0 by the tools' names" in recovered[0]

    # Served as the app calls it: the function offered, the choice left to the model.
    def score(model: str) -> int:
        llm = ChatOpenAI(
            model=model, base_url=f"{server.url}/v1", api_key="unused", max_retries=0, temperature=0, max_tokens=64
        )  # a call takes ~35 tokens; a base model's prose is cut short
        bound = llm.bind(functions=[function])
        return sum(same_call(ask(bound, r), expected_call(r)) for r in held_out)

    tuned_right = score(job.fine_tuned_model)  # the base model's 0-2 of 20: test_fine_tuning_openai.py
    print(json.dumps({"notebook_path_tuned": tuned_right, "of": len(held_out)}))
    assert tuned_right >= 14
