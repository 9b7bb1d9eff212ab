"""LangSmith's dataset routes on the shared live server, both dialects: bad input answers 4xx naming the field
(duplicate names, a missing dataset, splits of the wrong type, malformed CSV naming the line, a dataset a
fine-tuning job was trained on), and nothing is written by a refused request; the one store: a dataset version
saved by tracetune is a LangSmith dataset whose examples are its records."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from tests.server.support import detail_of


def _dataset(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    r = api.post("/datasets", json={"name": f"ds-{uuid.uuid4().hex[:8]}", **fields})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _examples(api: httpx.Client, dataset_id: str) -> list[dict[str, Any]]:
    r = api.get("/examples", params={"dataset": dataset_id})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_bad_dataset_and_example_input_is_refused_and_writes_nothing(api) -> None:
    ds = _dataset(api)
    assert ds["name"] in detail_of(api.post("/datasets", json={"name": ds["name"]}), 409)
    assert "data_type" in detail_of(api.post("/datasets", json={"name": "x", "data_type": "tabular"}), 422)
    assert "name" in detail_of(api.post("/datasets", json={"name": ""}), 422)
    missing = str(uuid.uuid4())
    assert missing in detail_of(api.post("/examples", json={"dataset_id": missing, "inputs": {"q": 1}}), 404)
    bulk = [{"dataset_id": ds["id"], "inputs": {"q": 1}}, {"dataset_id": missing, "inputs": {"q": 2}}]
    assert missing in detail_of(api.post("/examples/bulk", json=bulk), 404)
    for split in (5, [1, 2], {"a": 1}, ""):
        body = {"dataset_id": ds["id"], "inputs": {"q": 1}, "split": split}
        assert "split" in detail_of(api.post("/examples", json=body), 422)
    bad_bulk = [{"dataset_id": ds["id"], "inputs": {"q": 1}}, {"dataset_id": ds["id"], "inputs": "not an object"}]
    assert "example 1" in detail_of(api.post("/examples/bulk", json=bad_bulk), 400)
    assert "inputs" in detail_of(api.post("/examples", json={"dataset_id": ds["id"]}), 400)
    one = api.post("/examples", json={"dataset_id": ds["id"], "inputs": {"q": 1}}).json()
    assert one["id"] in detail_of(
        api.post("/examples", json={"dataset_id": ds["id"], "id": one["id"], "inputs": {}}), 409
    )
    assert "metadata" in detail_of(api.get("/examples", params={"dataset": ds["id"], "metadata": "[1]"}), 400)
    assert "as_of" in detail_of(api.get("/examples", params={"dataset": ds["id"], "as_of": "nope"}), 404)
    assert "as_of" in detail_of(api.get(f"/datasets/{ds['id']}/version"), 400)
    assert [e["id"] for e in _examples(api, ds["id"])] == [one["id"]]  # only the one accepted example
    assert len(api.get(f"/datasets/{ds['id']}/versions").json()) == 1


def _upload(api: httpx.Client, csv: bytes, name: str, inputs: list[str], outputs: list[str]) -> httpx.Response:
    data = {"input_keys": inputs, "output_keys": outputs, "name": name}
    return api.post("/datasets/upload", data=data, files={"file": ("f.csv", csv, "text/csv")})


def test_malformed_csv_names_the_line_and_makes_no_dataset(api) -> None:
    name = f"csv-{uuid.uuid4().hex[:8]}"
    cases = [
        (b"q,a\n1,2\n3\n", "line 3"),
        (b'q,a\n1,"unclosed\n', "line"),
        (b"q,a\n\xff\xfe,2\n", "UTF-8"),
        (b"", "empty"),
        (b"q,a\n", "no rows"),
    ]
    for csv, where in cases:
        assert where in detail_of(_upload(api, csv, name, ["q"], ["a"]), 400)
    assert "input_keys" in detail_of(_upload(api, b"q,a\n1,2\n", name, [], ["a"]), 400)
    assert "file" in detail_of(
        api.post("/datasets/upload", data={"input_keys": ["q"], "name": name}, files={"x": b"1"}), 400
    )
    assert api.get("/datasets", params={"name": name}).json() == []
    made = _upload(api, b"q,a\n1,2\n", name, ["q"], ["a"])
    assert made.status_code == 200 and made.json()["example_count"] == 1


def test_a_dataset_a_job_trained_on_cannot_be_deleted(api, live_server) -> None:
    """The job's lineage (job → dataset → runs) must survive: 409 naming the dataset and the job; the dataset and
    its examples stay. A dataset no job names is deleted with its versions and examples."""
    ds = _dataset(api, data_type="chat")
    record = {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}
    example = {
        "dataset_id": ds["id"],
        "inputs": {"messages": record["messages"][:1]},
        "outputs": {"message": record["messages"][1]},
    }
    assert api.post("/examples/bulk", json=[example] * 1).status_code == 200
    ft = api.get(f"/datasets/{ds['id']}/openai_ft")
    assert [json.loads(line) for line in ft.text.splitlines()] == [record]
    with httpx.Client(base_url=f"{live_server.url}/v1", timeout=20) as oai:
        upload = oai.post("/files", data={"purpose": "fine-tune"}, files={"file": ("t.jsonl", ft.text.encode() * 10)})
        assert upload.status_code == 200, upload.text
        job = oai.post(
            "/fine_tuning/jobs",
            json={
                "model": "smollm2-135m-instruct",
                "training_file": upload.json()["id"],
                "metadata": {"dataset_id": ds["id"]},
            },
        )
        assert job.status_code == 200, job.text
    detail = detail_of(api.delete(f"/datasets/{ds['id']}"), 409)
    assert ds["id"] in detail and job.json()["id"] in detail
    assert len(_examples(api, ds["id"])) == 1
    other = _dataset(api)
    api.post("/examples", json={"dataset_id": other["id"], "inputs": {"q": 1}})
    assert api.delete(f"/datasets/{other['id']}").status_code == 200
    assert api.get(f"/datasets/{other['id']}").status_code == 404
    assert api.get("/examples", params={"dataset": other["id"]}).status_code == 404
