"""What an OpenTelemetry span says about an LLM call, in the run shapes the converter already reads.

Three attribute conventions are read, first found wins:

* **the langsmith SDK's OTel mode**: ``langsmith.span.kind`` / ``langsmith.trace.name`` / ``langsmith.span.tags``
  / ``langsmith.metadata.*``; ``gen_ai.prompt`` and ``gen_ai.completion`` hold the run's inputs and outputs as
  JSON (LangChain's own messages and generations), ``gen_ai.tool.definitions`` the tools offered;
* **OpenTelemetry GenAI semantic conventions**: the current JSON attributes ``gen_ai.input.messages``,
  ``gen_ai.output.messages``, ``gen_ai.system_instructions``, ``gen_ai.tool.definitions`` (messages of typed
  ``parts``), the older flattened ``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*`` (OpenLLMetry), and the event
  form (``gen_ai.system.message`` … ``gen_ai.choice`` span events); usage ``gen_ai.usage.*``, the model and
  request parameters ``gen_ai.request.*``;
* **OpenInference**: ``openinference.span.kind``, ``llm.input_messages.N.message.*``,
  ``llm.output_messages.N.message.*``, ``llm.tools.N.tool.json_schema``, ``llm.token_count.*``,
  ``llm.model_name``, ``llm.invocation_parameters``, ``input.value`` / ``output.value``.

GenAI and OpenInference messages become what ``wrap_openai`` traces: ``inputs = {"messages": [OpenAI chat
messages], "tools": [...], "model": ...}`` and ``outputs = {"choices": [{"message": ..., "finish_reason": ...}]}``.
Attributes read into a run field are not repeated; every other one is returned in ``unread``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

_RUN_TYPES: Final = frozenset({"llm", "chain", "tool", "retriever", "embedding", "prompt", "parser"})
_OPENINFERENCE_KINDS: Final = {"LLM": "llm", "TOOL": "tool", "RETRIEVER": "retriever", "EMBEDDING": "embedding"}
_OPERATIONS: Final = {
    "chat": "llm",
    "text_completion": "llm",
    "generate_content": "llm",
    "completion": "llm",
    "execute_tool": "tool",
    "embeddings": "embedding",
}
_PARAMS: Final = ("temperature", "top_p", "max_tokens", "frequency_penalty", "presence_penalty", "seed", "top_k")
_EVENT_ROLES: Final = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}


@dataclass
class SpanContent:
    name: str
    run_type: str
    inputs: Any = None
    outputs: Any = None
    tags: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    events: list[dict[str, Any]] | None = None
    unread: dict[str, Any] = field(default_factory=dict)


class _Attrs:
    """The span's attributes with a record of which were read."""

    def __init__(self, attrs: Mapping[str, Any]) -> None:
        self.attrs = attrs
        self.read: set[str] = set()

    def get(self, key: str) -> Any:
        if key in self.attrs:
            self.read.add(key)
            return self.attrs[key]
        return None

    def prefixed(self, prefix: str) -> dict[str, Any]:
        """``{rest: value}`` of every ``prefix.rest`` attribute (read)."""
        out = {}
        for key, value in self.attrs.items():
            if key.startswith(prefix + "."):
                self.read.add(key)
                out[key[len(prefix) + 1 :]] = value
        return out

    def unread(self) -> dict[str, Any]:
        return {k: v for k, v in self.attrs.items() if k not in self.read}


def _json(value: Any) -> Any:
    """A JSON-in-a-string attribute decoded (left as is when it is not JSON)."""
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _nested(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"0.message.role": "user", …}`` → ``{"0": {"message": {"role": "user"}}}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return out


def _indexed(tree: Mapping[str, Any]) -> list[Any]:
    """The values of a dict keyed "0", "1", … in index order."""
    return [tree[k] for k in sorted((k for k in tree if k.isdigit()), key=int)]


