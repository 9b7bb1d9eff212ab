"""tracetune's own dataset routes (``/tt/v1/datasets``) on the shared live server, both dialects: build, list,
read, download (JSONL, by split, with lineage), versions; bad input answers 4xx ``{"detail": …}`` naming it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.convert import captured
from tests.dataset_support import chain_root, chat_run, give_tokenizer, reid
from tests.server.support import detail_of


@pytest.fixture(scope="module")
def tt(live_server, tmp_path_factory) -> Iterator[httpx.Client]:
    give_tokenizer(tmp_path_factory, live_server.settings.home)
    with httpx.Client(base_url=f"{live_server.url}/tt/v1", timeout=60, verify=False) as client:
        yield client


def post_runs(api: httpx.Client, runs: list[dict[str, Any]], project: str) -> None:
    r = api.post("/runs/batch", json={"post": [{**run, "session_name": project} for run in runs]})
    assert r.status_code == 202, r.text


def jsonl(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [orjson.loads(line) for line in response.content.splitlines()]


def test_build_list_read_and_download(api, tt, project_name) -> None:
    extra = captured("extra")
    loop = reid([extra["agent_chain"], extra["agent_1"], extra["agent_2"]])
    others = []
    for t in range(6):
        root = chain_root(t)
        others += [root, chat_run(f"question {t}", f"answer {t}", trace=root)]
    post_runs(api, loop + others, project_name)

    body = {"name": project_name, "selection": {"project": project_name}, "options": {"split": 0.5, "seed": 2}}
    r = tt.post("/datasets", json=body)
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["name"] == project_name and first["version"] == 1
    assert first["record_count"] == 7 == first["train_count"] + first["validation_count"]
    summary = first["summary"]
    assert summary["runs_read"] == 8 and summary["examples"] == 7 and summary["runs_merged"] == 1
    assert summary["tokens"]["total"] > 0 and summary["model"]["context_length"] == 8192
    assert first["selection"]["project"] == project_name and first["options"]["split"] == 0.5

    second = tt.post("/datasets", json=body).json()
    assert second["version"] == 2 and second["summary"] == summary
    listed = tt.get("/datasets", params={"name": project_name}).json()
    assert [d["version"] for d in listed] == [2, 1]
    assert tt.get(f"/datasets/{first['id']}").json() == first

    everything = jsonl(tt.get(f"/datasets/{first['id']}/records"))
    train = jsonl(tt.get(f"/datasets/{first['id']}/records", params={"split": "train"}))
    validation = jsonl(tt.get(f"/datasets/{first['id']}/records", params={"split": "validation"}))
    assert len(train) == first["train_count"] and len(validation) == first["validation_count"]
    assert sorted(map(orjson.dumps, train + validation)) == sorted(map(orjson.dumps, everything))
    assert all(set(rec) <= {"messages", "tools", "functions", "parallel_tool_calls"} for rec in everything)

    lineage = jsonl(tt.get(f"/datasets/{first['id']}/records", params={"lineage": "true"}))
    assert [x["line"] for x in lineage] == list(range(1, 8))
    assert [x["record"] for x in lineage] == everything
    (merged,) = [x for x in lineage if len(x["run_ids"]) == 2]
    assert merged["run_ids"] == [loop[1]["id"], loop[2]["id"]] and merged["trace_id"] == loop[0]["id"]
    assert [m["role"] for m in merged["record"]["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    by_trace: dict[str, set[str]] = {}
    for x in lineage:
        by_trace.setdefault(x["trace_id"], set()).add(x["split"])
    assert all(len(s) == 1 for s in by_trace.values())


def test_an_export_is_a_langsmith_dataset_and_an_sdk_example_trains(api, tt, live_server, project_name) -> None:
    """One store: the export is listed by LangSmith's API with its records as examples (train/validation as the
    examples' splits); an example added there makes the next version, which downloads with it as a record and
    shows in the UI's dataset page."""
    post_runs(api, [chat_run(f"question {i}", f"answer {i}") for i in range(4)], project_name)
    body = {"name": project_name, "selection": {"project": project_name}, "options": {"split": 0.5, "seed": 1}}
    export = tt.post("/datasets", json=body).json()
    records = jsonl(tt.get(f"/datasets/{export['id']}/records"))

    (ds,) = api.get("/datasets", params={"name": project_name}).json()
    assert ds["id"] == export["dataset_id"] and ds["example_count"] == 4 and ds["data_type"] == "chat"
    examples = api.get("/examples", params={"dataset": ds["id"]}).json()
    assert [e["inputs"]["messages"] + [e["outputs"]["message"]] for e in examples] == [r["messages"] for r in records]
    assert sorted(e["metadata"]["dataset_split"][0] for e in examples) == sorted(
        ["train"] * export["train_count"] + ["validation"] * export["validation_count"]
    )
    assert api.get(f"/datasets/{ds['id']}/openai_ft").text.splitlines() == [orjson.dumps(r).decode() for r in records]

    added = {"role": "user", "content": "added by the SDK"}, {"role": "assistant", "content": "and trained on"}
    new = {"dataset_id": ds["id"], "inputs": {"messages": [added[0]]}, "outputs": {"message": added[1]}}
    assert api.post("/examples", json={**new, "split": "train"}).status_code == 200
    latest = tt.get("/datasets", params={"name": project_name}).json()[0]
    assert latest["version"] == 2 and latest["record_count"] == 5 and latest["train_count"] == export["train_count"] + 1
    train = jsonl(tt.get(f"/datasets/{latest['id']}/records", params={"split": "train"}))
    assert train[-1] == {"messages": list(added)}
    page = httpx.get(f"{live_server.url}/datasets/{latest['id']}", timeout=20)  # the web UI
    assert page.status_code == 200 and "added by the SDK" in page.text

    # an example that holds no conversation: shown as such, and named when the records are asked for
    odd = api.post("/examples", json={"dataset_id": ds["id"], "inputs": {"q": "1+1"}}).json()
    third = tt.get("/datasets", params={"name": project_name}).json()[0]
    page = httpx.get(f"{live_server.url}/datasets/{third['id']}", timeout=20)
    assert page.status_code == 200 and "holds no conversation" in page.text
    assert odd["id"] in detail_of(tt.get(f"/datasets/{third['id']}/records"), 400)
    assert odd["id"] in detail_of(api.get(f"/datasets/{ds['id']}/openai_ft"), 400)


