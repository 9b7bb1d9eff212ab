"""Acceptance: LangSmith's v2 read API through the newest SDK's own resources, unmodified — ``client.runs``
(``query_v2``, ``retrieve_v2``, ``get_url``, ``streaming``), ``client.traces`` and ``client.threads`` — over the
projects the traced apps wrote (apps/traced_chains.py in the SDK's default mode; apps/threaded.py: three
conversations of four turns, the last turn of the first one failing). v1 ``list_runs`` is the oracle where both
answer the same question.

The sync ``Client`` hands out the generated *async* resources, so each test runs its calls in one event loop.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from .helpers import KNOWN_CLIENT_WARNINGS, by_trace

pytestmark = pytest.mark.filterwarnings(*KNOWN_CLIENT_WARNINGS)

MODE = "sdk_default"
SINCE = datetime.now(UTC) - timedelta(hours=2)
ALL = ["ID", "NAME", "RUN_TYPE", "STATUS", "START_TIME", "END_TIME", "INPUTS", "OUTPUTS", "PARENT_RUN_IDS",
       "PROJECT_ID", "TRACE_ID", "DOTTED_ORDER", "ERROR", "TAGS", "EXTRA", "FEEDBACK_STATS", "IS_ROOT",
       "TOTAL_TOKENS", "METADATA", "LATENCY_SECONDS"]  # fmt: skip


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def project_id(client, traced, name: str) -> str:
    return str(client.read_project(project_name=traced.project(name)).id)


async def collect(pager) -> list[Any]:
    return [item async for item in pager]


def test_info_lets_every_resource_through_without_a_version_warning(client, caplog):
    with caplog.at_level(logging.WARNING, logger="langsmith"):
        for resource in ("runs", "traces", "threads", "datasets", "evaluators", "annotation_queues"):
            getattr(client, resource)
    assert not [r.message for r in caplog.records if "older than the minimum" in r.getMessage()]
    from langsmith._internal._v2_migration_utils import QueryBackend, get_query_backend

    assert get_query_backend(client.info.instance_flags) == QueryBackend.DUAL


def test_runs_query_pages_through_the_project_as_list_runs_sees_it(traced, client):
    traced.result(MODE)
    pid = project_id(client, traced, MODE)
    v1 = {str(r.id): r for r in client.list_runs(project_name=traced.project(MODE))}

    async def go():
        first = await client.runs.query_v2(project_ids=[pid], min_start_time=SINCE, page_size=3, selects=ALL)
        every = await collect(client.runs.query_v2(project_ids=[pid], min_start_time=SINCE, page_size=3, selects=ALL))
        return first, every

    first, every = run(go())
    assert len(first.items) == 3 and first.next_cursor
    assert sorted(r.id for r in every) == sorted(v1) and len(every) == len(v1) > 3
    for r in every:
        old = v1[r.id]
        assert r.name == old.name and r.run_type == old.run_type.upper() and r.status == old.status.upper()
        assert r.project_id == str(old.session_id) and r.trace_id == str(old.trace_id)
        assert r.is_root == (old.parent_run_id is None)
        assert (r.parent_run_ids or [None])[-1] == (str(old.parent_run_id) if old.parent_run_id else None)
        assert r.inputs == old.inputs and r.outputs == old.outputs and r.error == old.error
        assert r.dotted_order == old.dotted_order and r.tags == old.tags
        assert r.metadata == (old.extra or {}).get("metadata")
    starts = [r.start_time for r in every]
    assert starts == sorted(starts, reverse=True)  # newest first, across pages


def test_runs_query_filters_agree_with_v1(traced, client):
    result = traced.result(MODE)
    pid = project_id(client, traced, MODE)
    name = traced.project(MODE)
    trace_filter = 'and(eq(feedback_key, "user_score"), eq(feedback_score, 1))'

    async def go():
        def ids(**kw):
            return collect(client.runs.query_v2(project_ids=[pid], min_start_time=SINCE, page_size=2, **kw))

        return {
            "llm": await ids(run_type="LLM"),
            "ok_roots": await ids(is_root=True, has_error=False),
            "filter": await ids(filter='eq(name, "ChatOpenAI")'),
            "trace_filter": await ids(trace_filter=trace_filter),
            "tree_filter": await ids(is_root=True, tree_filter='eq(name, "format_report")'),
            "window": await ids(max_start_time=SINCE),
        }

    got = {k: sorted(r.id for r in v) for k, v in run(go()).items()}

    def v1(**kw):
        return sorted(str(r.id) for r in client.list_runs(project_name=name, **kw))

    assert got["llm"] == v1(run_type="llm") and len(got["llm"]) == 4
    assert (
        got["ok_roots"]
        == v1(is_root=True, error=False)
        == sorted(result["roots"][c] for c in ("functions", "tools", "stream"))
    )
    assert got["filter"] == v1(filter='eq(name, "ChatOpenAI")')
    assert got["trace_filter"] == v1(trace_filter=trace_filter)
    assert set(got["trace_filter"]) == {str(r.id) for r in by_trace(traced.runs(MODE))[result["roots"]["functions"]]}
    assert got["tree_filter"] == [result["roots"]["tools"]]  # the tree of the one trace with format_report
    assert got["window"] == []  # nothing started two hours ago


def test_selects_shape_the_answer(traced, client):
    result = traced.result(MODE)
    pid = project_id(client, traced, MODE)
    root = result["roots"]["functions"]

    async def go():
        bare = await client.runs.query_v2(project_ids=[pid], ids=[root])
        one = await client.runs.retrieve_v2(root, project_id=pid, selects=["NAME", "OUTPUTS", "FEEDBACK_STATS"])
        url = await client.runs.get_url(root, project_id=pid, trace_id=root)
        return bare, one, url

    bare, one, url = run(go())
    (only,) = bare.items
    assert only.id == root and only.name is None and only.inputs is None  # no selects: the id alone
    assert one.name == "functions-chain" and one.outputs == {"report": "Paris in celsius"}
    assert one.feedback_stats["user_score"].n == 1 and one.feedback_stats["user_score"].avg == 1.0
    assert one.inputs is None and one.start_time is None
    assert url.url.endswith(f"/runs/{root}")
    page = httpx.get(url.url)
    assert page.status_code == 200 and "functions-chain" in page.text


def test_streaming_query_yields_the_same_runs(traced, client):
    traced.result(MODE)
    pid = project_id(client, traced, MODE)

    async def go():
        kw: dict[str, Any] = {"project_ids": [pid], "min_start_time": SINCE, "page_size": 4, "selects": ["NAME"]}
        streamed = [r async for r in client.runs.streaming.query_v2_items(**kw)]
        paged = await collect(client.runs.query_v2(**kw))
        return streamed, paged

    streamed, paged = run(go())
    assert [(r.id, r.name) for r in streamed] == [(r.id, r.name) for r in paged] and len(paged) > 4


def test_traces_query_and_a_traces_runs(traced, client):
    result = traced.result(MODE)
    pid = project_id(client, traced, MODE)
    tools = result["roots"]["tools"]

    async def go():
        traces = await collect(
            client.traces.query(project_id=pid, min_start_time=SINCE, page_size=2, selects=["NAME", "TOTAL_TOKENS"])
        )
        runs = await client.traces.list_runs(tools, project_id=pid, selects=["NAME", "PARENT_RUN_IDS"])
        llm_only = await client.traces.list_runs(tools, project_id=pid, filter='eq(run_type, "llm")', selects=["NAME"])
        return traces, runs, llm_only

    traces, runs, llm_only = run(go())
    assert sorted(t.root_run.id for t in traces) == sorted(result["roots"].values())
    assert {t.root_run.name for t in traces} == {"functions-chain", "tools-chain", "error-chain", "stream-chain"}
    assert all(t.trace_aggregates is not None for t in traces)
    names = [r.name for r in runs.items]
    assert names[0] == "tools-chain" and sorted(names) == sorted(r.name for r in by_trace(traced.runs(MODE))[tools])
    assert [r.name for r in llm_only.items] == ["ChatOpenAI"]


def test_threads_and_their_traces(traced, client):
    threads = traced.result("threaded")["threads"]
    pid = project_id(client, traced, "threaded")
    first_thread = next(iter(threads))

    async def go():
        listed = await collect(client.threads.query(project_id=pid, min_start_time=SINCE, page_size=2))
        turns = await collect(
            client.threads.list_traces(
                first_thread, project_id=pid, page_size=3, selects=["TRACE_ID", "TURN_NUMBER", "INPUTS", "ERROR"]
            )
        )
        failed = await collect(client.threads.query(project_id=pid, min_start_time=SINCE, filter='eq(status, "error")'))
        return listed, turns, failed

    listed, turns, failed = run(go())
    assert sorted(t.thread_id for t in listed) == sorted(threads)
    for t in listed:
        ids = threads[t.thread_id]
        assert t.count == 4 and t.first_trace_id == ids[0] and t.last_trace_id == ids[-1]
        assert t.num_errored_turns == (1 if t.thread_id == first_thread else 0)
        assert t.total_tokens == 20  # four turns of five tokens, counted on the model runs
    assert [t.trace_id for t in turns] == threads[first_thread]
    assert [t.turn_number for t in turns] == [1, 2, 3, 4]
    assert turns[0].inputs == {"question": "question 0 of thread 0", "fail": False}
    assert turns[-1].error and "gave up" in turns[-1].error
    assert [t.thread_id for t in failed] == [first_thread]


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/api/v2/runs/query", {"project_ids": ["{pid}"], "cursor": "bm90LWEtY3Vyc29y"}, 400, "cursor"),
        ("/api/v2/runs/query", {"project_ids": ["{pid}"], "selects": ["ID", "COLOUR"]}, 400, "selects"),
        ("/api/v2/runs/query", {"selects": ["ID"]}, 400, "project_ids"),
        ("/api/v2/runs/query", {"project_ids": ["{pid}"], "filter": "eq(name"}, 400, "filter"),
        ("/api/v2/runs/query", {"project_ids": ["{pid}"], "sem_filter": "angry users"}, 501, "sem_filter"),
        ("/api/v2/runs/query", {"project_ids": ["{pid}"], "page_size": 0}, 422, "page_size"),
        (
            "/api/v2/runs/query",
            {"project_ids": ["{pid}"], "min_feedback_modified_at": "2026-01-01T00:00:00Z"},
            400,
            "min_feedback_modified_at",
        ),
        ("/api/v2/traces/query", {"project_id": "{pid}", "ai_search": "slow traces"}, 501, "ai_search"),
        ("/api/v2/threads/query", {"project_id": "{pid}", "thread_filter": "gt(count, 2)"}, 501, "thread_filter"),
    ],
)
def test_bad_queries_are_refused_by_name(traced, client, live_server, path, body, status, field):
    traced.result(MODE)
    pid = project_id(client, traced, MODE)
    filled = {k: ([x.format(pid=pid) for x in v] if isinstance(v, list) else v) for k, v in body.items()}
    filled = {k: (v.format(pid=pid) if isinstance(v, str) else v) for k, v in filled.items()}
    response = httpx.post(live_server.url + path, json=filled)
    assert response.status_code == status, response.text
    assert field in response.json()["detail"]


def test_the_readme_v2_example_runs_without_a_warning(traced, client, caplog):
    """README "Pick runs": the v2 block, run as written (on the traced project), warns of nothing."""
    traced.result(MODE)
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = next(b for b in readme.split("```python")[1:] if "query_v2" in b).split("```")[0]
    code = block.replace('"my-app"', repr(traced.project(MODE)))
    scope: dict[str, Any] = {"client": client}
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, logger="langsmith"):
        warnings.simplefilter("always")
        exec(compile(code, "README.md", "exec"), scope)
    assert [str(w.message) for w in caught] == []
    assert [r.getMessage() for r in caplog.records] == []
    functions_tree = by_trace(traced.runs(MODE))[traced.result(MODE)["roots"]["functions"]]
    llm = [r for r in functions_tree if r.run_type == "llm"]
    assert [r.id for r in scope["runs"]] == [str(r.id) for r in llm]  # the one rated trace's model call


def test_subtree_usage_sums_a_runs_descendants(traced, client):
    threads = traced.result("threaded")["threads"]
    pid = project_id(client, traced, "threaded")
    kw: dict[str, Any] = {"project_ids": [pid], "min_start_time": SINCE, "selects": ["TOTAL_TOKENS", "NAME"]}

    async def go():
        own = await collect(client.runs.query_v2(is_root=True, **kw))
        summed = await collect(client.runs.query_v2(is_root=True, include_subtree_usage=True, **kw))
        models = await collect(client.runs.query_v2(run_type="LLM", include_subtree_usage=True, **kw))
        return own, summed, models

    own, summed, models = run(go())
    assert len(summed) == sum(len(ids) for ids in threads.values())
    assert {r.total_tokens for r in own} == {None}  # a turn reports no usage of its own
    assert {r.total_tokens for r in summed} == {5}  # its model call's five tokens
    assert {r.total_tokens for r in models} == {5}  # a run with nothing below keeps its own
