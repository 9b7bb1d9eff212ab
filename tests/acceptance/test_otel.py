"""Acceptance: OpenTelemetry traces from the unmodified clients — the langsmith SDK in OTel mode tracing a LangChain
tool-calling chain (apps/otel_chain.py, the model being the OpenAI stand-in) — stored as runs and exported by
``tracetune export`` as the tool-call record a LangChain run gives."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.dataset_support import export_records, tokenizer_home
from tests.serve.support import WEATHER, WEATHER_TOOL

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
    (record,) = export_records(live_server.settings.database_url, home, project, tmp_path / "otel.jsonl")
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"]
    (call,) = record["messages"][-1]["tool_calls"]
    assert call["function"]["name"] == "GetWeather"
    assert json.loads(call["function"]["arguments"]) == {"location": "Rome", "unit": "celsius"}
    assert [t["function"]["name"] for t in record["tools"]] == ["GetWeather"]


@pytest.fixture(scope="module")
def chat_url(tmp_path_factory) -> str:
    """tracetune's own chat completions on the real SmolLM2 (the shared server of tests/serve/support.py)."""
    from tests.serve.support import smollm2_server

    return smollm2_server(tmp_path_factory).url + "/v1"


def _instrumented_call(instrumentor: Any, live_server: Any, chat_url: str, project: str) -> None:
    """One forced tool call through the openai client, instrumented by ``instrumentor`` and exported by the OTel
    SDK's batch processor to tracetune's generic OTLP endpoint."""
    from openai import OpenAI
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    exporter = OTLPSpanExporter(endpoint=live_server.url + "/otel/v1/traces", headers={"Langsmith-Project": project})
    provider.add_span_processor(BatchSpanProcessor(exporter))
    instrumentor.instrument(tracer_provider=provider)
    try:
        with OpenAI(base_url=chat_url, api_key="sk-local") as openai_client:
            openai_client.chat.completions.create(
                model="gpt-4o-mini",
                messages=WEATHER,
                tools=[WEATHER_TOOL],
                tool_choice={"type": "function", "function": {"name": "get_weather"}},
                temperature=0,
                max_tokens=60,
            )
    finally:
        instrumentor.uninstrument()
        provider.shutdown()  # flushes the batch


@pytest.mark.parametrize("instrumentation", ["opentelemetry-instrumentation-openai-v2", "openinference"])
def test_instrumented_openai_calls_export_as_tool_calls(
    instrumentation, live_server, chat_url, home, tmp_path, monkeypatch
):
    """The official OpenTelemetry instrumentation of the openai client, and OpenInference's, around a call to
    tracetune's own chat completions: a forced tool call on the real SmolLM2."""
    if instrumentation == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor
    else:
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        # message content is opt-in; the latest GenAI conventions put it on the span as JSON attributes
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    project = f"otel-{instrumentation}-{uuid.uuid4().hex[:6]}"
    _instrumented_call(OpenAIInstrumentor(), live_server, chat_url, project)
    (record,) = export_records(live_server.settings.database_url, home, project, tmp_path / "instrumented.jsonl")
    assert record["messages"][:2] == WEATHER
    (call,) = record["messages"][-1]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"])["location"]
    if instrumentation == "openinference":
        assert record["tools"] == [WEATHER_TOOL]
    # opentelemetry-instrumentation-openai-v2 (2.4b0) does not record the tools offered (no
    # gen_ai.tool.definitions), so its records have none; tests/ingest/test_otlp.py covers that attribute.
