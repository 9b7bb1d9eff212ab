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
    assert named.exit_code == 2 and "cannot be stored as a dataset" in named.output


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
