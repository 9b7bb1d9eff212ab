"""Ingest through the API, on both dialects: real captured SDK requests replayed, any arrival order giving the
same runs, projects made on first sight, feedback and attachments in multipart, and the read side the
LangSmith SDK relies on (flat LLM runs, sessions, cursor pages, roots)."""

from __future__ import annotations

import json
import random
import uuid
from datetime import timedelta
from typing import Any

import httpx
import zstandard

from tests.fixtures import capture_parts, fresh_ids, load, multipart_body, project_17, raw_body
from tests.server.support import T0, child_of, detail_of, get_run, iso, new_run, project_id, query_all

# Run ids of the captured traces in ls_zstd_traces.json (each replay maps them to fresh ones).
PLAIN_ROOT = "01a1fd4e-fe12-7607-a250-34b55229be01"
PLAIN_LLM = "01a1fd4e-fe76-709b-a454-39018d5fd50a"
STREAM_ROOT = "01a1fd4e-ff0b-7248-9a6e-7e93e197dd88"
STREAM_LLM = "01a1fd4e-ff0c-71f5-a5cf-9cd1d95336f5"
ERROR_ROOT = "01a1fd4e-ff48-72ae-a28a-188360c987fd"
BOOM = "01a1fd4e-ff4d-7664-959b-e3c3a406235e"
ROOTS = (PLAIN_ROOT, STREAM_ROOT, ERROR_ROOT)
N_RUNS = 14  # 5 + 4 + 5 runs


def _post_multipart(api: httpx.Client, parts: list, *, zstd: bool = False) -> dict[str, Any]:
    body, ctype = multipart_body(parts)
    headers = {"content-type": ctype}
    if zstd:  # as the SDK does: the whole body, closing boundary included, in one zstd stream
        body = zstandard.ZstdCompressor().compress(body)
        headers["content-encoding"] = "zstd"
    r = api.post("/runs/multipart", content=body, headers=headers)
    assert r.status_code == 202, r.text
    return r.json()  # type: ignore[no-any-return]


def _operations(parts: list) -> list[list]:
    """Parts grouped by operation (``post.<id>`` with its sub-parts), in first-seen order."""
    ops: dict[str, list] = {}
    for name, value in parts:
        ops.setdefault(".".join(name.split(".")[:2]), []).append((name, value))
    return list(ops.values())


def _normalised(api: httpx.Client, mapping: dict[str, str], project: str) -> dict[str, Any]:
    """Every replayed run as GET /runs/{id} returns it, with ids and project mapped back to the captured ones
    (so that two replays into different projects compare equal)."""
    inverse = {new: old for old, new in mapping.items()}
    out = {}
    for old, new in mapping.items():
        r = api.get(f"/runs/{new}")
        if r.status_code == 404:
            continue  # not a run id (a message id, a feedback id…)
        view = r.json()
        view.pop("session_id")
        text = json.dumps(view)
        for new_id, old_id in inverse.items():
            text = text.replace(new_id, old_id)
        out[old] = json.loads(text.replace(json.dumps(project), '"P"'))
    return out


# -- replays of real SDK requests ----------------------------------------------------------------------------


def test_zstd_capture_posts_and_patches_in_one_request(api: httpx.Client, project_name: str) -> None:
    """One zstd request carrying posts *and* patches (not merged) of three traces, plus a feedback part."""
    ids: dict[str, str] = {}
    parts = fresh_ids(capture_parts(), ids, project_name)
    feedback = fresh_ids(capture_parts(key="feedback_parts"), ids, project_name)
    result = _post_multipart(api, parts + feedback, zstd=True)
    assert result == {"status": "accepted", "posts": N_RUNS, "patches": N_RUNS, "feedback": 1, "attachments": 0}

    pid = project_id(api, project_name)
    assert pid is not None
    runs = query_all(api, {"session": [pid], "limit": 5})
    assert len(runs) == N_RUNS
    assert {r["id"] for r in runs} == {ids[k] for k in ids if api.get(f"/runs/{ids[k]}").status_code == 200}
    by_id = {r["id"]: r for r in runs}
    for run in runs:
        assert run["end_time"] is not None, run["name"]
        assert run["session_id"] == pid
        in_error_trace = run["trace_id"] == ids[ERROR_ROOT]
        failed = run["id"] in (ids[ERROR_ROOT], ids[BOOM])
        assert run["status"] == ("error" if in_error_trace and failed else "success"), run["name"]
    assert by_id[ids[BOOM]]["name"] == "boom"
    assert by_id[ids[BOOM]]["error"].startswith("ValueError('boom in lambda')Traceback")
    assert by_id[ids[BOOM]]["outputs"] is None  # an errored run's patch has no outputs part

    [fb] = [v for n, v in feedback]
    stored = api.get(f"/feedback/{fb['id']}").json()
    assert (stored["key"], stored["score"], stored["comment"]) == ("user_score", 1.0, "good")
    assert stored["run_id"] == fb["run_id"]  # a run this request did not carry: accepted all the same