def _arguments(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _openai_tool(tool: Any) -> Any:
    """A tool definition as OpenAI's ``{"type": "function", "function": {...}}``."""
    tool = _json(tool)
    if isinstance(tool, dict) and "function" not in tool and "name" in tool:
        fn = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
        return {"type": "function", "function": fn}
    return tool


def read_content(span_name: str, attrs: Mapping[str, Any], events: list[tuple[str, dict[str, Any]]]) -> SpanContent:
    """The run fields ``attrs`` (and the span's ``events``) carry; see the module docstring."""
    a = _Attrs(attrs)
    a.get("langsmith.trace.session_name")  # the project: read by the caller
    a.get("langsmith.trace.session_id")
    name = a.get("langsmith.trace.name") or span_name
    content = SpanContent(name=str(name), run_type=_run_type(a))
    metadata: dict[str, Any] = {k: _json(v) for k, v in a.prefixed("langsmith.metadata").items()}
    tags = a.get("langsmith.span.tags") or a.get("tag.tags")
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",") if t.strip()]
    content.tags = [str(t) for t in tags] if isinstance(tags, list) else None
    for key, meta_key in (("gen_ai.conversation.id", "conversation_id"), ("session.id", "session_id")):
        if (value := a.get(key)) is not None:
            metadata.setdefault(meta_key, value)
    if isinstance(oi_meta := _json(a.get("metadata")), dict):
        metadata = {**oi_meta, **metadata}
    model = a.get("gen_ai.request.model") or a.get("llm.model_name") or a.get("gen_ai.response.model")
    if model is not None:
        metadata.setdefault("ls_model_name", model)
    system = a.get("gen_ai.system") or a.get("gen_ai.provider.name") or a.get("llm.provider")
    if system is not None:
        metadata.setdefault("ls_provider", system)
    params = _params(a)
    tools = _tools(a)
    usage = _usage(a)
    if usage:
        content.tokens = {f"{k}_tokens": v for k, v in usage.items()}
        metadata["usage_metadata"] = {
            "input_tokens": usage.get("prompt", 0),
            "output_tokens": usage.get("completion", 0),
            "total_tokens": usage.get("total", usage.get("prompt", 0) + usage.get("completion", 0)),
        }
    for reader in _READERS:
        found = reader(a, events)
        if found is not None:
            content.inputs, content.outputs = found
            break
    else:
        content.inputs = _value(a.get("input.value"))
        content.outputs = _value(a.get("output.value"))
    if (
        isinstance(content.inputs, dict)
        and content.inputs.get("messages") is not None
        and "choices" in (content.outputs or {})
    ):  # the OpenAI shape: tools and the model with the request, as wrap_openai traces them
        if tools:
            content.inputs["tools"] = tools
        if model is not None:
            content.inputs.setdefault("model", model)
        content.inputs.update({k: v for k, v in params.items() if k not in content.inputs})
    invocation = {**params, **({"tools": tools} if tools else {})}
    content.extra = {k: v for k, v in (("metadata", metadata), ("invocation_params", invocation)) if v}
    content.error = _error(events)
    kept = [{"name": n, "kwargs": attrs_} for n, attrs_ in events if n not in _EVENT_ROLES and n != "gen_ai.choice"]
    content.events = kept or None
    content.unread = a.unread()
    return content


def _run_type(a: _Attrs) -> str:
    kind = a.get("langsmith.span.kind")
    if isinstance(kind, str) and kind.lower() in _RUN_TYPES:
        return kind.lower()
    oi = a.get("openinference.span.kind")
    if isinstance(oi, str):
        return _OPENINFERENCE_KINDS.get(oi.upper(), "chain")
    operation = a.get("gen_ai.operation.name") or a.get("llm.request.type")  # the latter: OpenLLMetry
    if isinstance(operation, str):
        return _OPERATIONS.get(operation, "chain")
    return "llm" if "gen_ai.request.model" in a.attrs else "chain"


def _params(a: _Attrs) -> dict[str, Any]:
    params = {p: v for p in _PARAMS if (v := a.get(f"gen_ai.request.{p}")) is not None}
    invocation = _json(a.get("llm.invocation_parameters"))
    if isinstance(invocation, dict):
        params = {**invocation, **params}
    return params


def _tools(a: _Attrs) -> list[Any] | None:
    definitions = _json(a.get("gen_ai.tool.definitions"))
    if isinstance(definitions, list) and definitions:
        return [_openai_tool(t) for t in definitions]
    openinference = _indexed(_nested(a.prefixed("llm.tools")))
    if openinference:
        return [_openai_tool((t.get("tool") or {}).get("json_schema")) for t in openinference if isinstance(t, dict)]
    functions = _indexed(_nested(a.prefixed("llm.request.functions")))
    if functions:
        return [_openai_tool({**f, "parameters": _json(f.get("parameters"))}) for f in functions]
    return None


def _usage(a: _Attrs) -> dict[str, int]:
    pairs = {
        "prompt": ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt"),
        "completion": ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion"),
        "total": ("gen_ai.usage.total_tokens", "llm.usage.total_tokens", "llm.token_count.total"),
    }
    out = {}
    for name, keys in pairs.items():
        for key in keys:
            value = a.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                out[name] = value
                break
    return out


def _value(value: Any) -> Any:
    if value is None:
        return None
    decoded = _json(value)
    return decoded if isinstance(decoded, dict) else {"value": decoded}


def _error(events: list[tuple[str, dict[str, Any]]]) -> str | None:
    for name, attrs in events:
        if name == "exception":
            kind, message = attrs.get("exception.type"), attrs.get("exception.message")
            return f"{kind}: {message}" if kind and message else str(message or kind or "exception")
    return None


# -- the three conventions' messages ---------------------------------------------------------------------------

Found = tuple[Any, Any] | None


def _langsmith(a: _Attrs, events: list[tuple[str, dict[str, Any]]]) -> Found:
    if "gen_ai.prompt" not in a.attrs and "gen_ai.completion" not in a.attrs:
        return None
    return _value(a.get("gen_ai.prompt")), _value(a.get("gen_ai.completion"))


