"""The ``tracetune`` command line on both dialects: keys, runs list (table and JSON), and its one-line errors
with exit code 2."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tests.conftest import _need_postgres, drop_postgres_database, make_postgres_database
from tracetune.cli import app
from tracetune.store.blobs import Blobs

Cli = Callable[..., Result]


def _runner(db_url: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``cli(*args)`` runs tracetune on ``db_url`` (``--database-url``) with TRACETUNE_HOME=``home``."""
    for name in ("TRACETUNE_DATABASE_URL", "TRACETUNE_HOST", "TRACETUNE_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRACETUNE_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")  # rich tables: no truncated cells
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, [*args, "--database-url", db_url])

    return run


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The CLI on a blank database of this test."""
    return _runner(db_url, tmp_path, monkeypatch)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def populated(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[tuple[str, dict[str, str]]]:
    """A database (one per dialect, shared by the read-only tests) holding project ``cli-proj``."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('cli-db') / 'tracetune.db'}"
        yield url, _ingest(url, "cli-proj")
        return
    admin = _need_postgres()
    url, name = make_postgres_database(admin)
    try:
        yield url, _ingest(url, "cli-proj")
    finally:
        drop_postgres_database(admin, name)


@pytest.fixture
def cli_on(populated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Cli, dict[str, str]]:
    url, ids = populated
    return _runner(url, tmp_path, monkeypatch), ids


def _one_line_error(result: Result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_keys_create_list_revoke(cli: Cli) -> None:
    created = cli("keys", "create", "--workspace", "w", "--name", "laptop")
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("tt_") and len(key) > 30
    assert "it is not shown again" in created.stderr

    listed = cli("keys", "list")
    assert listed.exit_code == 0, listed.output
    [row] = [line for line in listed.stdout.splitlines() if key[:10] in line]
    assert "w" in row.split() or " w " in row
    assert "laptop" in row and "active" in row
    assert key not in listed.stdout  # only the prefix is ever shown

    revoked = cli("keys", "revoke", key[:10] + "…")
    assert revoked.exit_code == 0, revoked.output
    assert "revoked 1 key(s)" in revoked.stdout
    assert "revoked" in next(line for line in cli("keys", "list").stdout.splitlines() if key[:10] in line)
    assert "no active key starts with" in _one_line_error(cli("keys", "revoke", key[:10]))


@pytest.mark.parametrize(
    ("args", "option"), [(["--workspace", "w" * 201], "--workspace"), (["--workspace", "w", "--name", ""], "--name")]
)
def test_keys_create_refuses_names_the_store_cannot_hold(cli: Cli, args: list[str], option: str) -> None:
    """PostgreSQL would refuse them with a traceback; both dialects get the CLI's one-line error."""
    assert f"{option} must be 1 to 200 characters" in _one_line_error(cli("keys", "create", *args))
    assert "tt_" not in cli("keys", "list").stdout


def _ingest(db_url: str, project: str) -> dict[str, str]:
    from tracetune.ingest.service import IngestService
    from tracetune.store import open_store

    store = open_store(db_url, sqlite_synchronous="NORMAL")
    try:
        ws = store.workspaces.ensure("default")
        ids = {name: str(uuid.uuid4()) for name in ("alpha", "beta", "gamma", "delta")}
        runs: list[dict[str, Any]] = [
            {
                "id": ids["alpha"],
                "name": "alpha",
                "run_type": "chain",
                "start_time": "2026-01-01T00:00:00Z",
                "end_time": "2026-01-01T00:00:02.5Z",
                "outputs": {"ok": 1},
            },
            {
                "id": ids["beta"],
                "name": "beta",
                "run_type": "llm",
                "parent_run_id": ids["alpha"],
                "trace_id": ids["alpha"],
                "start_time": "2026-01-01T00:00:01Z",
                "end_time": "2026-01-01T00:00:02Z",
                "outputs": {
                    "llm_output": {"token_usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}}
                },
            },
            {
                "id": ids["gamma"],
                "name": "gamma",
                "run_type": "chain",
                "start_time": "2026-01-02T00:00:00Z",
                "end_time": "2026-01-02T00:00:01Z",
                "error": "ValueError('nope')",
            },
            {"id": ids["delta"], "name": "delta", "run_type": "tool", "start_time": "2026-01-03T00:00:00Z"},
        ]
        service = IngestService(store, Blobs(Path("/nonexistent")))
        service.batch(ws.id, {"post": [{**r, "session_name": project, "inputs": {"q": r["name"]}} for r in runs]})
        service.feedback(ws.id, {"key": "thumbs", "score": 1, "run_id": ids["alpha"]})
        return ids
    finally:
        store.close()


def test_runs_list_prints_a_table(cli_on: tuple[Cli, dict[str, str]]) -> None:
    cli, ids = cli_on
    result = cli("runs", "list", "--project", "cli-proj")
    assert result.exit_code == 0, result.output
    body = [line for line in result.stdout.splitlines() if line.count("│") > 3]  # the header uses ┃
    rows = {line.split("│")[2].strip(): line for line in body}
    assert set(rows) == {"alpha", "beta", "gamma", "delta"}
    assert ids["alpha"][:8] in rows["alpha"]
    assert "success" in rows["alpha"] and "2.500" in rows["alpha"] and "thumbs=1" in rows["alpha"]
    assert "llm" in rows["beta"] and "11" in rows["beta"]
    assert "error" in rows["gamma"]
    assert "pending" in rows["delta"] and "tool" in rows["delta"]
    assert list(rows) == ["delta", "gamma", "beta", "alpha"]  # newest first
    assert "4 run(s)" in result.stderr


def test_runs_list_json_prints_one_object_per_line(cli_on: tuple[Cli, dict[str, str]]) -> None:
    cli, ids = cli_on
    result = cli("runs", "list", "--project", "cli-proj", "--json")
    assert result.exit_code == 0, result.output
    runs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["name"] for r in runs] == ["delta", "gamma", "beta", "alpha"]
    by_name = {r["name"]: r for r in runs}
    assert by_name["alpha"]["id"] == ids["alpha"]
    assert by_name["alpha"]["inputs"] == {"q": "alpha"}
    assert by_name["alpha"]["feedback_stats"] == {"thumbs": {"n": 1, "avg": 1.0}}
    assert by_name["beta"]["parent_run_id"] == ids["alpha"]
    assert by_name["beta"]["total_tokens"] == 11
    assert by_name["gamma"]["error"] == "ValueError('nope')"


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--limit", "2"], ["delta", "gamma"]),
        (["--root"], ["delta", "gamma", "alpha"]),
        (["--run-type", "llm"], ["beta"]),
        (["--filter", 'eq(status, "error")'], ["gamma"]),
        (["--filter", "gt(latency, 2)"], ["alpha"]),
        (["--trace-filter", 'eq(name, "alpha")'], ["beta", "alpha"]),
    ],
)
def test_runs_list_selections(cli_on: tuple[Cli, dict[str, str]], args: list[str], names: list[str]) -> None:
    cli, _ = cli_on
    result = cli("runs", "list", "--project", "cli-proj", "--json", *args)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["name"] for line in result.stdout.splitlines()] == names


