"""Acceptance: project management, run stats and pre-signed feedback through the unmodified newest SDK —
``update_project`` (rename, describe, metadata, close), ``delete_project`` (its runs, their tags, metadata and
feedback go in one transaction; a later run to the name makes a new project), ``get_run_stats`` over the traced
project, and ``create_presigned_feedback_token[s]`` / ``create_feedback_from_token`` (a URL that records feedback
without a key, within the key's bounds, until it expires)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from langsmith.utils import LangSmithConflictError, LangSmithNotFoundError
from sqlalchemy import func, select

from tests.server.support import child_of, new_run
from tracetune.store.schema import annotation_queue_items, feedback, run_metadata, run_tags, runs

from .helpers import KNOWN_CLIENT_WARNINGS, by_trace

pytestmark = pytest.mark.filterwarnings(*KNOWN_CLIENT_WARNINGS)

MODE = "sdk_default"


def test_update_project_renames_describes_and_closes(client):
    name = f"proj-{uuid.uuid4().hex[:8]}"
    project = client.create_project(name, description="first")
    closed = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    updated = client.update_project(
        project.id, name=name + "-v2", description="second", metadata={"team": "ml"}, end_time=closed
    )
    assert (updated.id, updated.name, updated.description) == (project.id, name + "-v2", "second")
    assert updated.end_time == closed and updated.metadata == {"team": "ml"}
    again = client.read_project(project_name=name + "-v2")
    assert again.id == project.id and again.end_time == closed
    client.update_project(project.id, description="third")  # the SDK sends null for the rest: unchanged
    assert client.read_project(project_id=project.id).name == name + "-v2"
    other = client.create_project(f"proj-{uuid.uuid4().hex[:8]}")
    with pytest.raises(LangSmithConflictError):
        client.update_project(other.id, name=name + "-v2")
    with pytest.raises(LangSmithNotFoundError):
        client.update_project(uuid.uuid4(), description="nobody")


def count(store, table, column, values) -> int:
    with store.db.read() as conn:
        return conn.execute(select(func.count()).select_from(table).where(table.c[column].in_(values))).scalar_one()


def test_delete_project_takes_everything_in_it(client, live_server):
    name = f"doomed-{uuid.uuid4().hex[:8]}"
    root = new_run(name, tags=["t1"], extra={"metadata": {"user": "u1"}})
    child = child_of(root, tags=["t2"])
    api = httpx.Client(base_url=live_server.langsmith_url)
    assert api.post("/runs/batch", json={"post": [root, child]}).status_code == 202
    client.create_feedback(root["id"], key="user_score", score=1, trace_id=root["id"])
    client.flush()  # the SDK sends feedback with its tracing batches
    project = client.read_project(project_name=name)
    ids = [uuid.UUID(root["id"]), uuid.UUID(child["id"])]
    store = live_server.store
    assert count(store, runs, "id", ids) == 2 and count(store, run_tags, "run_id", ids) == 2
    assert count(store, run_metadata, "run_id", ids) >= 1 and count(store, feedback, "run_id", ids) == 1

    queue = client.create_annotation_queue(name=f"q-{name}")
    client.add_runs_to_annotation_queue(queue.id, run_ids=[root["id"]])
    dataset = client.create_dataset(f"ds-{name}")
    example = client.create_example(inputs={"q": "kept"}, dataset_id=dataset.id, source_run_id=root["id"])
    assert str(client.read_example(example.id).source_run_id) == root["id"]

    client.delete_project(project_name=name)

    with pytest.raises(LangSmithNotFoundError):
        client.read_project(project_name=name)
    for table, column in ((runs, "id"), (run_tags, "run_id"), (run_metadata, "run_id"), (feedback, "run_id")):
        assert count(store, table, column, ids) == 0, table.name
    assert list(client.list_runs_from_annotation_queue(queue.id)) == []
    assert count(store, annotation_queue_items, "run_id", ids) == 0
    kept = client.read_example(example.id)  # the example stays, without a link to a run that is gone
    assert kept.inputs == {"q": "kept"} and kept.source_run_id is None
    # the name is free again: a new run makes a new project
    assert api.post("/runs", json=new_run(name)).status_code == 202
    reborn = client.read_project(project_name=name)
    assert reborn.id != project.id and len(list(client.list_runs(project_name=name))) == 1
    with pytest.raises(LangSmithNotFoundError):
        client.delete_project(project_id=str(project.id))


def test_run_stats_sum_up_the_selection(traced, client):
    traced.result(MODE)
    every = traced.runs(MODE)
    stats = client.get_run_stats(project_names=[traced.project(MODE)])
    assert stats["run_count"] == len(every)
    errors = [r for r in every if r.error]
    assert stats["error_rate"] == pytest.approx(len(errors) / len(every))
    assert stats["total_tokens"] == sum(r.total_tokens or 0 for r in every)
    latencies = sorted((r.end_time - r.start_time).total_seconds() for r in every if r.end_time)
    assert latencies[0] <= stats["latency_p50"] <= stats["latency_p99"] <= latencies[-1] + 1e-6
    assert stats["feedback_stats"]["user_score"] == {"n": 2, "avg": 0.5}
    llm = client.get_run_stats(project_names=[traced.project(MODE)], run_type="llm", is_root=False)
    assert llm["run_count"] == sum(len([r for r in t if r.run_type == "llm"]) for t in by_trace(every).values())
    assert "feedback_stats" in llm and llm["feedback_stats"] == {}  # the feedback is on roots


def own_run(live_server) -> str:
    """A run of its own project for a test that writes feedback (the traced projects' feedback is checked exactly
    elsewhere)."""
    run = new_run(f"own-{uuid.uuid4().hex[:8]}")
    assert httpx.post(live_server.langsmith_url + "/runs", json=run).status_code == 202
    return str(run["id"])


def test_presigned_feedback_urls_record_feedback_without_a_key(client, live_server):
    run_id = own_run(live_server)
    config = {"type": "continuous", "min": 0, "max": 1}
    token = client.create_presigned_feedback_token(run_id, "thumbs", expiration=timedelta(hours=1),
                                                   feedback_config=config)  # fmt: skip
    assert token.url.endswith(f"/api/v1/feedback/tokens/{token.id}")
    assert timedelta(minutes=59) < token.expires_at - datetime.now(UTC) <= timedelta(hours=1)
    anonymous = httpx.get(token.url, params={"score": 1, "comment": "great"})  # a browser: no key
    assert anonymous.status_code == 200, anonymous.text
    client.create_feedback_from_token(token.url, score=0.5, comment="meh", metadata={"via": "sdk"})
    # the SDK names the feedback a token writes, so a second use changes it (as on LangSmith)
    mine = [f for f in client.list_feedback(run_ids=[run_id]) if f.key == "thumbs"]
    assert [(f.score, f.comment) for f in mine] == [(0.5, "meh")]
    out_of_range = httpx.get(token.url, params={"score": 5})
    assert out_of_range.status_code == 400 and "score" in out_of_range.json()["detail"]

    pair = client.create_presigned_feedback_tokens(run_id, ["helpful", "correct"])
    assert len(pair) == 2 and len({t.id for t in pair}) == 2
    listed = {t.id for t in client.list_presigned_feedback_tokens(run_id)}
    assert {token.id, *(t.id for t in pair)} <= listed

    with pytest.raises(Exception, match="expires_at"):
        client.create_presigned_feedback_token(run_id, "late", expiration=datetime.now(UTC) - timedelta(hours=1))
    store = live_server.store
    ws = store.workspaces.get("default").id
    past = datetime.now(UTC) - timedelta(seconds=1)
    old = {"run_id": uuid.UUID(run_id), "feedback_key": "old", "feedback_config": None, "feedback_id": None}
    (expired,) = store.feedback_tokens.create_many(ws, [{**old, "expires_at": past}])
    gone = httpx.get(f"{live_server.langsmith_url}/feedback/tokens/{expired['id']}", params={"score": 1})
    assert gone.status_code == 403 and "expired" in gone.json()["detail"]
    unknown = httpx.post(f"{live_server.langsmith_url}/feedback/tokens/{uuid.uuid4()}", json={"score": 1})
    assert unknown.status_code == 404


def test_a_token_naming_its_feedback_writes_that_one_feedback(client, live_server):
    run_id = own_run(live_server)
    feedback_id = uuid.uuid4()
    token = client.create_presigned_feedback_token(run_id, "stars", feedback_id=feedback_id)
    client.create_feedback_from_token(token.id, score=2)
    client.create_feedback_from_token(token.id, score=4, comment="changed my mind")
    one = client.read_feedback(feedback_id)
    assert (one.key, one.score, one.comment) == ("stars", 4.0, "changed my mind")
    assert [f.id for f in client.list_feedback(run_ids=[run_id]) if f.key == "stars"] == [feedback_id]


def test_feedback_configs_define_and_check_a_keys_scores(client, live_server):
    run_id = own_run(live_server)
    key = f"quality-{uuid.uuid4().hex[:6]}"
    made = client.create_feedback_config(key, feedback_config={"type": "continuous", "min": 0, "max": 5},
                                         is_lower_score_better=False)  # fmt: skip
    assert (made.feedback_key, made.feedback_config["max"], made.is_lower_score_better) == (key, 5, False)
    same = client.create_feedback_config(key, feedback_config={"type": "continuous", "min": 0, "max": 5})
    assert same.id == made.id  # an identical config is returned unchanged
    with pytest.raises(Exception, match="already exists"):
        client.create_feedback_config(key, feedback_config={"type": "continuous", "min": 0, "max": 10})
    assert [c.feedback_key for c in client.list_feedback_configs(feedback_key=[key])] == [key]

    # feedback on the key is checked against it (the direct API; multipart batches store what is sent)
    api = httpx.Client(base_url=live_server.langsmith_url)
    ok = api.post("/feedback", json={"run_id": run_id, "key": key, "score": 4})
    too_high = api.post("/feedback", json={"run_id": run_id, "key": key, "score": 7})
    assert ok.status_code == 200 and too_high.status_code == 400 and "score" in too_high.json()["detail"]

    widened = client.update_feedback_config(key, feedback_config={"type": "continuous", "min": 0, "max": 10})
    assert widened.feedback_config["max"] == 10 and widened.id == made.id
    assert api.post("/feedback", json={"run_id": run_id, "key": key, "score": 7}).status_code == 200

    label = f"topic-{uuid.uuid4().hex[:6]}"
    categories = [{"value": 0, "label": "billing"}, {"value": 1, "label": "shipping"}]
    client.create_feedback_config(label, feedback_config={"type": "categorical", "categories": categories})
    grown = client.add_feedback_categories(label, [{"value": 2, "label": "returns"}])
    assert [c["label"] for c in grown.feedback_config["categories"]] == ["billing", "shipping", "returns"]
    shrunk = client.remove_feedback_categories(label, [0])
    assert [c["value"] for c in shrunk.feedback_config["categories"]] == [1, 2]
    assert api.post("/feedback", json={"run_id": run_id, "key": label, "score": 0}).status_code == 400

    client.delete_feedback_config(key)
    assert list(client.list_feedback_configs(feedback_key=[key])) == []
    assert api.post("/feedback", json={"run_id": run_id, "key": key, "score": 70}).status_code == 200
    bad = api.post("/feedback-configs", json={"feedback_key": "x", "feedback_config": {"type": "categorical"}})
    assert bad.status_code == 422 and "categories" in bad.json()["detail"]

    # a feedback_config in the first POST /feedback of a key configures it
    fresh = f"stars-{uuid.uuid4().hex[:6]}"
    unit = {"type": "continuous", "min": 0, "max": 1}
    first = api.post("/feedback", json={"run_id": run_id, "key": fresh, "score": 1, "feedback_config": unit})
    assert first.status_code == 200 and client.list_feedback_configs(feedback_key=[fresh])
    assert api.post("/feedback", json={"run_id": run_id, "key": fresh, "score": 3}).status_code == 400
    odd = api.post("/feedback", json={"run_id": run_id, "key": "odd", "score": 1, "feedback_config": {"type": "x"}})
    assert odd.status_code == 400 and "feedback_config" in odd.json()["detail"]
