"""OTLP/HTTP trace export → LangSmith run dicts (what ``IngestService`` validates and stores like any other run).

Decoding uses the OpenTelemetry project's own protobuf classes (``opentelemetry-proto``): binary protobuf as
sent by every OTLP exporter, or OTLP/JSON (ids in hex, as the spec has them). A body that does not decode, a
span without a valid trace or span id, is a 400 naming the place (``resourceSpans[0].scopeSpans[1].spans[3]
.spanId``); nothing of the request is stored then.

Ids: a span's run id is its span id followed by the last 8 bytes of its trace id (unique within the trace, the
same from every request). A span with no parent — or whose parent is the langsmith SDK's stand-in for the run
itself (the first 8 bytes of the trace id, which its OTel exporter uses as the root's parent) — is a root and
starts its own trace; any other span names its parent, and the store gives it the parent's trace and dotted
order whenever both have arrived, in any order and over any number of requests.

What a span means (run type, inputs, outputs, tools, usage) is read by ``ingest.genai``; every attribute it does
not turn into a run field is kept in ``extra.otel.attributes`` (resource and scope in ``extra.otel`` too).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping
from typing import Any, Final

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tracetune.errors import InvalidInput, UnsupportedMediaType
from tracetune.ingest.genai import SpanContent, read_content
from tracetune.timeutil import us_to_time

PROTOBUF: Final = "application/x-protobuf"
JSON: Final = "application/json"
PROJECT_HEADER: Final = "langsmith-project"
_PROJECT_ATTRS: Final = ("langsmith.trace.session_name", "langsmith.project")
_ID_FIELDS: Final = ("traceId", "spanId", "parentSpanId")


def decode_request(body: bytes, content_type: str | None) -> ExportTraceServiceRequest:
    """The export request in ``body``; 415 for a content type OTLP/HTTP does not use, 400 for a bad body."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media == PROTOBUF:
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise InvalidInput(f"malformed OTLP protobuf: {exc}", field="body") from None
        return request
    if media == JSON:
        return _from_json(body)
    raise UnsupportedMediaType(
        f"content type {content_type or '(none)'!r} is not OTLP/HTTP: send {PROTOBUF} or {JSON}", field="content-type"
    )


def encode_response(content_type: str | None) -> tuple[bytes, str]:
    """The (empty, full-success) ``ExportTraceServiceResponse`` in the request's encoding."""
    if (content_type or "").split(";")[0].strip().lower() == JSON:
        return b"{}", JSON
    return ExportTraceServiceResponse().SerializeToString(), PROTOBUF


def _from_json(body: bytes) -> ExportTraceServiceRequest:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc}", field="body") from None
    if not isinstance(doc, dict):
        raise InvalidInput("an OTLP/JSON export is an object with resourceSpans", field="body")
    for r, resource in enumerate(_list(doc, "resourceSpans", "resourceSpans")):
        for s, scope in enumerate(_list(resource, "scopeSpans", f"resourceSpans[{r}].scopeSpans")):
            for i, span in enumerate(_list(scope, "spans", f"resourceSpans[{r}].scopeSpans[{s}].spans")):
                for key in _ID_FIELDS:  # OTLP/JSON writes ids in hex; protobuf's JSON mapping wants base64
                    if isinstance(span, dict) and isinstance(span.get(key), str):
                        span[key] = _hex_to_base64(span[key], f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}].{key}")
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(doc, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise InvalidInput(f"not an OTLP/JSON export: {exc}", field="body") from None
    return request


def _list(obj: Any, key: str, where: str) -> list[Any]:
    value = obj.get(key) if isinstance(obj, dict) else None
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput("expected a list", field=where)
    return value


def _hex_to_base64(text: str, where: str) -> str:
    try:
        return base64.b64encode(bytes.fromhex(text)).decode()
    except ValueError:
        raise InvalidInput(f"expected a hex id, got {text[:40]!r}", field=where) from None


def any_value(value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as plain JSON-able Python."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return binascii.hexlify(value.bytes_value).decode()
    return getattr(value, kind)


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


def run_id_of(trace_id: bytes, span_id: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=span_id + trace_id[8:])


def _iso_ns(ns: int) -> str | None:
    when = us_to_time(ns // 1000) if ns else None
    return when.isoformat() if when else None


def runs_from_request(
    request: ExportTraceServiceRequest, project_header: str | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """One LangSmith run dict per span of ``request`` (checked ids; content read by ``ingest.genai``), and where
    each span is in the request (``resourceSpans[0].scopeSpans[0].spans[2]``), for errors."""
    out: list[dict[str, Any]] = []
    places: list[str] = []
    for r, resource_spans in enumerate(request.resource_spans):
        resource = attributes(resource_spans.resource.attributes)
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            scope = {"name": scope_spans.scope.name, "version": scope_spans.scope.version}
            for i, span in enumerate(scope_spans.spans):
                where = f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}]"
                out.append(_run(span, resource, scope, project_header, where))
                places.append(where)
    return out, places


def _run(span: Span, resource: dict[str, Any], scope: dict[str, Any], header: str | None, where: str) -> dict[str, Any]:
    trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
    if len(trace_id) != 16 or not any(trace_id):
        raise InvalidInput("a span needs a 16-byte, non-zero trace id", field=f"{where}.traceId")
    if len(span_id) != 8 or not any(span_id):
        raise InvalidInput("a span needs an 8-byte, non-zero span id", field=f"{where}.spanId")
    if parent and len(parent) != 8:
        raise InvalidInput("a parent span id has 8 bytes", field=f"{where}.parentSpanId")
    attrs = attributes(span.attributes)
    content: SpanContent = read_content(span.name, attrs, [(e.name, attributes(e.attributes)) for e in span.events])
    run_id = run_id_of(trace_id, span_id)
    run: dict[str, Any] = {
        "id": str(run_id),
        "name": content.name,
        "run_type": content.run_type,
        "start_time": _iso_ns(span.start_time_unix_nano) or _iso_ns(span.end_time_unix_nano),
        "end_time": _iso_ns(span.end_time_unix_nano),
        "inputs": content.inputs,
        "outputs": content.outputs,
        "tags": content.tags,
        "extra": {
            **content.extra,
            "otel": {
                "trace_id": trace_id.hex(),
                "span_id": span_id.hex(),
                "parent_span_id": parent.hex() or None,
                "kind": Span.SpanKind.Name(span.kind),
                "attributes": content.unread,
                "resource": resource,
                "scope": scope,
            },
        },
        "events": content.events,
        "session_name": header or _project(attrs, resource),
        **content.tokens,
    }
    if parent and parent != trace_id[:8]:
        run["parent_run_id"] = str(run_id_of(trace_id, parent))
    if span.status.code == Status.STATUS_CODE_ERROR:
        run["error"] = content.error or span.status.message or "error"
    elif content.error and span.status.code != Status.STATUS_CODE_OK:
        run["error"] = content.error
    return {k: v for k, v in run.items() if v is not None}


def _project(attrs: Mapping[str, Any], resource: Mapping[str, Any]) -> str | None:
    for source in (attrs, resource):
        for key in _PROJECT_ATTRS:
            value = source.get(key)
            if isinstance(value, str) and value:
                return value
    return None
