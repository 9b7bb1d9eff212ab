"""The SDK's non-batch path: ``Client.create_run(parent_run_id=…)`` sends neither ``trace_id`` nor
``dotted_order`` (``POST /runs``). The server derives both from the parent, in whichever order parent and
child arrive, so the SDK's own reads (which require ``Run.dotted_order`` to be a string) keep working."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from .conftest import sdk_client
from .helpers import KNOWN_CLIENT_WARNINGS

pytestmark = pytest.mark.filterwarnings(*KNOWN_CLIENT_WARNINGS)
T0 = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)


def _stamp(at: datetime, run_id: uuid.UUID) -> str:
    return at.strftime("%Y%m%dT%H%M%S%fZ") + str(run_id)


def test_children_created_one_by_one_get_their_trace_and_dotted_order(live_server, project_name: str) -> None:
    client = sdk_client(live_server, auto_batch_tracing=False)
    root, child, grandchild, late_parent, orphan_child = (uuid.uuid4() for _ in range(5))
    t = [T0 + timedelta(seconds=i) for i in range(5)]

    def create(run_id: uuid.UUID, name: str, at: datetime, parent: uuid.UUID | None) -> None:
        client.create_run(
            name, {"q": name}, "chain", id=run_id, parent_run_id=parent, start_time=at, project_name=project_name
        )

    create(root, "root", t[0], None)
    create(child, "child", t[1], root)
    # a grandchild whose parent arrives after it, and that parent's own parent later still
    create(orphan_child, "grandchild-first", t[4], late_parent)
    create(grandchild, "grandchild", t[2], child)
    create(late_parent, "late-parent", t[3], grandchild)
    client.update_run(child, end_time=t[1] + timedelta(milliseconds=5), outputs={"a": 1})

    runs = {r.id: r for r in client.list_runs(project_name=project_name)}  # raised a ValidationError before
    assert set(runs) == {root, child, grandchild, late_parent, orphan_child}
    expected = {
        root: _stamp(t[0], root),
        child: f"{_stamp(t[0], root)}.{_stamp(t[1], child)}",
        grandchild: f"{_stamp(t[0], root)}.{_stamp(t[1], child)}.{_stamp(t[2], grandchild)}",
    }
    expected[late_parent] = f"{expected[grandchild]}.{_stamp(t[3], late_parent)}"
    expected[orphan_child] = f"{expected[late_parent]}.{_stamp(t[4], orphan_child)}"
    assert {rid: r.dotted_order for rid, r in runs.items()} == expected
    assert {r.trace_id for r in runs.values()} == {root}
    assert runs[orphan_child].parent_run_ids == [root, child, grandchild, late_parent]

    read = client.read_run(child, load_child_runs=True)
    assert read.outputs == {"a": 1} and read.dotted_order == expected[child]
    assert [c.id for c in read.child_runs] == [grandchild]
    assert [c.id for c in read.child_runs[0].child_runs] == [late_parent]
    roots = list(client.list_runs(project_name=project_name, is_root=True))
    assert [r.id for r in roots] == [root]
    in_trace = list(client.list_runs(project_name=project_name, trace_id=root))
    assert len(in_trace) == 5


def test_a_child_whose_parent_never_arrives_still_reads(live_server, project_name: str) -> None:
    client = sdk_client(live_server, auto_batch_tracing=False)
    lost, child = uuid.uuid4(), uuid.uuid4()
    client.create_run("alone", {"q": 1}, "llm", id=child, parent_run_id=lost, start_time=T0, project_name=project_name)
    [run] = list(client.list_runs(project_name=project_name))
    assert run.parent_run_id == lost
    assert run.dotted_order == _stamp(T0, child)  # its own segment until the parent comes
