"""``tracetune export`` and ``tracetune validate`` end to end through the CLI (both dialects for the store)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from tests.dataset_support import chain_root, chat_run, ingest, ticket_runs, tokenizer_home
from tracetune.cli import app

PROJECT = "cli"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tokenizer_home(tmp_path_factory)


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def export(db_url: str, home: Path, *args: Any) -> Any:
    return invoke("export", "--database-url", db_url, "--home", home, *args)


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def bad_runs() -> list[dict[str, Any]]:
    """A malformed message, an unknown role and tool-call arguments that are not JSON."""
    malformed = chat_run("hi", "hello", n=1)
    malformed["inputs"]["messages"].append(42)
    unknown_role = chat_run("hi", "hello", n=2)
    unknown_role["inputs"]["messages"][0]["role"] = "wizard"
    not_json = chat_run("hi", "hello", n=3)
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
    not_json["outputs"] = {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [call]}}]}
    return [malformed, unknown_role, not_json]


def test_bad_runs_are_skipped_and_counted_never_raised(store, db_url, home, tmp_path) -> None:
    ws = store.workspaces.ensure("default").id
    ingest(store, ws, [chat_run("What is 2+2?", "4"), *bad_runs(), chat_run("Name a colour.", "Red.", n=9)], PROJECT)
    out = tmp_path / "out.jsonl"
    result = export(db_url, home, "--project", PROJECT, "-o", out)
    assert result.exit_code == 0, result.output
    assert [r["messages"][-1]["content"] for r in lines(out)] in (["4", "Red."], ["Red.", "4"])
    text = result.stdout
    for reason in ("malformed_message", "unknown_role", "invalid_arguments"):
        assert reason in text, text
    assert "runs read" in text and "tokens per example" in text and "validation problems" in text


def test_split_writes_two_files_and_names_the_dataset(store, db_url, home, tmp_path) -> None:
    ws = store.workspaces.ensure("default").id
    sent = []
    for t in range(12):
        root = chain_root(t)
        sent += [root, chat_run(f"q{t}a", "a", trace=root), chat_run(f"q{t}b", "b", trace=root, n=1)]
    ingest(store, ws, sent, PROJECT)
    out = tmp_path / "data.jsonl"
    args = ("--project", PROJECT, "-o", out, "--split", "0.5", "--seed", "3", "--name", "qa", "--format", "hf")
    first = export(db_url, home, *args)
    assert first.exit_code == 0, first.output
    train, validation = lines(out), lines(tmp_path / "data.validation.jsonl")
    assert len(train) + len(validation) == 24 and train and validation
    assert not {r["messages"][1]["content"][:-1] for r in train} & {
        r["messages"][1]["content"][:-1] for r in validation
    }
    assert "qa v1" in first.stdout
    second = export(db_url, home, *args)
    assert second.exit_code == 0 and "qa v2" in second.stdout
    assert lines(out) == train  # deterministic


def test_format_dpo_pairs_each_correction_with_the_answer_it_replaced(store, db_url, home, tmp_path) -> None:
    """``--format dpo``: a corrected run → one OpenAI DPO line (the correction preferred); a run without a
    correction, or whose correction repeats the answer, gives none and is counted; the file is what a DPO job
    takes (the runner's own validation passes)."""
    from tracetune.chat.preference import validate_preference_record
    from tracetune.chat.validate import validate_lines

    ws = store.workspaces.ensure("default").id
    sent = [chat_run(f"What is {i} minus 10?", f"{10 - i}", n=i) for i in range(12, 17)]
    ingest(store, ws, sent, PROJECT)
    fixes = {0: "2", 1: "3", 3: "5", 4: "-6"}  # run 4's "correction" repeats its answer
    for i, text in fixes.items():
        store.feedback.create(
            ws, {"id": uuid.uuid4(), "run_id": uuid.UUID(sent[i]["id"]), "key": "correctness", "correction": text}
        )
    out = tmp_path / "pairs.jsonl"
    result = export(db_url, home, "--project", PROJECT, "-o", out, "--format", "dpo")
    assert result.exit_code == 0, result.output
    pairs = {r["input"]["messages"][-1]["content"]: r for r in lines(out)}
    assert sorted(pairs) == ["What is 12 minus 10?", "What is 13 minus 10?", "What is 15 minus 10?"]
    line = pairs["What is 12 minus 10?"]
    assert line["input"]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 12 minus 10?"},
    ]
    assert line["preferred_output"] == [{"role": "assistant", "content": "2"}]
    assert line["non_preferred_output"] == [{"role": "assistant", "content": "-2"}]
    report = validate_lines(out.read_bytes().splitlines(), validator=validate_preference_record)
    assert (report.valid_lines, report.problems) == (3, [])
    assert "no_correction" in result.stdout and "identical_outputs" in result.stdout, result.stdout
    named = export(db_url, home, "--project", PROJECT, "-o", out, "--format", "dpo", "--name", "pairs")
    assert named.exit_code == 0 and "pairs v1" in named.stdout, named.output
    from tracetune.convert.examples import iter_dataset_records

    version = store.datasets.list(ws, limit=1)[0]
    stored = list(iter_dataset_records(store, ws, version["id"]))
    assert [r["record"] for r in stored] == lines(out)  # the dataset holds the DPO lines, byte for byte
    by_question = {r["record"]["input"]["messages"][-1]["content"]: r["run_ids"] for r in stored}
    assert by_question["What is 12 minus 10?"] == [sent[0]["id"]]  # lineage: the corrected run