def test_hf_format_download(api, tt, project_name) -> None:
    post_runs(api, [chat_run("q", "a")], project_name)
    body = {"name": project_name, "selection": {"project": project_name}, "options": {"format": "hf"}}
    dataset = tt.post("/datasets", json=body).json()
    (record,) = jsonl(tt.get(f"/datasets/{dataset['id']}/records", params={"split": "train"}))
    assert record == {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"},
        ]
    }


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"name": "x", "selection": {"project": "p"}, "colour": 1}, 422, ["colour", "Extra inputs"]),
        ({"name": "x", "selection": {"project": "p", "filtr": "x"}}, 422, ["selection.filtr"]),
        ({"name": "x", "selection": {"project": "p"}, "options": {"splitt": 0.9}}, 422, ["options.splitt"]),
        ({"name": "x", "selection": {"project": "p"}, "options": {"split": 1.5}}, 422, ["options.split"]),
        ({"name": "x", "selection": {"project": "p"}, "options": {"format": "csv"}}, 422, ["options.format"]),
        ({"name": "", "selection": {"project": "p"}}, 422, ["name"]),
        ({"selection": {"project": "p"}}, 422, ["name", "Field required"]),
        ({"name": "x", "selection": {"project": "no-such-project"}}, 404, ["no-such-project"]),
        ({"name": "x", "selection": {"project": "{p}", "filter": "eq(name"}}, 400, ["filter"]),
        ({"name": "x", "selection": {"project": "{p}", "min_score": 1}}, 400, ["min_score"]),
        ({"name": "x", "selection": {"project": "{p}"}, "options": {"model": "nope"}}, 404, ["nope"]),
    ],
)
def test_bad_create_bodies(api, tt, project_name, body, status, words) -> None:
    post_runs(api, [chat_run("q", "a")], project_name)
    if body.get("selection", {}).get("project") == "{p}":
        body = {**body, "selection": {**body["selection"], "project": project_name}}
    detail = detail_of(tt.post("/datasets", json=body), status)
    for word in words:
        assert word in detail, detail


def test_bad_reads(tt) -> None:
    assert "malformed JSON" in detail_of(
        tt.post("/datasets", content=b'{"name": ', headers={"content-type": "application/json"}), 400, 422
    )
    missing = "00000000-0000-4000-8000-000000000000"
    assert missing in detail_of(tt.get(f"/datasets/{missing}"), 404)
    assert missing in detail_of(tt.get(f"/datasets/{missing}/records"), 404)
    assert "dataset_id" in detail_of(tt.get("/datasets/not-a-uuid"), 422)
    assert "split" in detail_of(tt.get(f"/datasets/{missing}/records", params={"split": "test"}), 422)
    assert "limit" in detail_of(tt.get("/datasets", params={"limit": 0}), 422)
