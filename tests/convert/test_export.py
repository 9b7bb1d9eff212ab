"""Acceptance of the dataset export (``tracetune.convert.export``) over a real store, on SQLite and PostgreSQL:
captured runs stored through the real ingest path, exported, and the records checked for content."""

from __future__ import annotations

import json
import uuid
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import event, select

from tests.convert import captured
from tests.dataset_support import chain_root, chat_run, ingest, smollm2_target, ticket_runs
from tracetune.chat.validate import validate_record
from tracetune.convert.dataset_builder import ExportOptions, Selection
from tracetune.convert.examples import iter_dataset_records
from tracetune.convert.export import TargetModel, export_dataset, export_runs, validation_path
from tracetune.errors import InvalidInput, NotFound
from tracetune.query.run_view import run_view
from tracetune.store.schema import runs as runs_table

PROJECT = "p"


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> TargetModel:
    return smollm2_target(tmp_path_factory)


@pytest.fixture
def ws(store: Any) -> uuid.UUID:
    return store.workspaces.ensure("default").id  # type: ignore[no-any-return]


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def export(store: Any, ws: uuid.UUID, target: TargetModel, out: Path | None, **options: Any) -> Any:
    selection = options.pop("selection", Selection(project=PROJECT))
    return export_dataset(store, ws, selection, ExportOptions(**options), out=out, target=target)


