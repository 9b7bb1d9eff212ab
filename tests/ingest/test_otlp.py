"""OTLP/HTTP ingest end to end: spans made by the real OpenTelemetry SDK, sent by its OTLP exporter (protobuf)
or as OTLP/JSON (gzip too) to a live server, read back through the LangSmith API and exported by
``tracetune export`` as training records — for each convention an app may use (GenAI semantic conventions in
their current JSON form and the older flattened one, OpenInference). Bad bodies are 4xx naming the place and
store nothing."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from tests.conftest import LiveServer
from tests.dataset_support import export_records, tokenizer_home
from tracetune.config import Settings

SYSTEM = "You are a calculator."
QUESTION = "What is 2+3?"
TOOL = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
    },
}
ARGUMENTS = {"expression": "2+3"}


def semconv_json() -> dict[str, Any]:
    """OpenTelemetry GenAI semantic conventions, current form (JSON attributes of typed parts)."""
    fn = TOOL["function"]
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "calc-model",
        "gen_ai.request.temperature": 0.0,
        "gen_ai.system_instructions": json.dumps([{"type": "text", "content": SYSTEM}]),
        "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": QUESTION}]}]),
        "gen_ai.output.messages": json.dumps(
            [
                {
                    "role": "assistant",
                    "parts": [{"type": "tool_call", "id": "call_1", "name": "calculator", "arguments": ARGUMENTS}],
                    "finish_reason": "tool_call",
                }
            ]
        ),
        "gen_ai.tool.definitions": json.dumps([{"type": "function", **fn}]),
        "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 9,
        "my.app.flavour": "vanilla",  # unknown: kept
    }


def semconv_flat() -> dict[str, Any]:
    """The older flattened GenAI form (OpenLLMetry): gen_ai.prompt.N.* / gen_ai.completion.N.*."""
    fn = TOOL["function"]
    return {
        "gen_ai.system": "openai",
        "gen_ai.request.model": "calc-model",
        "gen_ai.prompt.0.role": "system",
        "gen_ai.prompt.0.content": SYSTEM,
        "gen_ai.prompt.1.role": "user",
        "gen_ai.prompt.1.content": QUESTION,
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.finish_reason": "tool_calls",
        "gen_ai.completion.0.tool_calls.0.id": "call_1",
        "gen_ai.completion.0.tool_calls.0.name": "calculator",
        "gen_ai.completion.0.tool_calls.0.arguments": json.dumps(ARGUMENTS),
        "llm.request.functions.0.name": fn["name"],
        "llm.request.functions.0.description": fn["description"],
        "llm.request.functions.0.parameters": json.dumps(fn["parameters"]),
        "gen_ai.usage.prompt_tokens": 30,
        "gen_ai.usage.completion_tokens": 9,
        "llm.request.type": "chat",
        "my.app.flavour": "vanilla",
    }


def openinference() -> dict[str, Any]:
    """OpenInference (Arize/Phoenix) attributes."""
    return {
        "openinference.span.kind": "LLM",
        "llm.model_name": "calc-model",
        "llm.input_messages.0.message.role": "system",
        "llm.input_messages.0.message.content": SYSTEM,
        "llm.input_messages.1.message.role": "user",
        "llm.input_messages.1.message.content": QUESTION,
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_1",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "calculator",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": json.dumps(ARGUMENTS),
        "llm.tools.0.tool.json_schema": json.dumps(TOOL),
        "llm.token_count.prompt": 30,
        "llm.token_count.completion": 9,
        "llm.token_count.total": 39,
        "my.app.flavour": "vanilla",
    }


def semconv_events() -> dict[str, Any]:
    """The GenAI event form: the messages as span events (made in ``make_spans``), the rest as attributes."""
    fn = TOOL["function"]
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "calc-model",
        "gen_ai.tool.definitions": json.dumps([{"type": "function", **fn}]),
        "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 9,
        "my.app.flavour": "vanilla",
    }


CALL = {"id": "call_1", "type": "function", "function": {"name": "calculator", "arguments": json.dumps(ARGUMENTS)}}
EVENTS = {
    "semconv_events": [
        ("gen_ai.system.message", {"content": SYSTEM}),
        ("gen_ai.user.message", {"content": QUESTION}),
        ("gen_ai.choice", {"message": json.dumps({"tool_calls": [CALL]}), "finish_reason": "tool_calls"}),
    ]
}
CONVENTIONS = {
    "semconv_json": semconv_json,
    "semconv_flat": semconv_flat,
    "semconv_events": semconv_events,
    "openinference": openinference,
}


@pytest.fixture
def server(store, db_url, tmp_path) -> Iterator[LiveServer]:
    live = LiveServer(Settings(home=tmp_path / "home", database_url=db_url), store)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tokenizer_home(tmp_path_factory)


def make_spans(
    attributes: dict[str, Any], *, error: bool = False, events: Sequence[tuple[str, dict[str, Any]]] = ()
) -> list[ReadableSpan]:
    """An agent span (chain) around one LLM span (with ``events``), made by the real SDK."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "calc-app"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("calc-app")
    with tracer.start_as_current_span("agent") as agent:
        agent.set_attribute("input.value", json.dumps({"question": QUESTION}))
        with tracer.start_as_current_span("chat calc-model") as llm:
            llm.set_attributes(attributes)
            for name, event_attributes in events:
                llm.add_event(name, event_attributes)
        if error:
            agent.set_status(Status(StatusCode.ERROR, "the calculator broke"))
    provider.shutdown()
    return list(memory.get_finished_spans())