def test_llm_run_is_returned_flat_with_its_tree_fields(api: httpx.Client, project_name: str) -> None:
    ids: dict[str, str] = {}
    parts = fresh_ids(capture_parts(), ids, project_name)
    _post_multipart(api, parts, zstd=True)
    sent = dict(parts)
    llm = get_run(api, ids[PLAIN_LLM])

    # wire-protocols §3.4: one batch of messages / generations is unwrapped
    assert sent[f"patch.{ids[PLAIN_LLM]}.inputs"]["messages"][0][0]["kwargs"]["type"] == "system"
    messages = llm["inputs"]["messages"]
    assert [m["id"][-1] for m in messages] == ["SystemMessage", "HumanMessage"]
    assert messages[1]["kwargs"]["content"] == "What is the weather in Paris?"
    [generation] = llm["outputs"]["generations"]
    assert generation["text"] == "Hello from the fake model."
    assert generation["message"]["kwargs"]["type"] == "ai"
    assert llm["outputs"]["llm_output"]["token_usage"]["total_tokens"] == 19

    main = sent[f"patch.{ids[PLAIN_LLM]}"]
    assert llm["id"] == ids[PLAIN_LLM]
    assert llm["run_type"] == "llm"
    assert llm["trace_id"] == ids[PLAIN_ROOT]
    assert llm["parent_run_id"] == ids[PLAIN_ROOT]
    assert llm["parent_run_ids"] == [ids[PLAIN_ROOT]]
    assert llm["dotted_order"] == main["dotted_order"]
    assert llm["dotted_order"].startswith(get_run(api, ids[PLAIN_ROOT])["dotted_order"] + ".")
    assert llm["status"] == "success"
    assert llm["error"] is None
    assert llm["session_id"] == project_id(api, project_name)
    assert (llm["prompt_tokens"], llm["completion_tokens"], llm["total_tokens"]) == (12, 7, 19)
    assert sorted(llm["tags"]) == ["seq:step:2", "variant:plain"]
    assert llm["extra"]["metadata"]["ls_model_name"] == "gpt-4o-mini"
    assert llm["serialized"]["name"] == "ChatOpenAI"

    # the same flat shape through /runs/query (what list_runs reads)
    [queried] = api.post("/runs/query", json={"id": [ids[PLAIN_LLM]]}).json()["runs"]
    assert queried["inputs"] == llm["inputs"]
    assert queried["outputs"] == llm["outputs"]

    # the root lists its children (read_run(load_child_runs=True) builds the tree from them)
    root = get_run(api, ids[PLAIN_ROOT])
    assert root["parent_run_id"] is None
    assert len(root["child_run_ids"]) == 4
    assert ids[PLAIN_LLM] in root["child_run_ids"]

    # the error, a string (the SDK's Run model refuses anything else), on the failing run and its ancestors
    failed_root = get_run(api, ids[ERROR_ROOT])
    assert isinstance(failed_root["error"], str)
    assert "boom in lambda" in failed_root["error"]


def test_streamed_llm_run_has_its_first_token_time(api: httpx.Client, project_name: str) -> None:
    ids: dict[str, str] = {}
    parts = fresh_ids(capture_parts(), ids, project_name)
    _post_multipart(api, parts, zstd=True)
    events = dict(parts)[f"patch.{ids[STREAM_LLM]}.events"]
    [token_event] = [e for e in events if e["name"] == "new_token"]
    run = get_run(api, ids[STREAM_LLM])
    assert run["first_token_time"] == token_event["time"]
    assert run["events"] == events


