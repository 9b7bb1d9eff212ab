"""Acceptance: LangSmith's dataset API through the unmodified newest SDK, on SQLite and PostgreSQL — datasets
(create, read, has, list, update, delete), examples (one, many, from a run, chat; list with splits, metadata and
as_of; update; delete), versions and tags, splits, ``read_dataset_openai_finetuning`` and ``upload_csv`` — and the
one store behind it: an export made by tracetune is a LangSmith dataset, an example added through the SDK is in
the training file."""

from __future__ import annotations

import io
import time
import uuid
from datetime import UTC, datetime

import pytest
from langsmith.schemas import DataType
from langsmith.utils import LangSmithConflictError, LangSmithError, LangSmithNotFoundError

from .helpers import KNOWN_CLIENT_WARNINGS

pytestmark = pytest.mark.filterwarnings(*KNOWN_CLIENT_WARNINGS)

CALC = {"name": "calculator", "description": "Evaluate arithmetic", "parameters": {"type": "object"}}


def _name(prefix: str = "ds") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_dataset_crud_and_errors(client):
    name = _name()
    ds = client.create_dataset(name, description="first", data_type=DataType.chat, metadata={"team": "ml"})
    assert (ds.name, ds.description, ds.data_type, ds.example_count) == (name, "first", DataType.chat, 0)
    assert ds.metadata and ds.metadata["team"] == "ml"
    assert client.has_dataset(dataset_name=name) and client.has_dataset(dataset_id=ds.id)
    assert not client.has_dataset(dataset_name=name + "-missing")
    assert client.read_dataset(dataset_name=name).id == ds.id
    assert [d.id for d in client.list_datasets(dataset_name_contains=name[3:])] == [ds.id]
    assert [d.id for d in client.list_datasets(metadata={"team": "ml"}) if d.id == ds.id] == [ds.id]
    assert not [d for d in client.list_datasets(metadata={"team": "other"}) if d.id == ds.id]
    assert [d.id for d in client.list_datasets(data_type="chat", dataset_ids=[ds.id])] == [ds.id]
    with pytest.raises(LangSmithConflictError, match="already exists"):
        client.create_dataset(name)
    client.delete_dataset(dataset_name=name)
    assert not client.has_dataset(dataset_id=ds.id)
    with pytest.raises(LangSmithNotFoundError):
        client.delete_dataset(dataset_id=ds.id)


def test_examples_versions_splits_and_tags(client):
    ds = client.create_dataset(_name())
    first = client.create_example(
        inputs={"q": "1+1"}, reference_outputs={"a": "2"}, dataset_id=ds.id, metadata={"level": "easy"}
    )
    assert first.metadata == {"level": "easy", "dataset_split": ["base"]}
    v1 = client.read_dataset_version(dataset_id=ds.id, tag="latest").as_of
    created = client.create_examples(
        dataset_id=ds.id,
        examples=[
            {"inputs": {"q": f"{i}+{i}"}, "reference_outputs": {"a": str(2 * i)}, "split": "test" if i else "train"}
            for i in range(2, 6)
        ],
    )
    assert created["count"] == 4
    assert [e.inputs["q"] for e in client.list_examples(dataset_id=ds.id)] == ["1+1", "2+2", "3+3", "4+4", "5+5"]
    assert len(list(client.list_examples(dataset_id=ds.id, splits=["test"]))) == 4
    assert sorted(client.list_dataset_splits(dataset_id=ds.id)) == ["base", "test"]
    assert [e.id for e in client.list_examples(dataset_id=ds.id, metadata={"level": "easy"})] == [first.id]
    structured = 'and(not(has(metadata, \'{"level": "hard"}\')), exists(metadata, "level"))'  # the SDK's example
    assert [e.id for e in client.list_examples(dataset_id=ds.id, filter=structured)] == [first.id]
    in_test = [e.inputs["q"] for e in client.list_examples(dataset_id=ds.id, filter='has(dataset_split, "test")')]
    assert in_test == ["2+2", "3+3", "4+4", "5+5"]
    eight = client.list_examples(dataset_id=ds.id, filter='has(outputs, \'{"a": "8"}\')')
    assert [e.inputs["q"] for e in eight] == ["4+4"]
    with pytest.raises(LangSmithError, match="filter"):
        list(client.list_examples(dataset_id=ds.id, filter="gt(latency, 2)"))
    assert [e.inputs["q"] for e in client.list_examples(dataset_id=ds.id, offset=3)] == ["4+4", "5+5"]

    client.update_example(first.id, inputs={"q": "one plus one"}, split=["train", "test"])
    assert client.read_example(first.id).inputs == {"q": "one plus one"}
    assert client.read_example(first.id, as_of=v1).inputs == {"q": "1+1"}  # the version before
    client.delete_example(created["example_ids"][0])
    client.update_dataset_splits(dataset_id=ds.id, split_name="holdout", example_ids=[first.id])
    assert [e.id for e in client.list_examples(dataset_id=ds.id, splits=["holdout"])] == [first.id]

    versions = list(client.list_dataset_versions(dataset_id=ds.id))
    assert len(versions) == 5 and "latest" in versions[0].tags  # create_example, create_examples, 3 changes
    assert len(list(client.list_examples(dataset_id=ds.id, as_of=v1))) == 1
    assert len(list(client.list_examples(dataset_id=ds.id))) == 4
    client.update_dataset_tag(dataset_id=ds.id, as_of=v1, tag="prod")
    assert [e.inputs["q"] for e in client.list_examples(dataset_id=ds.id, as_of="prod")] == ["1+1"]
    assert client.read_dataset_version(dataset_id=ds.id, tag="prod").as_of == v1
    assert client.read_dataset(dataset_id=ds.id).example_count == 4

    client.delete_examples([e.id for e in client.list_examples(dataset_id=ds.id)])
    assert list(client.list_examples(dataset_id=ds.id)) == []
    assert len(list(client.list_examples(dataset_id=ds.id, as_of="prod"))) == 1  # history stays
    with pytest.raises(LangSmithNotFoundError):
        client.read_example(first.id)
    with pytest.raises(LangSmithNotFoundError, match="tagged"):
        list(client.list_examples(dataset_id=ds.id, as_of="no-such-tag"))


