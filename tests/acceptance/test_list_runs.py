"""Acceptance 2: ``Client.list_runs`` selections, filter strings and pagination, through the unmodified SDK.

The project is the one apps/traced_chains.py traced in the SDK's default mode: four traces (functions,
tools, error, stream), with ``user_score`` feedback 1 on the functions root and 0 on the tools root (given
by the app itself with ``create_feedback(..., trace_id=...)`` and flushed). Pagination uses
apps/many_runs.py: three ``@traceable`` traces of 1 + 50 runs, more than the server's page of 100.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from .helpers import EXPECTED_TREES, KNOWN_CLIENT_WARNINGS, by_trace, named, trace_of

pytestmark = pytest.mark.filterwarnings(*KNOWN_CLIENT_WARNINGS)

MODE = "sdk_default"


def ids(runs) -> list[str]:
    return sorted(str(r.id) for r in runs)


def test_roots_of_successful_traces(traced, client):
    result = traced.result(MODE)
    project = traced.project(MODE)
    roots = list(client.list_runs(project_name=project, execution_order=1, error=False))
    expected = sorted(result["roots"][c] for c in ("functions", "tools", "stream"))
    assert ids(roots) == expected
    assert {r.name for r in roots} == {"functions-chain", "tools-chain", "stream-chain"}
    assert all(r.parent_run_id is None and r.status == "success" for r in roots)
    # The same with the SDK's own parameter, and the complement.
    assert ids(client.list_runs(project_name=project, is_root=True, error=False)) == expected
    failed = list(client.list_runs(project_name=project, is_root=True, error=True))
    assert ids(failed) == [result["roots"]["error"]]


def test_llm_runs(traced, client):
    result = traced.result(MODE)
    llm = list(client.list_runs(project_name=traced.project(MODE), run_type="llm"))
    assert len(llm) == len(EXPECTED_TREES)
    assert {r.name for r in llm} == {"ChatOpenAI"} and {r.run_type for r in llm} == {"llm"}
    assert sorted(str(r.trace_id) for r in llm) == sorted(result["roots"].values())
    assert ids(llm) == ids(r for r in traced.runs(MODE) if r.run_type == "llm")


def _any(run) -> bool:
    return True


@pytest.mark.parametrize(
    ("filter_string", "chains", "keep"),
    [
        (
            'and(eq(run_type, "llm"), eq(name, "ChatOpenAI"))',
            ["functions", "tools", "error", "stream"],
            lambda r: r.name == "ChatOpenAI",
        ),
        ('has(tags, "chain:functions")', ["functions"], _any),
        ('has(metadata, \'{"variant": "tools"}\')', ["tools"], _any),
        (
            'and(has(tags, "acceptance"), eq(status, "error"))',
            ["error"],
            lambda r: r.name in ("error-chain", "explode"),
        ),
        (
            'and(eq(run_type, "parser"), neq(name, "StrOutputParser"))',
            ["functions", "tools"],
            lambda r: r.run_type == "parser",
        ),
    ],
    ids=["llm-and-name", "has-tag", "has-metadata", "tag-and-status", "type-and-neq"],
)
def test_filter_strings(traced, client, filter_string, chains, keep):
    """Each filter returns exactly the runs of the recorded trees it should (``keep`` within ``chains``)."""
    result = traced.result(MODE)
    runs = traced.runs(MODE)
    wanted = [r for chain in chains for r in trace_of(runs, result["roots"][chain]) if keep(r)]
    got = list(client.list_runs(project_name=traced.project(MODE), filter=filter_string))
    assert ids(got) == ids(wanted)


def test_latency_filter(traced, client):
    """``gt(latency, s)`` / ``lt(latency, s)`` split the runs at a threshold between two measured latencies."""
    runs = traced.runs(MODE)
    latency = {str(r.id): (r.end_time - r.start_time).total_seconds() for r in runs}
    values = sorted(set(latency.values()))
    assert len(values) > 2
    cut = (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2  # half a microsecond off any run
    project = traced.project(MODE)
    slow = list(client.list_runs(project_name=project, filter=f"gt(latency, {cut:.7f})"))
    fast = list(client.list_runs(project_name=project, filter=f"lt(latency, {cut:.7f})"))
    assert ids(slow) == sorted(i for i, s in latency.items() if s > cut)
    assert ids(fast) == sorted(i for i, s in latency.items() if s < cut)
    assert len(slow) + len(fast) == len(runs)
    roots = list(client.list_runs(project_name=project, is_root=True, filter="gt(latency, 0.000001)"))
    assert len(roots) == len(EXPECTED_TREES)


@pytest.mark.parametrize(("score", "chain"), [(1, "functions"), (0, "tools")])
def test_feedback_filter_on_roots_and_trace_filter_on_llm_runs(traced, client, score, chain):
    result = traced.result(MODE)
    project = traced.project(MODE)
    feedback = f'and(eq(feedback_key, "user_score"), eq(feedback_score, {score}))'
    roots = list(client.list_runs(project_name=project, is_root=True, filter=feedback))
    assert ids(roots) == [result["roots"][chain]]
    llm = list(client.list_runs(project_name=project, run_type="llm", trace_filter=feedback))
    assert ids(llm) == [str(named(trace_of(traced.runs(MODE), result["roots"][chain]), "ChatOpenAI").id)]
    # trace_filter alone selects every run of that trace
    whole = list(client.list_runs(project_name=project, trace_filter=feedback))
    assert ids(whole) == ids(trace_of(traced.runs(MODE), result["roots"][chain]))


def test_pagination_returns_each_run_once(traced, live_server):
    """153 runs come back over two pages of /runs/query (cursor in the body), each run exactly once,
    newest first."""
    from .conftest import sdk_client

    result = traced.result("many_runs")
    client = sdk_client(live_server)
    queries = []
    client.session.hooks["response"].append(
        lambda response, *a, **k: (
            queries.append(urlsplit(response.request.url).path)
            if response.request.url.endswith("/runs/query")
            else None
        )
    )
    runs = list(client.list_runs(project_name=traced.project("many_runs")))
    assert len(queries) == 2
    run_ids = [str(r.id) for r in runs]
    assert len(run_ids) == len(set(run_ids)) == 3 * (1 + 50)
    starts = [(r.start_time, str(r.id)) for r in runs]
    assert starts == sorted(starts, reverse=True)
    traces = by_trace(runs)
    assert sorted(traces) == sorted(result["roots"])
    for root_id, trace in traces.items():
        root = named(trace, "batch-job")
        assert str(root.id) == root_id and root.outputs["total"] == sum(i * i for i in range(50))
        children = [r for r in trace if r is not root]
        assert {(r.name, r.run_type, str(r.parent_run_id)) for r in children} == {("lookup", "tool", root_id)}
        assert sorted(r.outputs["square"] for r in children) == sorted(i * i for i in range(50))
    roots = list(client.list_runs(project_name=traced.project("many_runs"), is_root=True))
    assert ids(roots) == sorted(result["roots"])


def test_a_limit_over_the_page_size_pages_through(live_server, project_name):
    """``list_runs(limit=N)`` sends N as the page size: a page holds at most 1000 runs and its cursor leads on,
    so N over 1000 reads N runs (it used to be a 422)."""
    from datetime import timedelta

    import httpx

    from tests.server.support import T0, new_run

    from .conftest import sdk_client

    posts = [new_run(project_name, start=T0 + timedelta(milliseconds=i)) for i in range(1100)]
    with httpx.Client(base_url=live_server.langsmith_url, timeout=60) as api:
        for i in range(0, len(posts), 500):
            assert api.post("/runs/batch", json={"post": posts[i : i + 500]}).status_code == 202
    client = sdk_client(live_server)
    runs = list(client.list_runs(project_name=project_name, limit=1050))
    assert len(runs) == len({r.id for r in runs}) == 1050
    assert len(list(client.list_runs(project_name=project_name, limit=5000))) == 1100


def test_the_sdks_selection_handed_to_export_is_the_same_dataset(traced, client, live_server, tmp_path_factory):
    """The README's path from an SDK selection to a dataset: the selected runs, written one JSON per line, exported
    with ``tracetune export --input`` give the same records as the same selection exported from the store."""
    from tests.dataset_support import smollm2_target
    from tracetune.convert.dataset_builder import ExportOptions, Selection
    from tracetune.convert.export import export_dataset, export_runs

    roots = traced.result(MODE)["roots"]  # waits for the app
    project, chosen = traced.project(MODE), 'and(eq(feedback_key, "user_score"), eq(feedback_score, 1))'
    runs = list(client.list_runs(project_name=project, run_type="llm", trace_filter=chosen))
    assert runs and {str(r.trace_id) for r in runs} == {roots["functions"]}
    out = tmp_path_factory.mktemp("sdk-export")
    (out / "runs.jsonl").write_text("".join(run.model_dump_json() + "\n" for run in runs))
    target = smollm2_target(tmp_path_factory)
    from_file = export_runs(out / "runs.jsonl", ExportOptions(), out=out / "file.jsonl", target=target)
    ws = live_server.store.workspaces.ensure("default").id
    selection = Selection(project=project, trace_filter=chosen)
    export_dataset(live_server.store, ws, selection, ExportOptions(), out=out / "store.jsonl", target=target)
    assert from_file.summary["examples"] >= 1 and from_file.summary["skipped"] == {}
    assert (out / "file.jsonl").read_text() == (out / "store.jsonl").read_text()
