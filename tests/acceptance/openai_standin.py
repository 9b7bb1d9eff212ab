"""A tiny OpenAI-compatible chat-completions server that STANDS IN FOR THE HOSTED OpenAI SERVICE.

The acceptance tests run the unmodified ``langchain-openai`` / ``openai`` clients, and those need an OpenAI
endpoint to talk to. The hosted OpenAI API cannot be reached (nor paid for) from a test run, so this module
is the one stand-in the acceptance suite allows: everything else (the tracetune server, the LangSmith SDK,
LangChain) is the real thing.

It serves ``POST /v1/chat/completions`` on ``127.0.0.1:<free port>`` from a thread and answers
deterministically, in the shapes of wire-protocols §5.5 (which pass the openai client's strict validation):

* ``functions`` given (legacy function calling): a ``function_call`` to the function named by
  ``function_call`` (or the first one), with arguments built from the last user message;
* ``tools`` given: one ``tool_calls`` entry for the tool named by ``tool_choice`` (or the first one);
* otherwise a text answer, ``"Echo: <last user message>"``;
* ``stream: true``: the same answer as server-sent events (role delta, content / call fragments, a
  ``finish_reason`` delta, the optional ``include_usage`` chunk, ``[DONE]``).

A test may script the hosted model's answers (``OpenAIStandin(answers={user text: arguments})``): a call to a
question found there carries those arguments, as a model that answers it right would. Otherwise arguments are built
per JSON-schema property: a string enum takes its first value, a string the "subject"
of the message (the words after the last `` in ``, without punctuation), a number the count of words, a
boolean ``true``. So "What is the weather in Paris?" gives ``{"location": "Paris", "unit": "celsius"}``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL_FINGERPRINT = "fp_standin"


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def subject_of(text: str) -> str:
    """The words after the last `` in `` (or the whole text), without trailing punctuation."""
    tail = text.rsplit(" in ", 1)[-1] if " in " in text else text
    return tail.strip().rstrip("?.!").strip()


def built_arguments(parameters: dict[str, Any] | None, text: str) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for name, spec in ((parameters or {}).get("properties") or {}).items():
        kind = spec.get("type")
        if spec.get("enum"):
            args[name] = spec["enum"][0]
        elif kind == "string":
            args[name] = subject_of(text)
        elif kind in ("integer", "number"):
            args[name] = len(text.split())
        elif kind == "boolean":
            args[name] = True
    return args


def _chosen(items: list[dict[str, Any]], choice: Any) -> dict[str, Any]:
    """The function / tool that ``function_call`` / ``tool_choice`` names, else the first one."""
    wanted = None
    if isinstance(choice, dict):
        wanted = choice.get("name") or (choice.get("function") or {}).get("name")
    elif isinstance(choice, str) and choice not in ("auto", "none", "required"):
        wanted = choice
    for item in items:
        if item.get("name", (item.get("function") or {}).get("name")) == wanted:
            return item
    return items[0]


def answer(request: dict[str, Any], seq: int, answers: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The assistant message (role, content, function_call / tool_calls) and its finish reason."""
    text = last_user_text(request.get("messages") or [])

    def arguments_for(parameters: dict[str, Any] | None, text: str) -> dict[str, Any]:
        return (answers or {}).get(text) or built_arguments(parameters, text)

    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    if request.get("functions") and request.get("function_call") != "none":
        fn = _chosen(request["functions"], request.get("function_call"))
        message["function_call"] = {
            "name": fn["name"],
            "arguments": json.dumps(arguments_for(fn.get("parameters"), text)),
        }
        return {"message": message, "finish_reason": "function_call"}
    if request.get("tools") and request.get("tool_choice") != "none":
        tool = _chosen(request["tools"], request.get("tool_choice"))["function"]
        message["tool_calls"] = [
            {
                "id": f"call_standin{seq:06d}",
                "type": "function",
                "function": {
                    "name": tool["name"],
                    "arguments": json.dumps(arguments_for(tool.get("parameters"), text)),
                },
            }
        ]
        return {"message": message, "finish_reason": "tool_calls"}
    message["content"] = f"Echo: {text}"
    return {"message": message, "finish_reason": "stop"}


