"""Acceptance 4: feedback through the SDK (create / read / list), feedback that arrives before its run,
and ``read_run(..., load_child_runs=True)``; runs are traced with the SDK's ``RunTree`` in this process."""

from __future__ import annotations

import uuid

import httpx
import pytest
from langsmith.utils import LangSmithNotFoundError

from .conftest import sdk_client
from .helpers import KNOWN_CLIENT_WARNINGS

pytestmark = pytest.mark.filterwarnings(*KNOWN_CLIENT_WARNINGS)


def trace_answer(client, project: str, run_id: uuid.UUID | None = None):
    """One root run with one child, traced through ``client`` and flushed; returns (root, child)."""
    from langsmith.run_trees import RunTree

    root = RunTree(
        name="answer",
        run_type="chain",
        inputs={"question": "hi?"},
        project_name=project,
        ls_client=client,
        **({"id": run_id} if run_id else {}),
    )
    root.post()
    child = root.create_child(name="lookup", run_type="tool", inputs={"key": "hi"})
    child.post()
    child.end(outputs={"value": "hello"})
    child.patch()
    root.end(outputs={"answer": "hello"})
    root.patch()
    client.flush()
    return root, child


def test_feedback_create_read_and_list_through_the_sdk(live_server, project_name):
    client = sdk_client(live_server)
    root, child = trace_answer(client, project_name)
    given = client.create_feedback(
        root.id,
        key="helpfulness",
        score=0.75,
        value="good",
        comment="clear answer",
        correction={"answer": "hello!"},
        trace_id=root.trace_id,  # travels inside /runs/multipart
    )
    plain = client.create_feedback(child.id, key="relevance", score=1)  # POST /feedback
    client.flush()

    read = client.read_feedback(given.id)
    assert (read.id, read.run_id, read.trace_id, read.key) == (given.id, root.id, root.id, "helpfulness")
    assert (read.score, read.value, read.comment, read.correction) == (
        0.75,
        "good",
        "clear answer",
        {"answer": "hello!"},
    )
    assert read.feedback_source is not None and read.feedback_source.type == "api"
    assert client.read_feedback(plain.id).run_id == child.id

    assert [f.id for f in client.list_feedback(run_ids=[root.id])] == [given.id]
    both = client.list_feedback(run_ids=[root.id, child.id])
    assert sorted((f.key, f.score) for f in both) == [("helpfulness", 0.75), ("relevance", 1.0)]
    only = client.list_feedback(run_ids=[root.id, child.id], feedback_key=["relevance"])
    assert [(f.id, f.run_id) for f in only] == [(plain.id, child.id)]

    loaded = client.read_run(root.id, load_child_runs=True)
    assert loaded.outputs == {"answer": "hello"}
    assert [(c.id, c.name, c.outputs) for c in loaded.child_runs] == [(child.id, "lookup", {"value": "hello"})]
    assert loaded.feedback_stats == {"helpfulness": {"n": 1, "avg": 0.75}}


def test_feedback_for_a_run_not_yet_ingested_is_kept(live_server, project_name):
    client = sdk_client(live_server)
    run_id = uuid.uuid4()
    http_id = uuid.uuid4()
    response = httpx.post(
        f"{live_server.langsmith_url}/feedback",
        json={"id": str(http_id), "run_id": str(run_id), "key": "early_http", "score": 1, "comment": "first"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["run_id"] == str(run_id) and response.json()["key"] == "early_http"
    sdk = client.create_feedback(run_id, key="early_sdk", score=0)  # POST /feedback
    queued = client.create_feedback(run_id, key="early_multipart", score=0.5, trace_id=run_id)  # multipart
    client.flush()

    def keys() -> list[tuple[str, str, float]]:
        return sorted((f.key, str(f.id), f.score) for f in client.list_feedback(run_ids=[run_id]))

    expected = sorted(
        [("early_http", str(http_id), 1.0), ("early_sdk", str(sdk.id), 0.0), ("early_multipart", str(queued.id), 0.5)]
    )
    assert keys() == expected  # kept while the run is unknown
    with pytest.raises(LangSmithNotFoundError):
        client.read_run(run_id)

    trace_answer(client, project_name, run_id=run_id)
    assert keys() == expected  # and still there once it is ingested
    run = client.read_run(run_id)
    assert run.feedback_stats == {
        "early_http": {"n": 1, "avg": 1.0},
        "early_sdk": {"n": 1, "avg": 0.0},
        "early_multipart": {"n": 1, "avg": 0.5},
    }
    found = client.list_runs(
        project_name=project_name, filter='and(eq(feedback_key, "early_http"), eq(feedback_score, 1))'
    )
    assert [r.id for r in found] == [run_id]