def test_runs_become_examples_and_an_openai_fine_tuning_file(client, live_server, project_name):
    """Traced LLM runs → ``create_example_from_run`` (chat and kv datasets) → splits → the fine-tuning file."""
    from langchain_core.load import dumpd
    from langchain_core.messages import AIMessage, HumanMessage

    runs = []
    for i in range(3):  # as LangChain's tracer records a ChatOpenAI call that calls a tool
        call = {"id": f"call_{i}", "name": "calculator", "args": {"x": i}}
        answer = AIMessage(content="", tool_calls=[call])
        rid = uuid.uuid4()
        now = datetime.now(UTC)
        client.create_run(
            name="ChatOpenAI",
            run_type="llm",
            id=rid,
            project_name=project_name,
            start_time=now,
            end_time=now,
            inputs={"messages": [[dumpd(HumanMessage(content=f"What is {i} * 7?"))]]},
            extra={"invocation_params": {"tools": [{"type": "function", "function": CALC}]}},
            outputs={"generations": [[{"text": "", "message": dumpd(answer)}]]},
        )
        runs.append(rid)
    client.flush()
    read = _wait_for_runs(client, runs)

    chat = client.create_dataset(_name("chat"), data_type=DataType.chat)
    kv = client.create_dataset(_name("kv"))
    for run in read:
        client.create_example_from_run(run, dataset_id=chat.id)
        client.create_example(dataset_id=kv.id, source_run_id=run.id, use_source_run_io=True)
    examples = list(client.list_examples(dataset_id=kv.id))
    assert {str(e.source_run_id) for e in examples} == {str(r) for r in runs}
    client.update_dataset_splits(dataset_id=kv.id, split_name="validation", example_ids=[examples[-1].id])
    assert [e.id for e in client.list_examples(dataset_id=kv.id, splits=["validation"])] == [examples[-1].id]

    for ds in (chat, kv):
        records = client.read_dataset_openai_finetuning(dataset_id=ds.id)
        assert len(records) == 3
        for i, record in enumerate(records):
            assert record["messages"][0] == {"role": "user", "content": f"What is {i} * 7?"}
            assert record["messages"][-1]["tool_calls"][0]["function"]["name"] == "calculator"
    assert client.read_dataset_openai_finetuning(dataset_id=kv.id)[0]["tools"][0]["function"]["name"] == "calculator"


def _wait_for_runs(client, run_ids, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        found = list(client.list_runs(id=run_ids))
        if len(found) == len(run_ids) or time.monotonic() > deadline:
            return sorted(found, key=lambda r: run_ids.index(r.id))
        time.sleep(0.2)


def test_upload_csv_and_its_errors(client):
    name = _name("csv")
    data = b'question,answer,notes\n2+2,4,easy\n"3,5 and 4","7, then 9",\n'
    ds = client.upload_csv((f"{name}.csv", io.BytesIO(data)), input_keys=["question"], output_keys=["answer"])
    assert ds.name == name
    got = [(e.inputs, e.outputs) for e in client.list_examples(dataset_id=ds.id)]
    assert got == [({"question": "2+2"}, {"answer": "4"}), ({"question": "3,5 and 4"}, {"answer": "7, then 9"})]
    with pytest.raises(LangSmithConflictError, match="already exists"):
        client.upload_csv((f"{name}.csv", io.BytesIO(data)), input_keys=["question"], output_keys=["answer"])
    bad = b"question,answer\n1,2\n3,4,5\n"
    with pytest.raises(LangSmithError, match="line 3"):
        client.upload_csv(("bad.csv", io.BytesIO(bad)), input_keys=["question"], output_keys=["answer"], name=_name())
    with pytest.raises(LangSmithError, match=r"answr.* is not in the CSV header"):
        client.upload_csv(("bad.csv", io.BytesIO(data)), input_keys=["question"], output_keys=["answr"], name=_name())