def usage_for(request: dict[str, Any], message: dict[str, Any]) -> dict[str, int]:
    prompt = sum(len(str(m.get("content") or "").split()) for m in request.get("messages") or [])
    out = json.dumps(message.get("function_call") or message.get("tool_calls") or message.get("content"))
    completion = max(1, len(out.split()))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion(request: dict[str, Any], seq: int, answers: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    result = answer(request, seq, answers)
    return {
        "id": f"chatcmpl-standin{seq:06d}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "gpt-4o-mini"),
        "system_fingerprint": MODEL_FINGERPRINT,
        "choices": [
            {"index": 0, "message": result["message"], "logprobs": None, "finish_reason": result["finish_reason"]}
        ],
        "usage": usage_for(request, result["message"]),
    }


def _pieces(text: str, n: int = 3) -> list[str]:
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def completion_chunks(request: dict[str, Any], seq: int) -> list[dict[str, Any]]:
    """The same answer as ``chat.completion.chunk`` objects (wire-protocols §5.5, streaming)."""
    result = answer(request, seq)
    message = result["message"]
    base = {
        "id": f"chatcmpl-standin{seq:06d}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": request.get("model", "gpt-4o-mini"),
        "system_fingerprint": MODEL_FINGERPRINT,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    if "function_call" in message:
        call = message["function_call"]
        chunks.append(chunk({"function_call": {"name": call["name"], "arguments": ""}}))
        chunks += [chunk({"function_call": {"arguments": p}}) for p in _pieces(call["arguments"])]
    elif "tool_calls" in message:
        call = message["tool_calls"][0]
        first = {
            "index": 0,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        chunks.append(chunk({"tool_calls": [first]}))
        chunks += [
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]})
            for p in _pieces(call["function"]["arguments"])
        ]
    else:
        chunks += [chunk({"content": p}) for p in _pieces(message["content"])]
    chunks.append(chunk({}, result["finish_reason"]))
    if (request.get("stream_options") or {}).get("include_usage"):
        chunks.append({**base, "choices": [], "usage": usage_for(request, message)})
    return chunks


class _Handler(BaseHTTPRequestHandler):
    server: OpenAIStandin
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # no access log on stderr
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
        self._send(status, json.dumps(body).encode(), "application/json")

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?")[0] != "/v1/chat/completions":
            return self._error(404, f"unknown path {self.path}")
        try:
            request = json.loads(raw)
        except ValueError:
            return self._error(400, "the body is not JSON")
        if not request.get("messages"):
            return self._error(400, "messages is required")
        seq = self.server.record(request)
        if request.get("stream"):
            events = b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in completion_chunks(request, seq))
            return self._send(200, events + b"data: [DONE]\n\n", "text/event-stream; charset=utf-8")
        body = completion(request, seq, self.server.answers)
        return self._send(200, json.dumps(body).encode(), "application/json")


class OpenAIStandin(ThreadingHTTPServer):
    """The stand-in server; ``requests`` holds every chat request body it answered, in order."""

    daemon_threads = True

    def __init__(self, answers: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answers = answers  # user text → the call's arguments (a hosted model that answers these right)
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(self, request: dict[str, Any]) -> int:
        with self._lock:
            self.requests.append(request)
            return len(self.requests)

    @property
    def base_url(self) -> str:
        """What ``OPENAI_BASE_URL`` / ``base_url=`` takes (ends in ``/v1``)."""
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@contextmanager
def running_standin(answers: dict[str, dict[str, Any]] | None = None) -> Iterator[OpenAIStandin]:
    server = OpenAIStandin(answers)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
