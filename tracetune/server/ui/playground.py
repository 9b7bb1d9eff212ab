"""The playground: a chat with any served model that can offer tools and shows the tool calls. Thin: each turn
goes through the chat completions serving class, validated by the same request model as ``POST
/v1/chat/completions``.

``POST /playground`` answers with the whole page (what a browser without JavaScript gets). ``POST
/playground/stream`` (what ``static/ui.js`` sends) streams the turn as JSON lines: ``{"delta": text}`` as the model
writes (a tool call as ``name(arguments…``), then ``{"html": page}``, the page with the finished turn (or the
error), whose ``#playground-area`` replaces the one on screen.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import ValidationError

from tracetune.errors import InvalidInput, NotFound, TracetuneError
from tracetune.query.run_view import run_view
from tracetune.serve.protocol import ChatCompletion, ChatCompletionRequest
from tracetune.server.deps import state
from tracetune.server.openai import chat as openai_chat
from tracetune.server.ui.models import model_ids
from tracetune.server.ui.pages import render, ui_workspace
from tracetune.server.ui.views import display_message
from tracetune.store.workspaces import Workspace

router = APIRouter(include_in_schema=False)

DEFAULT_MAX_TOKENS = 64
EXAMPLE_TOOLS = """[
  {"type": "function", "function": {"name": "add", "description": "Add two numbers",
    "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                   "required": ["a", "b"]}}}
]"""


class Turn:
    """One send: the form as typed, the conversation so far, and the request it makes (or why it cannot)."""

    def __init__(self, history: str, system: str, role: str, content: str, **form: str) -> None:
        self.history = _history(history)
        self.content = content
        self.form = {**form, "system": system, "content": ""}
        self.messages = self.history
        self.error: TracetuneError | None = None
        self.body: ChatCompletionRequest | None = None
        try:
            self.messages = [*self.history, *_new_messages(self.history, system, role, content)]
            self.body = _chat_body(form["model"], self.messages, form["tools"], form["max_tokens"],
                                   form["temperature"])  # fmt: skip
        except TracetuneError as exc:
            self.failed(exc)

    def failed(self, exc: TracetuneError) -> None:
        """The turn did not happen: the conversation as it was, the message kept in the box."""
        self.error, self.messages, self.body = exc, self.history, None
        self.form["content"] = self.content

    def page(self, request: Request, ws: Workspace) -> HTMLResponse:
        return render(
            request, "playground.html", status_code=self.error.status_code if self.error else 200,
            models=_models(request, ws, self.form.get("model", "")), form=self.form, messages=self.messages,
            shown=[display_message(m) for m in self.messages], error=self.error, example_tools=EXAMPLE_TOOLS,
        )  # fmt: skip


@router.get("/playground", response_class=HTMLResponse)
def playground_page(
    request: Request, ws: Workspace = Depends(ui_workspace), model: str = "", run: uuid.UUID | None = None
) -> HTMLResponse:
    """An empty chat; or, with ``run`` (an LLM run's "Open in playground"), that run's conversation up to its last
    user message — which waits in the box — and the tools it offered, to try on any model."""
    models = _models(request, ws, model)
    form = {"model": model or (models[0] if models else ""), "tools": "", "max_tokens": str(DEFAULT_MAX_TOKENS),
            "temperature": "0", "system": "", "content": ""}  # fmt: skip
    messages: list[dict[str, Any]] = []
    if run is not None:
        messages, form["content"], form["tools"] = _from_run(request, ws, run)
    return render(request, "playground.html", models=models, form=form, messages=messages,
                  shown=[display_message(m) for m in messages], error=None, example_tools=EXAMPLE_TOOLS)  # fmt: skip


def _models(request: Request, ws: Workspace, chosen: str) -> list[str]:
    """The models to pick from, with ``chosen`` first when it is not listed (a checkpoint, the job page's "Try it":
    served, as OpenAI serves them, though ``/v1/models`` does not list them)."""
    models = model_ids(request, ws)
    return [chosen, *models] if chosen and chosen not in models else models


def _from_run(request: Request, ws: Workspace, run_id: uuid.UUID) -> tuple[list[dict[str, Any]], str, str]:
    """``(history, the last user message's text, tools JSON)`` of an LLM run's prompt, as the converter reads it."""
    from tracetune.convert.sessions import prompt_from_run

    row = state(request).store.runs.get(ws.id, run_id)
    if row is None:
        raise NotFound(f"run {run_id} not found", field="run")
    prompt: Any = prompt_from_run(run_view(row))
    if "reason" in prompt:
        raise InvalidInput(f"run {run_id} has no chat prompt to open: {prompt.get('detail', '')}", field="run")
    messages = [dict(m) for m in prompt.get("messages") or []]
    content = ""
    if messages and messages[-1].get("role") == "user" and isinstance(messages[-1].get("content"), str):
        content = messages.pop()["content"]
    tools = prompt.get("tools") or [{"type": "function", "function": f} for f in prompt.get("functions") or []]
    return messages, content, json.dumps(tools, indent=2) if tools else ""


def _turn(
    model: str = Form(""),
    history: str = Form("[]"),
    system: str = Form(""),
    role: str = Form("user"),
    content: str = Form(""),
    tools: str = Form(""),
    max_tokens: str = Form(str(DEFAULT_MAX_TOKENS)),
    temperature: str = Form("0"),
) -> Turn:
    return Turn(history, system, role, content, model=model, tools=tools, max_tokens=max_tokens,
                temperature=temperature)  # fmt: skip


@router.post("/playground", response_class=HTMLResponse)
async def playground_send(
    request: Request, ws: Workspace = Depends(ui_workspace), turn: Turn = Depends(_turn)
) -> HTMLResponse:
    if turn.body is not None:
        try:
            service = openai_chat.chat_service(request)
            prepared = await run_in_threadpool(service.prepare, turn.body, ws.id)
            turn.messages.append(_answer(await service.complete(prepared)))
        except TracetuneError as exc:
            turn.failed(exc)
    return turn.page(request, ws)


@router.post("/playground/stream")
async def playground_stream(
    request: Request, ws: Workspace = Depends(ui_workspace), turn: Turn = Depends(_turn)
) -> StreamingResponse:
    async def lines() -> AsyncIterator[bytes]:
        if turn.body is not None:
            try:
                service = openai_chat.chat_service(request)
                prepared = await run_in_threadpool(service.prepare, turn.body, ws.id)
                chunks: list[dict[str, Any]] = []
                async for streamed in service.stream(prepared):
                    chunk: dict[str, Any] = dict(streamed)
                    if "error" in chunk:
                        raise InvalidInput(f"the model failed while answering: {chunk['error']}", field="model")
                    chunks.append(chunk)
                    text = _delta_text(chunk)
                    if text:
                        yield orjson.dumps({"delta": text}) + b"\n"
                turn.messages.append(message_from_chunks(chunks))
            except TracetuneError as exc:
                turn.failed(exc)
        yield orjson.dumps({"html": bytes(turn.page(request, ws).body).decode()}) + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


def _delta_text(chunk: Any) -> str:
    """What a chunk adds on screen: its text, or a tool call's name and a piece of its arguments."""
    out = []
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        out.append(delta.get("content") or "")
        for call in delta.get("tool_calls") or []:
            fn = call.get("function") or {}
            out.append(f"{fn['name']}(" if fn.get("name") else "")
            out.append(fn.get("arguments") or "")
    return "".join(out)


def message_from_chunks(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The assistant message that streamed ``chat.completion.chunk`` objects (choice 0) add up to: its text, and
    each tool call (by ``index``) with its id, name and arguments joined."""
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content.append(delta.get("content") or "")
            for piece in delta.get("tool_calls") or []:
                call = calls.setdefault(piece.get("index", 0), {"type": "function", "function": {"arguments": ""}})
                if piece.get("id"):
                    call["id"] = piece["id"]
                fn = piece.get("function") or {}
                if fn.get("name"):
                    call["function"]["name"] = fn["name"]
                call["function"]["arguments"] += fn.get("arguments") or ""
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content) or None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return message


def _history(text: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else []


def _new_messages(history: list[dict[str, Any]], system: str, role: str, content: str) -> list[dict[str, Any]]:
    """What one send adds: the system message (first turn only) and the user's message or a tool's result."""
    if not content.strip():
        raise InvalidInput("write a message first", field="content")
    first = [{"role": "system", "content": system.strip()}] if system.strip() and not history else []
    if role == "tool":
        pending = [c["id"] for m in history if m.get("role") == "assistant" for c in m.get("tool_calls") or []]
        answered = {m.get("tool_call_id") for m in history if m.get("role") == "tool"}
        open_calls = [c for c in pending if c not in answered]
        if not open_calls:
            raise InvalidInput("there is no tool call waiting for a result", field="role")
        return [*first, {"role": "tool", "tool_call_id": open_calls[0], "content": content}]
    return [*first, {"role": "user", "content": content}]


def _chat_body(
    model: str, messages: list[dict[str, Any]], tools: str, max_tokens: str, temperature: str
) -> ChatCompletionRequest:
    body: dict[str, Any] = {"model": model, "messages": messages}
    if tools.strip():
        try:
            body["tools"] = json.loads(tools)
        except ValueError as exc:
            raise InvalidInput(f"the tools are not valid JSON: {exc}", field="tools") from None
    for name, text, kind in (
        ("max_tokens", max_tokens or str(DEFAULT_MAX_TOKENS), int),
        ("temperature", temperature or "0", float),
    ):
        try:
            body[name] = kind(text)
        except ValueError:
            raise InvalidInput(f"{name} must be a number, got {text!r}", field=name) from None
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidInput(f"{field}: {first['msg']}", field=field) from None


def _answer(completion: ChatCompletion) -> dict[str, Any]:
    message = dict(completion["choices"][0]["message"])
    if not message.get("tool_calls"):
        message.pop("tool_calls", None)
    return {k: v for k, v in message.items() if v is not None or k == "content"}