def test_raw_capture_bodies_replay_byte_for_byte(api: httpx.Client) -> None:
    """The two raw request bodies of ls-raw (posts, then posts merged with their end plus two patches)."""
    project, ids = project_17(), {}
    for n in (1, 2):
        body, ctype = raw_body(n, project, ids)
        r = api.post("/runs/multipart", content=body, headers={"content-type": ctype})
        assert r.status_code == 202, r.text
    expected_parts = load("ls_raw.json")["requests"]
    run_ids = {ids[name.split(".")[1]] for req in expected_parts for name in req["parts"]}
    assert len(run_ids) == 5
    runs = query_all(api, {"session": [project_id(api, project)]})
    assert {r["id"] for r in runs} == run_ids
    assert all(r["status"] == "success" and r["end_time"] for r in runs), [(r["name"], r["status"]) for r in runs]
    [root] = [r for r in runs if r["parent_run_id"] is None]
    assert root["name"] == "RunnableSequence"
    assert root["inputs"] == {"city": "Paris"}
    assert root["outputs"]  # from the patch in the second body
    [llm] = [r for r in runs if r["run_type"] == "llm"]
    assert isinstance(llm["inputs"]["messages"][0], dict)  # flat


def test_raw_capture_bodies_in_reverse_order_give_the_same_runs(api: httpx.Client) -> None:
    """Patches before their posts, posts (with ``outputs: {}``) after the patch that closed the run: the
    stored runs are the same as in arrival order, field for field."""
    results = []
    for order in ((1, 2), (2, 1), (1, 1, 2, 2, 1)):  # in order; reversed; duplicated
        project, ids = project_17(), {}
        for n in order:
            body, ctype = raw_body(n, project, ids)
            assert api.post("/runs/multipart", content=body, headers={"content-type": ctype}).status_code == 202
        results.append(_normalised(api, ids, project))
    assert len(results[0]) == 5
    assert results[1] == results[0]
    assert results[2] == results[0]


def test_zstd_capture_in_any_order_and_split_gives_the_same_runs(api: httpx.Client) -> None:
    ops = _operations(capture_parts())
    baseline_project, baseline_ids = f"proj-{uuid.uuid4().hex[:10]}", {}
    _post_multipart(api, fresh_ids([p for op in ops for p in op], baseline_ids, baseline_project))
    baseline = _normalised(api, baseline_ids, baseline_project)
    assert len(baseline) == N_RUNS

    rng = random.Random(7)
    shuffled = ops[:]
    rng.shuffle(shuffled)
    project, ids = f"proj-{uuid.uuid4().hex[:10]}", {}
    for chunk in (shuffled[:9], shuffled[9:20], shuffled[20:]):  # three requests, patches often first
        _post_multipart(api, fresh_ids([p for op in chunk for p in op], ids, project), zstd=True)
    assert _normalised(api, ids, project) == baseline


def test_batch_capture_with_feedback_before_its_run(api: httpx.Client, project_name: str) -> None:
    """ls-batch: /runs/batch (use_multipart_endpoint=false); the feedback arrives before its run."""
    ids: dict[str, str] = {}
    requests = fresh_ids(load("ls_batch.json")["requests"], ids, project_name)
    for req in requests:
        r = api.post(req["path"], json=req["json"])
        assert r.status_code in (200, 202), r.text
    fb = requests[1]["json"]
    runs = query_all(api, {"session": [project_id(api, project_name)]})
    assert len(runs) == 9
    assert all(r["status"] == "success" for r in runs)
    listed = api.get("/feedback", params={"run": fb["run_id"]}).json()
    assert [(f["id"], f["key"], f["score"]) for f in listed] == [(fb["id"], "user_score", 1.0)]
    assert get_run(api, fb["run_id"])["feedback_stats"] == {"user_score": {"n": 1, "avg": 1.0}}


def test_unbatched_capture_post_and_patch_routes(api: httpx.Client, project_name: str) -> None:
    """ls-nobatch: POST /runs when a run starts, PATCH /runs/{id} when it ends."""
    ids: dict[str, str] = {}
    for req in fresh_ids(load("ls_nobatch.json")["requests"], ids, project_name):
        r = api.request(req["method"], req["path"], json=req["json"])
        assert r.status_code == 202, r.text
        assert r.json()["posts" if req["method"] == "POST" else "patches"] == 1
    runs = query_all(api, {"session": [project_id(api, project_name)]})
    assert sorted(r["name"] for r in runs) == [
        "ChatOpenAI",
        "ChatPromptTemplate",
        "RunnableSequence",
        "StrOutputParser",
    ]
    assert all(r["status"] == "success" for r in runs)
    [llm] = [r for r in runs if r["run_type"] == "llm"]
    assert isinstance(llm["outputs"]["generations"][0], dict)