# -- tool loops --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "tool"),
    [
        (("agent_chain", "agent_1", "agent_2"), "get_weather"),
        (("wrap_agent_chain", "wrap_agent_1", "wrap_agent_2"), None),
    ],
)
def test_a_tool_loop_trace_exports_as_one_valid_conversation(store, ws, target, tmp_path, labels, tool) -> None:
    runs = captured("extra")
    ingest(store, ws, [runs[label] for label in labels], PROJECT)
    result = export(store, ws, target, tmp_path / "out.jsonl", name="loop")

    (record,) = lines(tmp_path / "out.jsonl")
    assert validate_record(record, 1) == []
    roles = [m["role"] for m in record["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    call_ids = [c["id"] for c in record["messages"][2]["tool_calls"]]
    assert call_ids and record["messages"][3]["tool_call_id"] == call_ids[0]
    assert record["tools"] and all(t["type"] == "function" for t in record["tools"])
    if tool:
        assert [t["function"]["name"] for t in record["tools"]] == [tool]
    assert result.summary["examples"] == 1 and result.summary["runs_merged"] == 1
    assert result.summary["runs_read"] == 2 and result.summary["skipped"] == {}  # only LLM runs are selected
    (stored,) = iter_dataset_records(store, ws, result.dataset["id"])
    assert stored["run_ids"] == [runs[labels[1]]["id"], runs[labels[2]]["id"]]
    assert stored["trace_id"] == runs[labels[0]]["id"]
    assert stored["record"] == record


def test_no_merge_keeps_each_call(store, ws, target, tmp_path) -> None:
    runs = captured("extra")
    ingest(store, ws, [runs["agent_chain"], runs["agent_1"], runs["agent_2"]], PROJECT)
    result = export(store, ws, target, tmp_path / "out.jsonl", merge=False)
    assert [len(r["messages"]) for r in lines(tmp_path / "out.jsonl")] == [3, 5]
    assert result.summary["runs_merged"] == 0


# -- the same as LangChain's exporter, plus the functions --------------------------------------------------


def _langchain_function_runs() -> list[dict[str, Any]]:
    """Runs shaped like a LangSmith export of ChatOpenAI with functions (the baseline's): earlier
    function-call turns in the history, a function call as the answer."""
    from langchain_core.load import dumpd
    from langchain_core.messages import AIMessage, FunctionMessage, HumanMessage, SystemMessage

    functions = [
        {"name": "Calculator", "description": "Do arithmetic.", "parameters": {"type": "object", "properties": {}}},
        {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
    ]
    out = []
    for i, history in enumerate((0, 1, 2)):
        messages: list[Any] = [SystemMessage(content="Use the functions.")]
        for k in range(history):
            call = {"name": "Calculator", "arguments": f'{{"num1": {k}, "num2": 2}}'}
            messages += [
                HumanMessage(content=f"What is {k}+2?"),
                AIMessage(content="", additional_kwargs={"function_call": call}),
                FunctionMessage(name="Calculator", content=str(k + 2)),
                AIMessage(content=f"It is {k + 2}."),
            ]
        messages.append(HumanMessage(content=f"Weather in city {i}?"))
        answer = AIMessage(
            content="", additional_kwargs={"function_call": {"name": "get_weather", "arguments": f'{{"city": "c{i}"}}'}}
        )
        rid = str(uuid.uuid4())
        out.append(
            {
                "id": rid,
                "trace_id": rid,
                "dotted_order": f"20261121T08000{i}000000Z{rid}",
                "name": "ChatOpenAI",
                "run_type": "llm",
                "start_time": f"2026-11-21T08:00:0{i}+00:00",
                "end_time": "2026-11-21T08:01:00+00:00",
                "inputs": {"messages": [dumpd(m) for m in messages]},
                "outputs": {"generations": [{"text": "", "type": "ChatGeneration", "message": dumpd(answer)}]},
                "extra": {"invocation_params": {"model": "gpt-4o-mini", "functions": functions}},
            }
        )
    return out


def test_functions_runs_export_what_langchain_exports_plus_the_functions(store, ws, target, tmp_path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # langchain-community announces its sunset on import
        from langchain_community.adapters.openai import convert_messages_for_finetuning
        from langchain_community.chat_loaders.langsmith import LangSmithRunChatLoader
    from langsmith.schemas import Run

    agent = captured("ls_agent")
    sent = [captured("ls_zstd")["functions"], agent["functions_1"], agent["functions_2"], *_langchain_function_runs()]
    ingest(store, ws, sent, PROJECT)
    result = export(store, ws, target, tmp_path / "ours.jsonl", name="functions")
    assert result.summary["examples"] == len(sent)
    ours = {tuple(r["run_ids"]): r["record"] for r in iter_dataset_records(store, ws, result.dataset["id"])}

    # LangChain's documented path, side by side, on the same runs read back from the same store
    rows = store.runs.fetch(select(runs_table).where(runs_table.c.workspace_id == ws))
    run_objects = [Run(**run_view(row)) for row in rows]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sessions = list(LangSmithRunChatLoader(run_objects, client=object()).lazy_load())  # type: ignore[arg-type]
    official = convert_messages_for_finetuning(sessions)
    assert len(official) == len(run_objects) == len(sent)
    for run, session, messages in zip(run_objects, sessions, official, strict=True):
        functions = run.extra["invocation_params"]["functions"]  # type: ignore[index]
        assert session["functions"] == functions  # LangChain's session has them; its JSONL drops them
        assert ours[(str(run.id),)] == {"messages": messages, "functions": functions}
    assert any(m["role"] == "function" for r in ours.values() for m in r["messages"])


# -- split, versions, lineage ------------------------------------------------------------------------------


def test_split_is_by_trace_never_by_row_and_deterministic(store, ws, target, tmp_path) -> None:
    sent = []
    for t in range(30):
        root = chain_root(t)
        sent += [root, *(chat_run(f"question {t}.{k}", f"answer {t}.{k}", trace=root, n=k) for k in range(3))]
    ingest(store, ws, sent, PROJECT)

    def assignment(seed: int, name: str) -> dict[str, set[str]]:
        result = export(store, ws, target, tmp_path / f"{name}.jsonl", split=0.5, seed=seed, name=name)
        assert result.summary["examples"] == 90
        assert result.summary["train"] == len(lines(tmp_path / f"{name}.jsonl"))
        assert result.summary["validation"] == len(lines(validation_path(tmp_path / f"{name}.jsonl")))
        by_trace: dict[str, set[str]] = defaultdict(set)
        for rec in iter_dataset_records(store, ws, result.dataset["id"]):
            by_trace[rec["trace_id"]].add(rec["split"])
        return by_trace

    first = assignment(7, "a")
    assert len(first) == 30 and all(len(splits) == 1 for splits in first.values())  # no trace straddles
    assert {s for splits in first.values() for s in splits} == {"train", "validation"}
    assert assignment(7, "b") == first  # same seed, same split
    assert assignment(8, "c") != first


def test_versions_increment_and_lineage_comes_back(store, ws, target, tmp_path) -> None:
    root = chain_root()
    sent = [root, chat_run("hello", "hi", trace=root), chat_run("bye", "ciao", trace=root, n=1)]
    ingest(store, ws, sent, PROJECT)
    first = export(store, ws, target, None, name="greetings").dataset
    second = export(store, ws, target, None, name="greetings", format="hf").dataset
    other = export(store, ws, target, None, name="other").dataset
    assert (first["version"], second["version"], other["version"]) == (1, 2, 1)
    assert first["record_count"] == second["record_count"] == 2 and first["train_count"] == 2
    assert second["options"]["format"] == "hf" and second["selection"]["project"] == PROJECT
    assert [d["version"] for d in store.datasets.list(ws, name="greetings")] == [2, 1]
    assert store.datasets.get(ws, first["id"])["summary"]["examples"] == 2
    records = list(iter_dataset_records(store, ws, first["id"]))
    assert [(r["line"], r["run_ids"], r["trace_id"], r["split"]) for r in records] == [
        (1, [sent[1]["id"]], root["id"], "train"),
        (2, [sent[2]["id"]], root["id"], "train"),
    ]
    assert records[0]["record"]["messages"][-1] == {"role": "assistant", "content": "hi"}
    with pytest.raises(NotFound):
        store.datasets.get(store.workspaces.ensure("elsewhere").id, first["id"])


# -- corrections, hygiene, selection -----------------------------------------------------------------------


def test_corrections_replace_answers_and_are_read_per_batch(store, ws, target, tmp_path) -> None:
    sent = [chat_run(f"q{i}", f"wrong {i}", n=i) for i in range(600)]
    ingest(store, ws, sent, PROJECT)
    for i in (3, 450):
        store.feedback.create(
            ws, {"id": uuid.uuid4(), "run_id": uuid.UUID(sent[i]["id"]), "key": "fix", "correction": f"right {i}"}
        )
    # a bare number is no correction (create_many: reading such a row back through the JSON type fails on SQLite)
    store.feedback.create_many(
        ws, [{"id": uuid.uuid4(), "run_id": uuid.UUID(sent[5]["id"]), "key": "fix", "correction": 12}]
    )
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(store.db.engine, "before_cursor_execute", seen)
    try:
        result = export(store, ws, target, tmp_path / "out.jsonl", use_corrections=True)
    finally:
        event.remove(store.db.engine, "before_cursor_execute", seen)
    assert len([s for s in statements if "FROM feedback" in s]) == 2  # 600 runs: two batches of 500
    answers = {r["messages"][1]["content"]: r["messages"][2]["content"] for r in lines(tmp_path / "out.jsonl")}
    assert answers["q3"] == "right 3" and answers["q450"] == "right 450" and answers["q4"] == "wrong 4"
    assert answers["q5"] == "wrong 5"  # an unreadable correction leaves the answer
    assert result.summary["corrections"] == {"applied": 2, "invalid": 1}
    export(store, ws, target, tmp_path / "plain.jsonl")
    assert "right 3" not in (tmp_path / "plain.jsonl").read_text()


def test_dedupe_and_pii_scrubbing_are_counted(store, ws, target, tmp_path) -> None:
    sent = [
        chat_run("Mail me at ann@example.com", "Sure."),
        chat_run("Mail me at ann@example.com", "Sure.", n=1),
        chat_run("mail me at ANN@example.com!", "Sure", n=2),
        chat_run("Call +44 20 7946 0958", "OK", n=3),
    ]
    ingest(store, ws, sent, PROJECT)
    result = export(store, ws, target, tmp_path / "out.jsonl", dedupe=True, scrub_pii=True)
    summary = result.summary
    assert summary["examples"] == 2 and summary["duplicates"] == {"exact": 1, "normalized": 1}
    assert summary["pii"] == {"email": 3, "phone": 1}
    text = (tmp_path / "out.jsonl").read_text()
    assert "<EMAIL>" in text and "<PHONE>" in text and "example.com" not in text


def test_selection_by_filter_trace_filter_and_feedback(store, ws, target, tmp_path) -> None:
    good, bad = chain_root(1), chain_root(2)
    sent = [good, chat_run("a", "A", trace=good), bad, chat_run("b", "B", trace=bad)]
    ingest(store, ws, sent, PROJECT)
    store.feedback.create(ws, {"id": uuid.uuid4(), "run_id": uuid.UUID(good["id"]), "key": "correct", "score": 1.0})
    store.feedback.create(ws, {"id": uuid.uuid4(), "run_id": uuid.UUID(bad["id"]), "key": "correct", "score": 0.0})

    def users(**selection: Any) -> list[str]:
        export(store, ws, target, tmp_path / "o.jsonl", selection=Selection(project=PROJECT, **selection))
        return [r["messages"][1]["content"] for r in lines(tmp_path / "o.jsonl")]

    assert sorted(users()) == ["a", "b"]
    assert users(feedback_key="correct", min_score=1) == ["a"]
    assert sorted(users(feedback_key="correct")) == ["a", "b"]
    assert users(trace_filter=f'eq(id, "{bad["id"]}")') == ["b"]
    assert users(filter='eq(name, "nothing")') == []
    with pytest.raises(InvalidInput) as err:
        users(filter="eq(name")
    assert err.value.field == "filter"
    with pytest.raises(NotFound):
        export(store, ws, target, tmp_path / "o.jsonl", selection=Selection(project="nope"))


def test_over_context_and_formats(store, ws, target, tmp_path) -> None:
    ingest(store, ws, [chat_run("short", "ok"), chat_run("a much longer question " * 20, "ok", n=1)], PROJECT)
    tiny = TargetModel(target.model_id, 60, target.counter)
    result = export(store, ws, tiny, tmp_path / "out.jsonl")
    assert result.summary["examples"] == 1 and result.summary["over_context"] == 1
    assert result.summary["skipped"] == {"invalid": 1}
    assert result.summary["validation_problems"]["by_code"] == {"over_context": 1}
    assert (
        "over the target model's context length of 60" in result.summary["validation_problems"]["first"][0]["message"]
    )
    tokens = result.summary["tokens"]
    assert tokens["min"] == tokens["median"] == tokens["max"] == tokens["total"] < 60
    export(store, ws, target, tmp_path / "share.jsonl", format="sharegpt")
    assert [t["from"] for t in lines(tmp_path / "share.jsonl")[0]["conversations"]] == ["system", "human", "gpt"]


def test_a_file_of_runs_exports_the_same_as_the_store(store, ws, target, tmp_path) -> None:
    runs = captured("extra")
    sent = [runs["agent_chain"], runs["agent_1"], runs["agent_2"], runs["completion"]]
    ingest(store, ws, sent, PROJECT)
    export(store, ws, target, tmp_path / "store.jsonl")
    rows = store.runs.fetch(
        select(runs_table)
        .where(runs_table.c.workspace_id == ws)
        .order_by(runs_table.c.trace_id, runs_table.c.dotted_order)
    )
    source = tmp_path / "runs.jsonl"
    source.write_bytes(b"".join(orjson.dumps(run_view(r), default=str) + b"\n" for r in rows) + b"not json\n[1]\n\n")
    result = export_runs(source, ExportOptions(), out=tmp_path / "file.jsonl", target=target)
    assert lines(tmp_path / "file.jsonl") == lines(tmp_path / "store.jsonl")
    assert result.summary["skipped"] == {"invalid_json": 1, "malformed_run": 1, "not_llm": 1}
    assert result.summary["runs_read"] == 6


def test_the_summary_reports_argument_values_and_advice_before_training(target, tmp_path) -> None:
    runs = ticket_runs(30, rare_team="sales")  # 4 "sales" tickets: under 5 whichever split they land in
    result = export_runs(runs, ExportOptions(split=0.75), out=tmp_path / "tickets.jsonl", target=target)
    train = lines(tmp_path / "tickets.jsonl")
    expected = Counter(json.loads(r["messages"][-1]["tool_calls"][0]["function"]["arguments"])["team"] for r in train)
    assert result.summary["arguments"]["route_ticket.team"] == {json.dumps(k): n for k, n in expected.most_common()}
    assert set(result.summary["arguments"]) == {"route_ticket.team", "route_ticket.priority"}
    # the split is by (random) trace id: "sales" is rare in training, or (all 4 in validation) unseen there
    team = [a for a in result.summary["advice"] if a["message"].startswith("route_ticket.team: ")]
    assert team and '"sales"' in team[0]["message"]
    assert (team[0]["code"], team[0]["advice"][:26]) in {
        ("rare_values", "A value seen a few times i"),
        ("unseen_values", "The model cannot learn an "),
    }