def test_format_dpo_pairs_disliked_runs_with_liked_runs_of_the_same_input(store, db_url, home, tmp_path) -> None:
    """``--rating-key``: a disliked run (its own or its trace root's newest score <= --bad-score) is paired with a
    liked run (>= --good-score) of exactly the same input, across traces; both runs are the pair's lineage, one
    input's pairs stay on one side of the split; disliked runs nothing liked answers are counted, as are liked
    runs left over and middling ratings; a correction takes precedence over the rating."""
    ws = store.workspaces.ensure("default").id
    runs: dict[str, dict[str, Any]] = {}
    scores: dict[str, float] = {}
    sent: list[dict[str, Any]] = []

    def run(label: str, question: str, answer: str, score: float | None, *, on_root: bool = False) -> None:
        n = len(sent)
        if on_root:  # the thumbs is on the trace (the agent's root), the LLM call its child
            root = chain_root(n)
            sent.append(root)
            runs[label] = chat_run(question, answer, trace=root, n=n)
            scores[root["id"]] = score  # type: ignore[assignment]
        else:
            runs[label] = chat_run(question, answer, n=n)
            if score is not None:
                scores[runs[label]["id"]] = score
        sent.append(runs[label])

    run("liked0", "What is 4 minus 6?", "-2", 1.0, on_root=True)
    run("disliked0", "What is 4 minus 6?", "2", 0.0)
    run("liked1", "What is 9 minus 3?", "6", 1.0)
    run("disliked1a", "What is 9 minus 3?", "-6", 0.0, on_root=True)
    run("disliked1b", "What is 9 minus 3?", "3", -1.0)
    run("only_disliked", "What is 1 minus 8?", "7", 0.0)
    run("only_liked", "What is 5 minus 5?", "0", 1.0)
    run("middling", "What is 5 minus 5?", "1", 0.5)
    run("other_input", "what is 4 minus 6", "2", 0.0)  # not the same input as liked0's
    run("corrected", "What is 2 minus 9?", "7", 0.0)
    ingest(store, ws, sent, PROJECT)
    for run_id, score in scores.items():
        store.feedback.create(ws, {"id": uuid.uuid4(), "run_id": uuid.UUID(run_id), "key": "thumbs", "score": score})
    store.feedback.create(
        ws, {"id": uuid.uuid4(), "run_id": uuid.UUID(runs["corrected"]["id"]), "key": "fix", "correction": "-7"}
    )
    out = tmp_path / "pairs.jsonl"
    args = ("--project", PROJECT, "-o", out, "--format", "dpo", "--rating-key", "thumbs", "--split", "0.5")
    result = export(db_url, home, *args, "--bad-score", "0")
    assert result.exit_code == 0, result.output
    got = lines(out) + lines(tmp_path / "pairs.validation.jsonl")
    answers = sorted(
        (
            r["input"]["messages"][-1]["content"],
            r["preferred_output"][0]["content"],
            r["non_preferred_output"][0]["content"],
        )
        for r in got
    )
    assert answers == [
        ("What is 2 minus 9?", "-7", "7"),
        ("What is 4 minus 6?", "-2", "2"),
        ("What is 9 minus 3?", "6", "-6"),
        ("What is 9 minus 3?", "6", "3"),
    ]
    sides = {}
    for side, path in (("train", out), ("validation", tmp_path / "pairs.validation.jsonl")):
        for r in lines(path):
            sides.setdefault(r["input"]["messages"][-1]["content"], set()).add(side)
    assert all(len(s) == 1 for s in sides.values()), sides
    text = " ".join(result.stdout.split())
    assert "pairs from corrections / ratings │ 1 / 3" in text, result.stdout
    assert "disliked runs no liked run pairs │ 2" in text, result.stdout  # only_disliked and other_input
    assert "no_pair │ 1" in text and "no_correction │ 1" in text, result.stdout  # only_liked; middling

    from tracetune.convert.dataset_builder import ExportOptions, Selection
    from tracetune.convert.export import preview_dataset

    built, summary = preview_dataset(
        store, ws, Selection(project=PROJECT), ExportOptions(format="dpo", rating_key="thumbs"), home=home
    )
    assert summary["preference"] == {"from_corrections": 1, "from_ratings": 3, "unpaired_disliked": 2}
    assert summary["skipped"] == {"no_correction": 1, "no_pair": 1}
    lineage = {tuple(b.run_ids) for b in built}
    assert (runs["liked0"]["id"], runs["disliked0"]["id"]) in lineage
    assert (runs["liked1"]["id"], runs["disliked1b"]["id"]) in lineage
    assert (runs["corrected"]["id"],) in lineage
    for bad, message in (
        (("--format", "openai", "--rating-key", "thumbs"), "needs format 'dpo'"),
        (("--format", "dpo", "--bad-score", "1"), "must be below good_score"),
    ):
        refused = export(db_url, home, "--project", PROJECT, "-o", out, *bad)
        assert refused.exit_code == 2 and message in refused.output, refused.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--project", "nope", "-o", "x.jsonl"), "no project named 'nope'"),
        (("--project", PROJECT, "-o", "x.jsonl", "--filter", "eq(name"), "filter"),
        (("--project", PROJECT, "-o", "x.jsonl", "--format", "csv"), "unknown format 'csv'"),
        (("--project", PROJECT, "-o", "x.jsonl", "--split", "1.5"), "split must be between 0 and 1"),
        (("--project", PROJECT, "--input", "runs.jsonl", "-o", "x.jsonl"), "exactly one of --project"),
        (("--project", PROJECT), "give --output FILE, --name DATASET, or both"),
        (("--project", PROJECT, "-o", "x.jsonl", "--model", "no-such-model"), "no-such-model"),
        (("--project", PROJECT, "-o", "x.jsonl", "--min-score", "1"), "min_score needs a feedback_key"),
    ],
)
def test_export_errors_are_one_line_and_exit_2(store, db_url, home, tmp_path, monkeypatch, args, message) -> None:
    ingest(store, store.workspaces.ensure("default").id, [chat_run("q", "a")], PROJECT)
    monkeypatch.chdir(tmp_path)
    result = export(db_url, home, *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_export_from_a_file_of_runs(home, tmp_path) -> None:
    runs = tmp_path / "runs.jsonl"
    runs.write_text("".join(json.dumps(r) + "\n" for r in [chat_run("q", "a"), *bad_runs()]) + "{broken\n")
    out = tmp_path / "out.jsonl"
    result = invoke("export", "--input", runs, "-o", out, "--home", home)
    assert result.exit_code == 0, result.output
    assert lines(out) == [
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a"},
            ]
        }
    ]
    assert "invalid_json" in result.stdout and "unknown_role" in result.stdout