# -- order independence, one rule at a time ------------------------------------------------------------------


def test_patch_before_post(api: httpx.Client, project_name: str) -> None:
    run = new_run(project_name, outputs={})
    end = iso(T0 + timedelta(seconds=2))
    patch = {
        "id": run["id"],
        "trace_id": run["id"],
        "dotted_order": run["dotted_order"],
        "end_time": end,
        "outputs": {"answer": 42},
        "session_name": project_name,
        "session_id": None,
        "parent_run_id": None,
    }
    assert api.post("/runs/batch", json={"patch": [patch]}).status_code == 202
    early = get_run(api, run["id"])
    assert early["start_time"] == run["start_time"]  # read off the dotted order
    assert early["outputs"] == {"answer": 42}

    assert api.post("/runs/batch", json={"post": [run]}).status_code == 202
    got = get_run(api, run["id"])
    assert got["name"] == "chain"
    assert got["inputs"] == {"question": "q"}
    assert got["outputs"] == {"answer": 42}
    assert got["end_time"] == end
    assert got["status"] == "success"
    assert got["latency"] == 2.0
    assert got["session_id"] == project_id(api, project_name)


def test_patch_without_project_then_post_with_one(api: httpx.Client, project_name: str) -> None:
    run = new_run(project_name)
    patch = {
        "id": run["id"],
        "end_time": iso(T0 + timedelta(seconds=1)),
        "session_id": None,
        "dotted_order": run["dotted_order"],
    }
    assert api.patch(f"/runs/{run['id']}", json=patch).status_code == 202
    assert get_run(api, run["id"])["session_id"] is None
    assert api.post("/runs", json=run).status_code == 202
    assert get_run(api, run["id"])["session_id"] == project_id(api, project_name)


def test_post_after_patch_does_not_erase_it(api: httpx.Client, project_name: str) -> None:
    run = new_run(project_name)
    end = iso(T0 + timedelta(seconds=3))
    patch = {
        "id": run["id"],
        "end_time": end,
        "outputs": {"answer": "final"},
        "error": "E: it broke",
        "dotted_order": run["dotted_order"],
    }
    assert api.post("/runs/batch", json={"patch": [patch]}).status_code == 202
    late_posts = [
        {**run, "outputs": {}},  # the open run's post, late
        {**run, "outputs": {"answer": "stale"}, "end_time": iso(T0 + timedelta(seconds=9))},  # merged post
    ]
    for late in late_posts:
        assert api.post("/runs", json=late).status_code == 202
        got = get_run(api, run["id"])
        assert got["outputs"] == {"answer": "final"}
        assert got["end_time"] == end
        assert got["error"] == "E: it broke"
        assert got["status"] == "error"
        assert got["inputs"] == {"question": "q"}  # what the post brought is kept


def test_open_run_posted_with_empty_outputs(api: httpx.Client, project_name: str) -> None:
    run = new_run(project_name, outputs={})
    assert api.post("/runs/batch", json={"post": [run]}).status_code == 202
    got = get_run(api, run["id"])
    assert (got["status"], got["end_time"], got["outputs"]) == ("pending", None, None)
    assert api.patch(f"/runs/{run['id']}", json={"outputs": {"x": 1}, "end_time": iso(T0 + timedelta(1))}).is_success
    got = get_run(api, run["id"])
    assert (got["status"], got["outputs"]) == ("success", {"x": 1})


def test_closed_run_posted_with_empty_outputs_keeps_them(api: httpx.Client, project_name: str) -> None:
    run = new_run(project_name, outputs={}, end_time=iso(T0 + timedelta(seconds=1)))
    assert api.post("/runs", json=run).status_code == 202
    got = get_run(api, run["id"])
    assert (got["status"], got["outputs"]) == ("success", {})


