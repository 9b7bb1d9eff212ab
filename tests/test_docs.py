"""The docs list every setting and every command; the light entry points stay light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.main import get_command

from tracetune.cli import app
from tracetune.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "settings.md").read_text()
    for name, field in Settings.model_fields.items():
        assert f"`TRACETUNE_{name.upper()}`" in text, f"docs/settings.md lacks TRACETUNE_{name.upper()}"
        assert field.description, f"setting {name} has no description"


def test_every_command_is_documented() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    root = get_command(app)
    names = []
    for name, cmd in root.commands.items():  # type: ignore[attr-defined]
        sub = getattr(cmd, "commands", None)
        names += [f"tracetune {name} {s}" for s in sub] if sub else [f"tracetune {name}"]
    for full in names:
        assert f"`{full}" in text, f"docs/cli.md lacks {full}"


def test_settings_read_the_prefixed_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TRACETUNE_HOME", str(tmp_path))
    monkeypatch.setenv("TRACETUNE_PORT", "9911")
    s = load_settings()
    assert s.home == tmp_path and s.port == 9911
    assert s.resolved_database_url == f"sqlite:///{tmp_path / 'tracetune.db'}"
    assert load_settings(port=1234).port == 1234  # a CLI flag beats the environment


def test_loopback_detection() -> None:
    assert Settings(host="127.0.0.1").is_loopback()
    assert Settings(host="::1").is_loopback()
    assert Settings(host="localhost").is_loopback()
    assert not Settings(host="0.0.0.0").is_loopback()
    assert not Settings(host="10.1.2.3").is_loopback()


def test_cli_and_server_import_no_torch() -> None:
    code = "import sys, tracetune.cli, tracetune.server.app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