def send(server: LiveServer, spans: list[ReadableSpan], project: str, path: str = "/otel/v1/traces") -> None:
    exporter = OTLPSpanExporter(endpoint=server.url + path, headers={"Langsmith-Project": project})
    assert exporter.export(spans).name == "SUCCESS"
    exporter.shutdown()


def runs_of(server: LiveServer, project: str) -> dict[str, dict[str, Any]]:
    sessions = httpx.get(server.langsmith_url + "/sessions", params={"name": project}).json()
    if not sessions:
        return {}
    body = {"session": [sessions[0]["id"]], "limit": 100}
    return {r["name"]: r for r in httpx.post(server.langsmith_url + "/runs/query", json=body).json()["runs"]}


@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_an_llm_span_becomes_a_tool_call_record(server, db_url, home, tmp_path, convention) -> None:
    project = f"otel-{convention}"
    spans = make_spans(CONVENTIONS[convention](), events=EVENTS.get(convention, []))
    send(server, spans, project)
    runs = runs_of(server, project)
    agent, llm = runs["agent"], runs["chat calc-model"]
    assert (agent["run_type"], llm["run_type"]) == ("chain", "llm")
    assert agent["parent_run_id"] is None and agent["trace_id"] == agent["id"]
    assert llm["parent_run_id"] == agent["id"] and llm["trace_id"] == agent["id"]
    assert llm["dotted_order"].startswith(agent["dotted_order"] + ".")
    assert (llm["prompt_tokens"], llm["completion_tokens"]) == (30, 9)
    assert llm["extra"]["otel"]["attributes"]["my.app.flavour"] == "vanilla"
    assert llm["extra"]["otel"]["resource"]["service.name"] == "calc-app"
    assert agent["inputs"] == {"question": QUESTION}
    (record,) = export_records(db_url, home, project, tmp_path / "out.jsonl")
    assert record["messages"][:2] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    (call,) = record["messages"][2]["tool_calls"]
    assert call["function"]["name"] == "calculator" and json.loads(call["function"]["arguments"]) == ARGUMENTS
    assert record["tools"] == [TOOL]


def otlp_json(spans: list[ReadableSpan]) -> dict[str, Any]:
    """The OTLP/JSON form of ``spans``: protobuf's JSON mapping with the ids in hex, as the spec has them."""
    doc = json_format.MessageToDict(encode_spans(spans))
    for resource in doc["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = bytes(__import__("base64").b64decode(span[key])).hex()
    return doc


def test_json_gzip_and_any_order_over_several_requests(server, tmp_path) -> None:
    project = "otel-json"
    agent_span, llm_span = sorted(make_spans(semconv_json(), error=True), key=lambda s: s.name)
    url = server.url + "/api/v1/otel/v1/traces"
    headers = {"Content-Type": "application/json", "Langsmith-Project": project}
    child = httpx.post(url, content=orjson.dumps(otlp_json([llm_span])), headers=headers)  # the child first
    assert child.status_code == 200 and child.json() == {}
    llm = runs_of(server, project)["chat calc-model"]
    assert llm["status"] == "success" and llm["trace_id"] == llm["id"]  # its parent has not arrived yet
    body = gzip.compress(orjson.dumps(otlp_json([agent_span])))
    parent = httpx.post(url, content=body, headers={**headers, "Content-Encoding": "gzip"})
    assert parent.status_code == 200
    runs = runs_of(server, project)
    assert runs["chat calc-model"]["trace_id"] == runs["agent"]["id"] == runs["chat calc-model"]["parent_run_id"]
    assert runs["agent"]["status"] == "error" and runs["agent"]["error"] == "the calculator broke"


def one_span_json() -> dict[str, Any]:
    return otlp_json(make_spans(semconv_json())[:1])


def without_span_id() -> bytes:
    doc = one_span_json()
    del doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"]
    return orjson.dumps(doc)


def bad_hex() -> bytes:
    doc = one_span_json()
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "not-hex"
    return orjson.dumps(doc)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "field"),
    [
        (b"\x0a\xff\xff\xff", "application/x-protobuf", 400, "body"),
        (b"{not json", "application/json", 400, "body"),
        (b'{"resourceSpans": {"x": 1}}', "application/json", 400, "resourceSpans"),
        (b"<xml/>", "text/xml", 415, "content-type"),
        (without_span_id, "application/json", 400, "resourceSpans[0].scopeSpans[0].spans[0].spanId"),
        (bad_hex, "application/json", 400, "resourceSpans[0].scopeSpans[0].spans[0].traceId"),
    ],
)
def test_bad_exports_are_refused_by_name_and_store_nothing(server, body, content_type, status, field) -> None:
    data = body() if callable(body) else body
    project = f"otel-bad-{uuid.uuid4().hex[:6]}"
    response = httpx.post(
        server.url + "/otel/v1/traces",
        content=data,
        headers={"Content-Type": content_type, "Langsmith-Project": project},
    )
    assert response.status_code == status, response.text
    assert field in response.json()["detail"]
    assert runs_of(server, project) == {}


def test_an_oversized_export_is_413(store, db_url, tmp_path) -> None:
    live = LiveServer(Settings(home=tmp_path / "h", database_url=db_url, max_body_bytes=1024), store)
    try:
        data = orjson.dumps(one_span_json())
        response = httpx.post(live.url + "/otel/v1/traces", content=data + b" " * 4000,
                              headers={"Content-Type": "application/json"})  # fmt: skip
        assert response.status_code == 413
    finally:
        live.stop()