def _parts_message(msg: Any) -> dict[str, Any] | None:
    """A GenAI semconv message (``role`` + typed ``parts``) as an OpenAI chat message."""
    if not isinstance(msg, dict):
        return None
    role = msg.get("role") or "user"
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    out: dict[str, Any] = {"role": role}
    for part in msg.get("parts") or []:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            texts.append(str(part.get("content", "")))
        elif kind == "tool_call":
            fn = {"name": part.get("name"), "arguments": _arguments(part.get("arguments") or {})}
            calls.append({"id": part.get("id"), "type": "function", "function": fn})
        elif kind == "tool_call_response":
            out["role"] = "tool"
            out["tool_call_id"] = part.get("id")
            response = part.get("response")
            texts.append(response if isinstance(response, str) else orjson.dumps(response).decode())
    out["content"] = "".join(texts) if texts or not calls else None
    if calls:
        out["tool_calls"] = calls
    if msg.get("name"):
        out["name"] = msg["name"]
    return out


def _genai_json(a: _Attrs, events: list[tuple[str, dict[str, Any]]]) -> Found:
    if "gen_ai.input.messages" not in a.attrs and "gen_ai.output.messages" not in a.attrs:
        return None
    messages = [m for m in map(_parts_message, _json(a.get("gen_ai.input.messages")) or []) if m]
    system = _json(a.get("gen_ai.system_instructions"))
    if isinstance(system, list) and system:
        text = "".join(str(p.get("content", "")) for p in system if isinstance(p, dict))
        messages.insert(0, {"role": "system", "content": text})
    choices: list[dict[str, Any]] = []
    for raw in _json(a.get("gen_ai.output.messages")) or []:
        message = _parts_message(raw)
        if message is not None:
            reason = raw.get("finish_reason")
            choices.append(
                {"index": len(choices), "message": {**message, "role": "assistant"}, "finish_reason": reason}
            )
    return {"messages": messages}, ({"choices": choices} if choices else None)


def _flat_message(tree: Any) -> dict[str, Any]:
    """An OpenLLMetry ``gen_ai.prompt.N.*`` / OpenInference ``message.*`` subtree as an OpenAI chat message."""
    tree = (tree.get("message") or tree) if isinstance(tree, dict) else {}
    out: dict[str, Any] = {"role": tree.get("role") or "user", "content": tree.get("content")}
    if out["content"] is None and isinstance(tree.get("contents"), dict):
        parts = [c.get("message_content", {}) for c in _indexed(tree["contents"]) if isinstance(c, dict)]
        out["content"] = "".join(str(p.get("text", "")) for p in parts if p.get("type", "text") == "text")
    calls = []
    for item in _indexed(tree.get("tool_calls") or {}):
        call: dict[str, Any] = (item.get("tool_call") or item) if isinstance(item, dict) else {}
        fn: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else call
        calls.append(
            {"id": call.get("id"), "type": "function",
             "function": {"name": fn.get("name"), "arguments": _arguments(fn.get("arguments") or {})}}
        )  # fmt: skip
    if calls:
        out["tool_calls"] = calls
    if tree.get("tool_call_id") is not None:
        out["tool_call_id"] = tree["tool_call_id"]
    if tree.get("name") is not None:
        out["name"] = tree["name"]
    return out


def _flat(input_prefix: str, output_prefix: str) -> Callable[[_Attrs, list[tuple[str, dict[str, Any]]]], Found]:
    def read(a: _Attrs, events: list[tuple[str, dict[str, Any]]]) -> Found:
        inputs = _indexed(_nested(a.prefixed(input_prefix)))
        outputs = _indexed(_nested(a.prefixed(output_prefix)))
        if not inputs and not outputs:
            return None
        choices: list[dict[str, Any]] = []
        for tree in outputs:
            message = {**_flat_message(tree), "role": "assistant"}
            reason = tree.get("finish_reason") if isinstance(tree, dict) else None
            if reason is None and message.get("tool_calls"):
                reason = "tool_calls"
            choices.append({"index": len(choices), "message": message, "finish_reason": reason})
        return {"messages": [_flat_message(t) for t in inputs]}, ({"choices": choices} if choices else None)

    return read


def _genai_events(a: _Attrs, events: list[tuple[str, dict[str, Any]]]) -> Found:
    messages: list[dict[str, Any]] = []
    choices: list[dict[str, Any]] = []
    for name, attrs in events:
        if name in _EVENT_ROLES:
            message = {"role": _EVENT_ROLES[name], "content": _json(attrs.get("content"))}
            if attrs.get("tool_calls") is not None:
                message["tool_calls"] = _json(attrs["tool_calls"])
            if name == "gen_ai.tool.message" and attrs.get("id") is not None:
                message["tool_call_id"] = attrs["id"]
            messages.append(message)
        elif name == "gen_ai.choice":
            message = _json(attrs.get("message")) or {}
            choices.append({"index": len(choices), "message": {"role": "assistant", **message},
                            "finish_reason": attrs.get("finish_reason")})  # fmt: skip
    if not messages and not choices:
        return None
    return {"messages": messages}, ({"choices": choices} if choices else None)


_READERS: Final = (
    _langsmith,
    _genai_json,
    _flat("gen_ai.prompt", "gen_ai.completion"),
    _flat("llm.input_messages", "llm.output_messages"),
    _genai_events,
)
