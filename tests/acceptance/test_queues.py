"""Acceptance: annotation queues through the unmodified newest SDK — the queue methods of ``Client``, the run methods
it deprecates, and its generated ``client.annotation_queues.items`` resource: a reviewer works through the LLM
runs of a project, rates them, marks them completed."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from langsmith.utils import LangSmithConflictError, LangSmithNotFoundError

from tests.server.support import new_run

from .helpers import KNOWN_CLIENT_WARNINGS

pytestmark = pytest.mark.filterwarnings(*KNOWN_CLIENT_WARNINGS)

MODE = "sdk_default"


def llm_runs(live_server, client) -> list[Any]:
    """Three LLM runs of a project of their own (reviews write feedback; the traced projects' is checked exactly
    elsewhere), oldest first."""
    project = f"to-review-{uuid.uuid4().hex[:8]}"
    start = datetime.now(UTC) - timedelta(minutes=5)
    posted = [new_run(project, start=start + timedelta(seconds=i), run_type="llm", name=f"llm-{i}") for i in range(3)]
    assert httpx.post(live_server.langsmith_url + "/runs/batch", json={"post": posted}).status_code == 202
    return sorted(client.list_runs(project_name=project), key=lambda r: r.start_time)


def test_queue_lifecycle_with_the_client_methods(client, live_server):
    runs = llm_runs(live_server, client)
    name = f"review-{uuid.uuid4().hex[:8]}"
    rubric = [{"feedback_key": "correct", "description": "Is the tool call right?"}]
    queue = client.create_annotation_queue(name=name, description="LLM calls", rubric_instructions="Be strict",
                                           rubric_items=rubric)  # fmt: skip
    read = client.read_annotation_queue(queue.id)
    assert (read.name, read.rubric_instructions, read.rubric_items) == (name, "Be strict", rubric)
    assert [q.id for q in client.list_annotation_queues(name=name)] == [queue.id]
    client.update_annotation_queue(queue.id, name=name + "-v2", description="renamed")
    assert client.read_annotation_queue(queue.id).name == name + "-v2"
    with pytest.raises(LangSmithConflictError):
        client.create_annotation_queue(name=name + "-v2")

    client.add_runs_to_annotation_queue(queue.id, run_ids=[r.id for r in runs])
    client.add_runs_to_annotation_queue(queue.id, run_ids=[runs[0].id])  # already there: not twice
    queued = list(client.list_runs_from_annotation_queue(queue.id))
    assert [r.id for r in queued] == [r.id for r in runs] and all(r.added_at for r in queued)
    assert client.get_run_from_annotation_queue(queue.id, index=1).id == runs[1].id
    client.delete_run_from_annotation_queue(queue.id, run_id=runs[0].id)
    assert [r.id for r in client.list_runs_from_annotation_queue(queue.id)] == [r.id for r in runs[1:]]
    with pytest.raises(LangSmithNotFoundError):
        client.add_runs_to_annotation_queue(queue.id, run_ids=[uuid.uuid4()])

    client.delete_annotation_queue(queue.id)
    with pytest.raises(LangSmithNotFoundError):
        client.read_annotation_queue(queue.id)


def test_a_reviewer_works_through_the_items(client, live_server):
    runs = llm_runs(live_server, client)
    queue = client.create_annotation_queue(name=f"items-{uuid.uuid4().hex[:8]}")
    qid = str(queue.id)
    items = client.annotation_queues.items

    async def review() -> dict[str, Any]:
        made = await items.create(qid, items=[{"item_type": "RUN", "run_id": str(r.id)} for r in runs])
        waiting = [i async for i in items.list(qid, status="needs_my_review", page_size=2)]  # pages of two
        first = waiting[0]
        client.create_feedback(first.run_id, key="correct", score=1, comment="right tool, right args")
        await items.create_status(first.id, status="completed")
        return {
            "made": made,
            "waiting": waiting,
            "left": (await items.retrieve_count(qid, status="needs_my_review")).count,
            "done": [i async for i in items.list(qid, status="archived")],
            "others": [i async for i in items.list(qid, status="needs_others_review")],
        }

    got = asyncio.run(review())
    assert [i.run_id for i in got["made"].items] == [str(r.id) for r in runs]
    assert [i.run_id for i in got["waiting"]] == [str(r.id) for r in runs]
    assert got["left"] == len(runs) - 1 and [i.run_id for i in got["done"]] == [str(runs[0].id)]
    assert got["others"] == []  # one reviewer per workspace
    assert got["done"][0].last_reviewed_time is not None
    client.flush()
    (fb,) = [f for f in client.list_feedback(run_ids=[runs[0].id]) if f.key == "correct"]
    assert fb.score == 1

    async def clear() -> int | None:
        await items.delete_all(qid, item_ids=[got["waiting"][-1].id])
        return (await items.retrieve_count(qid, status="needs_my_review")).count

    assert asyncio.run(clear()) == len(runs) - 2
    api = httpx.Client(base_url=live_server.langsmith_url)
    bad = api.get(f"/platform/annotation-queues/{qid}/items", params={"status": "someday"})
    assert bad.status_code == 400 and "status" in bad.json()["detail"]
    cursor = api.get(f"/platform/annotation-queues/{qid}/items", params={"status": "archived", "cursor": "eA"})
    assert cursor.status_code == 400 and "cursor" in cursor.json()["detail"]
    missing = api.post(
        f"/platform/annotation-queues/{uuid.uuid4()}/items", json={"items": [{"run_id": str(runs[0].id)}]}
    )
    assert missing.status_code == 404
