"""``tracetune aliases``: set, list, show the history, roll back, remove — on the store the servers read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from tracetune.cli import app
from tracetune.models import DEFAULT_MODEL_ID


def aliases(db_url: str, home: Path, *args: Any) -> Any:
    return CliRunner().invoke(app, ["aliases", *map(str, args), "--database-url", db_url, "--home", str(home)])


def test_set_list_show_rollback_remove(db_url, tmp_path) -> None:
    assert aliases(db_url, tmp_path, "set", "front", DEFAULT_MODEL_ID).exit_code == 0
    assert aliases(db_url, tmp_path, "set", "bot", "front").exit_code == 0
    out = aliases(db_url, tmp_path, "set", "bot", DEFAULT_MODEL_ID)
    assert out.exit_code == 0 and f"bot v2 → {DEFAULT_MODEL_ID}  (set," in out.stdout
    listed = aliases(db_url, tmp_path, "list").stdout.splitlines()
    assert [line.split("  (")[0] for line in listed] == [
        f"bot v2 → {DEFAULT_MODEL_ID}",
        f"front v1 → {DEFAULT_MODEL_ID}",
    ]
    rolled = aliases(db_url, tmp_path, "rollback", "bot")
    assert rolled.exit_code == 0 and "bot v3 → front  (rollback to v1," in rolled.stdout
    history = aliases(db_url, tmp_path, "show", "bot").stdout.splitlines()
    assert [line.split(" → ")[0] for line in history] == ["bot v3", "bot v2", "bot v1"]
    cycle = aliases(db_url, tmp_path, "set", "front", "bot")
    assert cycle.exit_code == 2 and "alias cycle: front → bot → front" in cycle.output
    missing = aliases(db_url, tmp_path, "set", "x", "no-such-model")
    assert missing.exit_code == 2 and "no-such-model" in missing.output
    assert aliases(db_url, tmp_path, "remove", "bot").exit_code == 0
    assert "bot" not in aliases(db_url, tmp_path, "list").stdout
    assert aliases(db_url, tmp_path, "remove", "bot").exit_code == 2