def test_duplicate_posts_store_one_run_and_the_first_values(api: httpx.Client, project_name: str) -> None:
    run = new_run(project_name, name="first")
    for body in ({"post": [run]}, {"post": [run]}, {"post": [{**run, "name": "second", "inputs": {"q": 2}}]}):
        assert api.post("/runs/batch", json=body).status_code == 202
    runs = query_all(api, {"session": [project_id(api, project_name)]})
    assert [(r["id"], r["name"], r["inputs"]) for r in runs] == [(run["id"], "first", {"question": "q"})]


def test_post_and_patch_of_one_run_in_one_multipart_request(api: httpx.Client, project_name: str) -> None:
    run = new_run(project_name)
    rid = run["id"]
    main = {k: v for k, v in run.items() if k != "inputs"}
    parts = [
        (f"patch.{rid}", {"id": rid, "end_time": iso(T0 + timedelta(seconds=1)), "trace_id": rid}),
        (f"patch.{rid}.outputs", {"answer": "yes"}),
        (f"post.{rid}", main),
        (f"post.{rid}.inputs", {"question": "q"}),
        (f"post.{rid}.outputs", {}),
        (f"post.{rid}.events", [{"name": "start", "time": run["start_time"]}]),
    ]
    assert _post_multipart(api, parts)["patches"] == 1
    got = get_run(api, rid)
    assert (got["inputs"], got["outputs"], got["status"]) == ({"question": "q"}, {"answer": "yes"}, "success")
    assert got["events"] == [{"name": "start", "time": run["start_time"]}]


# -- projects, feedback, attachments -------------------------------------------------------------------------


def test_project_is_created_by_session_name_on_first_sight(api: httpx.Client, project_name: str) -> None:
    assert api.get("/sessions", params={"name": project_name}).json() == []
    run = new_run(project_name)
    assert api.post("/runs", json=run).status_code == 202
    [project] = api.get("/sessions", params={"name": project_name, "include_stats": "true"}).json()
    assert project["name"] == project_name
    assert project["id"] == get_run(api, run["id"])["session_id"]
    assert project["tenant_id"]
    assert "reference_dataset_id" in project  # the SDK's TracerSession requires the key
    assert project["run_count"] == 1
    assert api.get(f"/sessions/{project['id']}").json()["name"] == project_name


def test_run_without_a_project_lands_in_default(api: httpx.Client) -> None:
    run = new_run(None)
    assert api.post("/runs", json=run).status_code == 202
    assert get_run(api, run["id"])["session_id"] == project_id(api, "default")


def test_feedback_parts_in_multipart_land(api: httpx.Client, project_name: str) -> None:
    ids: dict[str, str] = {}
    parts = fresh_ids(capture_parts(), ids, project_name)
    [(name, fb)] = fresh_ids(capture_parts(key="feedback_parts"), ids, project_name)
    fb = {**fb, "run_id": ids[PLAIN_ROOT], "trace_id": ids[PLAIN_ROOT]}  # aimed at a run of this request
    second = {**fb, "id": str(uuid.uuid4()), "key": "correctness", "score": 0, "comment": None}
    result = _post_multipart(api, [*parts, (name, fb), (f"feedback.{second['id']}", second)])
    assert result["feedback"] == 2
    listed = api.get("/feedback", params={"run": ids[PLAIN_ROOT]}).json()
    assert sorted((f["key"], f["score"], f["comment"]) for f in listed) == [
        ("correctness", 0.0, None),
        ("user_score", 1.0, "good"),
    ]
    assert all(f["trace_id"] == ids[PLAIN_ROOT] for f in listed)
    assert get_run(api, ids[PLAIN_ROOT])["feedback_stats"] == {
        "correctness": {"n": 1, "avg": 0.0},
        "user_score": {"n": 1, "avg": 1.0},
    }
    # the same feedback again (an SDK retry) is accepted and not doubled
    _post_multipart(api, [(name, fb)])
    assert len(api.get("/feedback", params={"run": ids[PLAIN_ROOT]}).json()) == 2


