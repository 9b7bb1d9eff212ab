"""UI pages over models: base and fine-tuned models with their lineage (model → job → dataset → filter → runs),
validation score and diagnostics; the stored aliases (set, history, roll back, remove: ``serve.lookup.set_alias``
and the alias store, as ``/tt/v1/aliases``); and the playground, a chat that can offer tools and shows the tool
calls. Thin: the model registry and store the ``/v1/models`` routes read; the playground sends its request through
the chat completions serving class, validated by the same request model as ``POST /v1/chat/completions``."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from tracetune.errors import InvalidInput, NotFound, TracetuneError
from tracetune.models.registry import list_models
from tracetune.serve.lookup import served_check, set_alias
from tracetune.serve.protocol import ChatCompletion, ChatCompletionRequest
from tracetune.server.deps import state
from tracetune.server.openai import chat as openai_chat
from tracetune.server.ui.jobs import dataset_of
from tracetune.server.ui.pages import render, see_other, ui_workspace
from tracetune.server.ui.views import display_message, job_quality
from tracetune.store.rows import ModelRow
from tracetune.store.workspaces import Workspace

router = APIRouter(include_in_schema=False)

DEFAULT_MAX_TOKENS = 64
EXAMPLE_TOOLS = """[
  {"type": "function", "function": {"name": "add", "description": "Add two numbers",
    "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                   "required": ["a", "b"]}}}
]"""


def _lineage(store: Any, ws: Workspace, row: ModelRow) -> dict[str, Any]:
    try:
        job = store.jobs.get(ws.id, row["job_id"])
    except NotFound:
        job = None
    dataset = dataset_of(store, ws, job) if job else None
    project = None
    if dataset and dataset["selection"].get("project"):
        found = store.projects.list(ws.id, name=dataset["selection"]["project"], limit=1)
        project = found[0] if found else None
    quality = job_quality(store.jobs.all_events(job["id"])) if job else None
    return {"model": row, "job": job, "dataset": dataset, "project": project, "quality": quality}


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, ws: Workspace = Depends(ui_workspace)) -> HTMLResponse:
    return _models(request, ws)


def _models(request: Request, ws: Workspace, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    st = state(request)
    tuned = [_lineage(st.store, ws, row) for row in st.store.models.list(ws.id)]
    stored = [{**row, "history": st.store.aliases.history(ws.id, row["name"])} for row in st.store.aliases.list(ws.id)]
    context.setdefault("alias_form", {"name": "", "model": ""})
    return render(
        request, "models.html", status_code=status_code, base=list_models(st.settings.home), tuned=tuned,
        aliases=st.settings.model_aliases, stored_aliases=stored, model_ids=_model_ids(request, ws), **context,
    )  # fmt: skip


@router.post("/aliases", response_model=None)
def alias_set(
    request: Request, ws: Workspace = Depends(ui_workspace), name: str = Form(""), model: str = Form("")
) -> Response:
    """Point an alias at a model (a new version), as ``PUT /tt/v1/aliases/{name}`` does."""
    st = state(request)
    try:
        set_alias(
            name.strip(), model.strip(), home=st.settings.home, store=st.store, workspace_id=ws.id,
            aliases=st.settings.model_aliases,
        )  # fmt: skip
    except TracetuneError as exc:
        return _models(
            request, ws, status_code=exc.status_code, alias_error=exc, alias_form={"name": name, "model": model}
        )
    return see_other("/models#aliases")


@router.post("/aliases/{name}/rollback", response_model=None)
def alias_rollback(name: str, request: Request, ws: Workspace = Depends(ui_workspace)) -> Response:
    st = state(request)
    try:
        st.store.aliases.rollback(
            ws.id, name, served_check(st.settings.home, st.store, ws.id, st.settings.model_aliases)
        )
    except TracetuneError as exc:
        return _models(request, ws, status_code=exc.status_code, alias_error=exc)
    return see_other("/models#aliases")


@router.post("/aliases/{name}/remove", response_model=None)
def alias_remove(name: str, request: Request, ws: Workspace = Depends(ui_workspace)) -> Response:
    state(request).store.aliases.remove(ws.id, name)
    return see_other("/models#aliases")


def _model_ids(request: Request, ws: Workspace) -> list[str]:
    st = state(request)
    tuned = [row["id"] for row in st.store.models.list(ws.id)]
    return list(reversed(tuned)) + [spec.id for spec in list_models(st.settings.home)]


@router.get("/playground", response_class=HTMLResponse)
def playground_page(request: Request, ws: Workspace = Depends(ui_workspace), model: str = "") -> HTMLResponse:
    models = _model_ids(request, ws)
    form = {"model": model or (models[0] if models else ""), "tools": "", "max_tokens": str(DEFAULT_MAX_TOKENS),
            "temperature": "0", "system": "", "content": ""}  # fmt: skip
    return render(request, "playground.html", models=models, form=form, messages=[], shown=[], error=None,
                  example_tools=EXAMPLE_TOOLS)  # fmt: skip


@router.post("/playground", response_class=HTMLResponse)
async def playground_send(
    request: Request,
    ws: Workspace = Depends(ui_workspace),
    model: str = Form(""),
    history: str = Form("[]"),
    system: str = Form(""),
    role: str = Form("user"),
    content: str = Form(""),
    tools: str = Form(""),
    max_tokens: str = Form(str(DEFAULT_MAX_TOKENS)),
    temperature: str = Form("0"),
) -> HTMLResponse:
    form = {"model": model, "tools": tools, "max_tokens": max_tokens, "temperature": temperature, "system": system,
            "content": ""}  # fmt: skip
    messages = _history(history)
    error: TracetuneError | None = None
    try:
        messages = [*messages, *_new_messages(messages, system, role, content)]
        body = _chat_body(model, messages, tools, max_tokens, temperature)
        service = openai_chat.chat_service(request)
        prepared = await run_in_threadpool(service.prepare, body, ws.id)
        completion = await service.complete(prepared)
        messages.append(_answer(completion))
    except TracetuneError as exc:
        error = exc
        form["content"] = content
        messages = _history(history)
    return render(
        request,
        "playground.html",
        status_code=error.status_code if error else 200,
        models=_model_ids(request, ws),
        form=form,
        messages=messages,
        shown=[display_message(m) for m in messages],
        error=error,
        example_tools=EXAMPLE_TOOLS,
    )


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