def test_export_shows_argument_values_and_advice(home, tmp_path) -> None:
    runs = tmp_path / "tickets.jsonl"
    runs.write_text("".join(json.dumps(r) + "\n" for r in ticket_runs(30, rare_team="sales")))
    result = invoke("export", "--input", runs, "-o", tmp_path / "out.jsonl", "--home", home)
    assert result.exit_code == 0, result.output
    assert "values of route_ticket.team (train)" in result.stdout
    assert 'warning: route_ticket.team: "sales" has fewer than 5 training examples' in result.stdout
    assert "what to do: A value seen a few times is rarely learned" in result.stdout


# -- validate ----------------------------------------------------------------------------------------------

GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}


def test_validate_reports_every_planted_error_with_its_line(home, tmp_path) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
    planted = [
        json.dumps(GOOD),
        '{"messages": [',  # 2: not JSON
        json.dumps({"messages": [{"role": "wizard", "content": "x"}, {"role": "assistant", "content": "y"}]}),  # 3
        json.dumps(GOOD),
        json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [call]}]}),  # 5
        json.dumps({"messages": [{"role": "user", "content": "word " * 9000}, {"role": "assistant", "content": "ok"}]}),
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "assistant", "content": '<tool_call>{"name": "f"}</tool_call>'},
                ]
            }
        ),  # 7: an answer whose text parses back as a call
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(planted) + "\n")
    result = invoke("validate", path, "--home", home)
    assert result.exit_code == 2, result.output
    out = result.stdout
    expected = {
        2: "[invalid_json]",
        3: "messages[0].role: 'wizard' is not one of",
        5: "[arguments_not_json]",
        6: "over the target model's context length of 8192 [over_context]",
        7: "messages[1].content: the rendered calls do not parse back",
    }
    for line, text in expected.items():
        assert any(row.startswith(f"line {line}: ") and text in row for row in out.splitlines()), (line, out)
    assert "[tool_call_roundtrip]" in out and "[invalid_role]" in out
    assert "7 lines, 2 valid; 5 errors, 0 warnings" in out