def test_attachment_parts_are_written_under_home(api: httpx.Client, live_server, project_name: str) -> None:
    run = new_run(project_name)
    rid = run["id"]
    data = b"\x89PNG\r\n\x1a\n--not-a-boundary\r\n" + bytes(range(256))
    result = _post_multipart(api, [(f"post.{rid}", run), (f"attachment.{rid}.screenshot", data)])
    assert result["attachments"] == 1
    ws = live_server.store.workspaces.get("default")
    path = live_server.settings.home / "attachments" / str(ws.id) / rid / "screenshot"
    assert path.read_bytes() == data
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_attachment_name_with_a_dot_is_refused(api: httpx.Client, project_name: str) -> None:
    rid = str(uuid.uuid4())
    body, ctype = multipart_body([(f"attachment.{rid}.../../etc", b"x")])
    detail = detail_of(api.post("/runs/multipart", content=body, headers={"content-type": ctype}), 400)
    assert "attachment names" in detail


def test_create_project_conflict_and_upsert(api: httpx.Client, project_name: str) -> None:
    chosen = str(uuid.uuid4())
    body = {"name": project_name, "description": "first", "extra": {"metadata": {"team": "a"}}, "id": chosen}
    r = api.post("/sessions", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert (created["id"], created["name"], created["description"]) == (chosen, project_name, "first")
    assert created["extra"] == {"metadata": {"team": "a"}}
    assert "reference_dataset_id" in created

    detail = detail_of(api.post("/sessions", json={**body, "id": str(uuid.uuid4())}), 409)
    assert project_name in detail

    r = api.post("/sessions", params={"upsert": "true"}, json={"name": project_name, "description": "second"})
    assert r.is_success, r.text
    assert (r.json()["id"], r.json()["description"]) == (chosen, "second")
    assert [p["id"] for p in api.get("/sessions", params={"name": project_name}).json()] == [chosen]


# -- reading runs back ---------------------------------------------------------------------------------------


def test_cursor_pages_return_each_run_once(api: httpx.Client, project_name: str) -> None:
    starts = [T0 + timedelta(seconds=s) for s in (0, 1, 1, 1, 1, 2, 3, 3, 4, 5)]  # ties cross page ends
    runs = [new_run(project_name, start=s) for s in starts]
    assert api.post("/runs/batch", json={"post": runs}).status_code == 202
    pid = project_id(api, project_name)
    for order in ("desc", "asc"):
        pages, cursor = [], None
        while True:
            body = {"session": [pid], "limit": 3, "order": order, **({"cursor": cursor} if cursor else {})}
            page = api.post("/runs/query", json=body).json()
            pages.append([r["id"] for r in page["runs"]])
            cursor = page["cursors"]["next"]
            if cursor is None:
                break
        assert [len(p) for p in pages] == [3, 3, 3, 1]
        seen = [rid for page in pages for rid in page]
        expected = sorted(runs, key=lambda r: (r["start_time"], r["id"]), reverse=order == "desc")
        assert seen == [r["id"] for r in expected]


def test_execution_order_one_means_roots(api: httpx.Client, project_name: str) -> None:
    ids: dict[str, str] = {}
    _post_multipart(api, fresh_ids(capture_parts(), ids, project_name))
    pid = project_id(api, project_name)
    roots = api.post("/runs/query", json={"session": [pid], "execution_order": 1}).json()["runs"]
    assert sorted(r["id"] for r in roots) == sorted(ids[r] for r in ROOTS)
    children = query_all(api, {"session": [pid], "is_root": False})
    assert len(children) == N_RUNS - 3
    # what read_run(load_child_runs=True) asks for
    tree = api.post("/runs/query", json={"trace": ids[PLAIN_ROOT], "is_root": False, "session_id": pid}).json()
    assert len(tree["runs"]) == 4
    assert all(r["parent_run_id"] == ids[PLAIN_ROOT] for r in tree["runs"])


def test_query_select_limits_the_fields(api: httpx.Client, project_name: str) -> None:
    parent = new_run(project_name)
    child = child_of(parent, run_type="llm", name="ChatOpenAI")
    assert api.post("/runs/batch", json={"post": [parent, child]}).status_code == 202
    body = {"session": [project_id(api, project_name)], "select": ["name", "run_type", "inputs"], "run_type": "llm"}
    [run] = api.post("/runs/query", json=body).json()["runs"]
    assert run["name"] == "ChatOpenAI"
    assert run["inputs"] == {"question": "q"}
    assert "outputs" not in run and "extra" not in run
    assert run["parent_run_id"] == parent["id"]  # tree fields always come along
