"""A base install (``pip install tracetune``, no ``models`` extra) serves traces and says what it cannot do: a
request that needs a missing package is a 503 naming the install command, never a 500, and start-up says which
capabilities are off. The missing packages are made missing for real in the server's process: a
``sitecustomize`` on its PYTHONPATH refuses to import them (what Python does when they are not installed)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.server.support import Served, new_run
from tracetune.capabilities import CAPABILITIES

BLOCKER = """
import os, sys

_BLOCKED = set(os.environ["TT_TEST_BLOCK_IMPORTS"].split(","))


class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
"""
MODEL_PACKAGES = sorted({name for names in CAPABILITIES.values() for name in names})
CALC = {
    "type": "function",
    "function": {
        "name": "Calculator",
        "parameters": {"type": "object", "properties": {"a": {"type": "number"}}, "required": ["a"]},
    },
}


def _served_without(tmp_path: Path, packages: list[str]) -> Served:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {"PYTHONPATH": str(site), "TT_TEST_BLOCK_IMPORTS": ",".join(packages)}
    return Served(tmp_path / "home", None, env=env)


@pytest.fixture(scope="module")
def base_install(tmp_path_factory: pytest.TempPathFactory):
    server = _served_without(tmp_path_factory.mktemp("base"), MODEL_PACKAGES)
    try:
        yield server
    finally:
        server.stop()


def test_a_base_install_serves_traces_and_lists_models(base_install: Served, project_name: str) -> None:
    http = base_install.http
    run = new_run(project_name)
    assert http.post("/api/v1/runs", json=run).status_code == 202
    assert http.get(f"/api/v1/runs/{run['id']}").json()["name"] == "chain"
    models = http.get("/v1/models")
    assert models.status_code == 200 and "smollm2-135m-instruct" in [m["id"] for m in models.json()["data"]]
    off = http.get("/healthz").json()["capabilities_off"]
    assert set(off) == set(CAPABILITIES)
    assert "llguidance" in off["constrained decoding (forced tool calls, response_format json_schema)"]


@pytest.mark.parametrize(
    ("extra", "package"),
    [
        ({"tools": [CALC], "tool_choice": {"type": "function", "function": {"name": "Calculator"}}}, "llguidance"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}},
            "llguidance",
        ),
        ({}, None),  # a plain answer needs the model stack (torch first)
    ],
)
def test_a_request_needing_a_missing_package_is_503_with_the_install_command(
    base_install: Served, extra: dict, package: str | None
) -> None:
    body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "2+2?"}], **extra}
    r = base_install.http.post("/v1/chat/completions", json=body)
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["code"] == "missing_dependency" and error["type"] == "server_error"
    assert "pip install" in error["message"] and "tracetune[models]" in error["message"]
    if package:
        assert f"'{package}'" in error["message"]


def test_start_up_says_which_capabilities_are_off(tmp_path: Path) -> None:
    server = _served_without(tmp_path, ["llguidance"])
    try:
        assert server.http.get("/healthz").json()["capabilities_off"] == {
            "constrained decoding (forced tool calls, response_format json_schema)": "missing llguidance"
        }
    finally:
        server.stop()
    time.sleep(0.1)
    err = server.proc.stderr.read() if server.proc.stderr else ""
    assert "off: constrained decoding" in err and "llguidance not installed" in err and "pip install" in err
    assert "off: fine-tuning" not in err