def test_validate_a_clean_file_exits_0(home, tmp_path) -> None:
    path = tmp_path / "good.jsonl"
    path.write_text(json.dumps(GOOD) + "\n")
    result = invoke("validate", path, "--home", home)
    assert result.exit_code == 0, result.output
    assert "1 line, 1 valid; 0 errors, 0 warnings" in result.stdout
    assert "warning" not in result.stdout.replace("0 warnings", "")


def test_validate_warns_about_calls_of_tools_the_records_do_not_declare(home, tmp_path) -> None:
    call = {"name": "Calculator", "arguments": '{"num1": 2, "num2": 3}'}
    converted = {"messages": [{"role": "user", "content": "2+3"}, {"role": "assistant", "function_call": call}]}
    path = tmp_path / "langchain.jsonl"
    path.write_text(json.dumps(converted) + "\n")
    result = invoke("validate", path, "--home", home)
    assert result.exit_code == 0, result.output
    assert "warning: 1/1 training records call tools (Calculator) but declare none" in result.stdout


def test_validate_a_missing_file(home, tmp_path) -> None:
    result = invoke("validate", tmp_path / "nope.jsonl", "--home", home)
    assert result.exit_code == 2 and result.stderr.startswith("error: no such file")


def test_export_output_is_what_validate_accepts(store, db_url, home, tmp_path) -> None:
    ws = store.workspaces.ensure("default").id
    root = chain_root()
    ingest(store, ws, [root, chat_run("q1", "a1", trace=root), chat_run(f"id {uuid.uuid4()}", "a2")], PROJECT)
    out = tmp_path / "out.jsonl"
    assert export(db_url, home, "--project", PROJECT, "-o", out).exit_code == 0
    result = invoke("validate", out, "--home", home)
    assert result.exit_code == 0 and "2 lines, 2 valid" in result.stdout