@pytest.mark.parametrize(
    ("expression", "position"),
    [('foo(name, "x")', 0), ('eq(name "x")', 8), ('and(eq(name, "x"), )', 19), ("gt(latency, 'x')", 12)],
)
def test_runs_list_with_a_bad_filter(cli_on: tuple[Cli, dict[str, str]], expression: str, position: int) -> None:
    cli, _ = cli_on
    line = _one_line_error(cli("runs", "list", "--project", "cli-proj", "--filter", expression))
    assert f"position {position}" in line
    assert "'filter'" in line
    assert "Traceback" not in line


def test_runs_list_of_an_unknown_project_or_workspace(cli_on: tuple[Cli, dict[str, str]]) -> None:
    cli, _ = cli_on
    assert "no project named 'nope'" in _one_line_error(cli("runs", "list", "--project", "nope"))
    line = _one_line_error(cli("runs", "list", "--project", "cli-proj", "--workspace", "ghost"))
    assert "no workspace named 'ghost'" in line


def test_log_lines_are_throttled_and_carry_an_eta() -> None:
    from tracetune.cli._common import LogLines

    said: list[str] = []
    lines = LogLines(said.append, every_s=3600)
    for done in range(0, 11):
        lines.update("training step", done, 10, f"loss {1 / (done + 1):.2f}")
    lines.update("exporting", 5)
    assert said[0] == "training step: 0/10 (0%)  loss 1.00"  # the start at once, then nothing for an hour …
    assert said[1] == "training step: 10/10 (100%)  loss 0.09"  # … but the end always
    assert said[2] == "exporting: 5" and len(said) == 3
    every = LogLines(said.append, every_s=0)
    every.update("x", 0, 4)
    every.update("x", 1, 4)
    assert said[-1].startswith("x: 1/4 (25%) ETA ")


def test_a_blob_url_that_cannot_be_opened_is_one_line_and_exit_2(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACETUNE_BLOB_URL", "nosuchproto://bucket/x")
    for args in (["worker", "--once"], ["models", "list"]):
        result = cli(*args)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: TRACETUNE_BLOB_URL 'nosuchproto://bucket/x' cannot be opened")
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
