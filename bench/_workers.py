"""Processes the ingest benchmark starts (each in its own interpreter, so none shares a GIL with another):

  python bench/_workers.py serve  --timing-log F -- <tracetune serve args>   tracetune serve, timed
  python bench/_workers.py sink   --timing-log F --port P                    the SDK's ceiling: accept, discard
  python bench/_workers.py send   --url U --n N --seed S --project P          the langsmith SDK sending N runs
  python bench/_workers.py send-otlp --url U --n N --seed S --project P        the OTel SDK exporting N LLM spans

``serve`` runs the real ``tracetune serve`` command (its settings, store opening and uvicorn options) with one
addition: the ASGI app is wrapped in ``Timing``, which appends ``METHOD PATH STATUS MS BYTES`` per request to
the timing log, from the moment uvicorn hands the request to the app (headers parsed) until the last byte of
the response is handed back to uvicorn. ``sink`` is a bare ASGI app under uvicorn with the same defaults, the
same ``/info`` document (so the SDK takes the same multipart + zstd path) and the same wrapper; it reads the
body and answers 202 without looking at it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


class Timing:
    """ASGI wrapper: one line per HTTP request: method, path, status, server-side latency in ms, body bytes,
    and the wall time (epoch seconds) the app got the request."""

    def __init__(self, app: Any, path: str) -> None:
        self.app = app
        self.log = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        wall0 = time.time()
        status = 0
        size = 0

        async def counting_receive() -> dict:
            nonlocal size
            message = await receive()
            size += len(message.get("body", b""))
            return message

        async def timed_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                ms = (time.perf_counter() - t0) * 1000
                self.log.write(f"{scope['method']} {scope['path']} {status} {ms:.3f} {size} {wall0:.6f}\n")

        await self.app(scope, counting_receive, timed_send)


def _gc_stats(path: str) -> None:
    """Append, at exit, how often and how long the cyclic garbage collector ran (per generation)."""
    import atexit
    import gc

    spent = [0.0, 0.0, 0.0]
    runs = [0, 0, 0]
    started = [0.0]

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            spent[info["generation"]] += time.perf_counter() - started[0]
            runs[info["generation"]] += 1

    gc.callbacks.append(callback)

    def report() -> None:
        with open(path, "a") as fh:
            fh.write(f"GC {json.dumps({'runs': runs, 'ms': [round(x * 1000, 1) for x in spent]})}\n")

    atexit.register(report)


def serve(timing_log: str, argv: list[str]) -> None:
    import uvicorn

    if os.environ.get("BENCH_GC_STATS"):
        _gc_stats(timing_log + ".gc")

    real_run = uvicorn.run

    def timed_run(app: Any, **kwargs: Any) -> None:
        real_run(Timing(app, timing_log), **kwargs)

    uvicorn.run = timed_run  # type: ignore[assignment]
    from tracetune.cli import app

    sys.argv = ["tracetune", "serve", *argv]
    app()


def sink(timing_log: str, port: int, save: str | None = None) -> None:
    import orjson
    import uvicorn

    from tracetune.server.langsmith.protocol import INFO

    info = orjson.dumps(INFO)

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        more, chunks = True, []
        while more:
            message = await receive()
            more = message.get("more_body", False)
            if save:
                chunks.append(message.get("body", b""))
        if save and scope["path"].endswith("/runs/multipart"):
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            stem = os.path.join(save, f"{time.time_ns()}")
            with open(stem + ".body", "wb") as fh:
                fh.write(b"".join(chunks))
            with open(stem + ".json", "w") as fh:
                json.dump(headers, fh)
        if scope["path"].endswith("/info"):
            status, body = 200, info
        elif scope["path"] == "/healthz":
            status, body = 200, b'{"status":"ok"}'
        else:
            status, body = 202, b'{"status":"accepted"}'
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
        )
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(Timing(app, timing_log), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def send(url: str, n: int, seed: int, project: str, inflight: int, rate: float = 0) -> None:
    """Send ``n`` LLM runs (post at start, patch at end, ``inflight`` runs open at a time) through one
    langsmith ``Client`` in its default mode and print one JSON line: wall times (``time.time()``) of the
    first send and of ``flush()`` returning, the mode the SDK ended up in, and the client-side latency
    (``requests``' ``elapsed``) of each ingest call. ``rate`` > 0 paces the runs: run i starts ``i / rate``
    seconds after the first (an app making ``rate`` LLM calls a second), whatever the server does; 0 sends
    as fast as the SDK takes them."""
    os.environ.setdefault("LANGSMITH_TRACING", "false")  # nothing else in this process traces
    sys.path.insert(0, HERE)
    import logging

    import langsmith
    from _runs import sdk_runs  # type: ignore[import-not-found]

    dropped: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                dropped.append(record.getMessage()[:300])

    logging.getLogger("langsmith").addHandler(Catch())
    runs = sdk_runs(n, seed=seed, project=project)
    client = langsmith.Client(api_url=url, api_key="bench-key")
    client_ms: list[float] = []

    def hook(response: Any, *args: Any, **kwargs: Any) -> None:
        if response.request.url.endswith("/runs/multipart") or response.request.url.endswith("/runs/batch"):
            client_ms.append(response.elapsed.total_seconds() * 1000)

    client.session.hooks["response"].append(hook)
    deadline = time.time() + 20
    while client.compressed_traces is None and time.time() < deadline:  # /info fetched by the SDK's thread
        time.sleep(0.01)
    mode = "multipart+zstd" if client.compressed_traces is not None else "multipart(uncompressed?)"
    t_first = time.time()
    for i, (post, _) in enumerate(runs):
        if rate > 0 and (ahead := t_first + i / rate - time.time()) > 0:
            time.sleep(ahead)
        client.create_run(**post)
        if i >= inflight:  # run i - inflight ends now: ``inflight`` runs are open at any time
            client.update_run(**runs[i - inflight][1])
    for _, patch in runs[max(0, len(runs) - inflight) :]:
        client.update_run(**patch)
    t_enqueued = time.time()
    client.flush()
    t_flushed = time.time()
    print(
        json.dumps(
            {
                "t_first_send": t_first,
                "t_enqueued": t_enqueued,
                "t_flushed": t_flushed,
                "mode": mode,
                "client_ms": client_ms,
                "sdk_warnings": dropped[:5],
                "langsmith": langsmith.__version__,
            }
        ),
        flush=True,
    )


def genai_attributes(i: int, seed: int) -> dict[str, Any]:
    """An LLM span's attributes in the current GenAI semantic conventions, about 4 KB like ``_runs``' runs: a
    system prompt, a question, a tool definition and an answer that calls the tool, token usage, parameters."""
    words = " ".join(f"w{(seed * 7919 + i * 31 + k) % 9973}" for k in range(330))
    tool = {
        "type": "function",
        "name": "lookup_order",
        "description": "Look up an order by its id and return its status and items. " * 4,
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
    }
    call = {"type": "tool_call", "id": f"call_{i}", "name": "lookup_order", "arguments": {"order_id": f"A{i}"}}
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "You are a support agent. " * 20}]),
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": f"Where is order A{i}? {words}"}]}]
        ),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [call], "finish_reason": "tool_call"}]),
        "gen_ai.tool.definitions": json.dumps([tool]),
        "gen_ai.usage.input_tokens": 420 + i % 50,
        "gen_ai.usage.output_tokens": 18,
    }


def send_otlp(url: str, n: int, seed: int, project: str) -> None:
    """Export ``n`` LLM spans (one trace each) through the OpenTelemetry SDK's ``BatchSpanProcessor`` (default batch
    size and delay; a queue that holds all ``n``) and OTLP/HTTP protobuf exporter, and print the same JSON line as
    ``send``."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    client_ms: list[float] = []

    class TimedExporter(OTLPSpanExporter):
        def export(self, spans: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return super().export(spans)
            finally:
                client_ms.append((time.perf_counter() - t0) * 1000)

    exporter = TimedExporter(endpoint=url + "/otel/v1/traces", headers={"Langsmith-Project": project})
    provider = TracerProvider()
    # The SDK's default queue (2048 spans) drops what a tight loop makes faster than it exports; a real app's spans
    # come at LLM pace. A queue that holds all N keeps every span, the exporter's batching stays the default.
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=n + 1))
    tracer = provider.get_tracer("bench")
    attrs = [genai_attributes(i, seed) for i in range(n)]
    t_first = time.time()
    for a in attrs:
        with tracer.start_as_current_span("chat gpt-4o-mini") as span:
            span.set_attributes(a)
    t_enqueued = time.time()
    provider.shutdown()  # flushes every queued span
    t_flushed = time.time()
    line = {"t_first_send": t_first, "t_enqueued": t_enqueued, "t_flushed": t_flushed, "mode": "otlp-protobuf"}
    print(json.dumps({**line, "client_ms": client_ms, "sdk_warnings": []}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=["serve", "sink", "send", "send-otlp"])
    ap.add_argument("--timing-log")
    ap.add_argument("--port", type=int)
    ap.add_argument("--url")
    ap.add_argument("--n", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--project", default="bench")
    ap.add_argument("--inflight", type=int, default=100)
    ap.add_argument("--rate", type=float, default=0, help="send: runs started a second (0: as fast as possible)")
    ap.add_argument("--save", default=None, help="sink: save each multipart body and its headers here")
    argv = sys.argv[1:]
    rest = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = ap.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if args.role == "serve":
        serve(args.timing_log, rest)
    elif args.role == "sink":
        sink(args.timing_log, args.port, args.save)
    elif args.role == "send-otlp":
        send_otlp(args.url, args.n, args.seed, args.project)
    else:
        send(args.url, args.n, args.seed, args.project, args.inflight, args.rate)


if __name__ == "__main__":
    main()
