"""Acceptance: OpenTelemetry traces from the unmodified clients — the langsmith SDK in OTel mode tracing a LangChain
tool-calling chain (apps/otel_chain.py, the model being the OpenAI stand-in) — stored as runs and exported by
``tracetune export`` as the tool-call record a LangChain run gives."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from tests.dataset_support import tokenizer_home
from tracetune.cli import app

from .helpers import KNOWN_CLIENT_WARNINGS

pytestmark = pytest.mark.filterwarnings(*KNOWN_CLIENT_WARNINGS)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tokenizer_home(tmp_path_factory)


def test_langsmith_otel_mode_traces_a_tool_calling_chain(traced, client, live_server, home, tmp_path):
    assert traced.result("otel_chain")["answer"] == [{"location": "Rome", "unit": "celsius"}]
    project = traced.project("otel_chain")
    runs = {r.name: r for r in client.list_runs(project_name=project)}
    root, llm = runs["otel-tools-chain"], runs["ChatOpenAI"]
    assert root.parent_run_id is None and root.run_type == "chain" and root.tags == ["otel"]
    assert llm.run_type == "llm" and llm.trace_id == root.id and str(llm.dotted_order).startswith(root.dotted_order)
    assert {r.trace_id for r in runs.values()} == {root.id}
    assert all(r.extra["otel"]["span_id"] for r in runs.values())  # they came as spans, not LangSmith runs
    out = tmp_path / "otel.jsonl"
    url = live_server.settings.database_url
    result = CliRunner().invoke(app, ["export", "--database-url", url, "--home", str(home), "--project", project,
                                      "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    (record,) = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"]
    (call,) = record["messages"][-1]["tool_calls"]
    assert call["function"]["name"] == "GetWeather"
    assert json.loads(call["function"]["arguments"]) == {"location": "Rome", "unit": "celsius"}
    assert [t["function"]["name"] for t in record["tools"]] == ["GetWeather"]
