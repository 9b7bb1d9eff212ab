"""One recorded chat message, in any of the forms traces hold it, → an OpenAI chat message (``ChatMessage``).

Accepted input forms (all plain ``dict``s, as JSON-decoded from a trace):

* **LangChain lc-serialized**: ``{"lc": 1, "type": "constructor", "id": [..., "<Class>"], "kwargs": {...}}`` with
  ``<Class>`` one of ``SystemMessage``, ``HumanMessage``, ``AIMessage``, ``ToolMessage``, ``FunctionMessage``,
  ``ChatMessage`` or their ``…Chunk`` variants (what the LangChain tracer records in ``inputs.messages`` and
  ``outputs.generations[…].message``).
* **LangChain plain dicts**: ``{"type": "system"|"human"|"ai"|"tool"|"function"|"chat"|"AIMessageChunk"…,
  "content": …, …}`` (``BaseMessage.model_dump()``), or ``{"type": …, "data": {…}}`` (``messages_to_dict``).
* **OpenAI role dicts**: ``{"role": "system"|"developer"|"user"|"assistant"|"tool"|"function", "content": …}``
  (``wrap_openai`` requests and ``choices[0].message`` of responses); ``human``/``ai`` are read as user/assistant.
* A LangChain ``BaseMessage`` object is read through its ``model_dump()``.

Output rules:

* Assistant tool calls come from the parsed LangChain form (``tool_calls: [{"name", "args": {…}, "id"}]`` →
  ``{"id", "type": "function", "function": {"name", "arguments": json.dumps(args)}}``) and from the OpenAI form
  (``additional_kwargs.tool_calls`` or the message's own ``tool_calls``); one call present in both (same id) is
  kept once, in its OpenAI form (the model's exact argument text). Legacy ``function_call`` is kept as is.
  An assistant message with calls and empty content gets ``content: None``, as OpenAI fine-tuning data has it.
* Content is a string, or a list of parts: text parts (``{"type": "text", "text"}``, or bare strings) and image
  parts are kept (images as OpenAI ``{"type": "image_url", "image_url": {"url", "detail"?}}``; LangChain
  ``{"type": "image", "url"|"base64"+"mime_type"}`` blocks become that too). An assistant's all-text part list
  is joined into one string; its ``tool_use`` parts are dropped when a tool call carries the same id (Anthropic
  records each call twice). Any other part type raises ``ConversionError("unsupported_content", …)``.
* Tool messages keep ``tool_call_id`` (and drop LangChain's ``name``, the tool's name: OpenAI tool messages have
  none); function messages keep ``name``; a ``name`` on any other message is kept.

Anything that cannot be represented faithfully raises ``ConversionError(reason, detail)``; ``reason`` is one of
``malformed_message``, ``unknown_role``, ``missing_content``, ``invalid_arguments``, ``unsupported_content``.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from tracetune.chat.types import ChatMessage, FunctionCall, ToolCall

__all__ = ["ConversionError", "message_from_any", "tool_call_from_langchain", "tool_call_from_openai"]


# ``json.dumps(args, ensure_ascii=False)``, the text langchain-openai sends back to the model for a parsed call.
_dumps = json.JSONEncoder(ensure_ascii=False).encode


class ConversionError(ValueError):
    """A message that cannot become an OpenAI chat message; the caller turns it into a ``Skip``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# LangChain class names (last element of an lc ``id``) and ``type`` values → OpenAI role; "chat" reads ``role``.
_LC_ROLES = {
    "SystemMessage": "system",
    "SystemMessageChunk": "system",
    "HumanMessage": "user",
    "HumanMessageChunk": "user",
    "AIMessage": "assistant",
    "AIMessageChunk": "assistant",
    "ToolMessage": "tool",
    "ToolMessageChunk": "tool",
    "FunctionMessage": "function",
    "FunctionMessageChunk": "function",
    "ChatMessage": "chat",
    "ChatMessageChunk": "chat",
    "system": "system",
    "human": "user",
    "ai": "assistant",
    "tool": "tool",
    "function": "function",
    "chat": "chat",
}
_ROLES = {
    "system": "system",
    "developer": "developer",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "function",
    "human": "user",
    "ai": "assistant",
}


def message_from_any(msg: Any) -> ChatMessage:
    """``msg`` in any accepted form (see the module docstring) → ``ChatMessage``; raises ``ConversionError``."""
    if not isinstance(msg, dict):
        dump = getattr(msg, "model_dump", None)
        if dump is None:
            raise ConversionError("malformed_message", f"expected a message object, got {type(msg).__name__}")
        msg = dump()
        if not isinstance(msg, dict):
            raise ConversionError("malformed_message", "model_dump() did not return an object")
    if "lc" in msg:
        ident = msg.get("id")
        kwargs = msg.get("kwargs")
        if msg.get("type") != "constructor" or not isinstance(ident, list) or not ident or not isinstance(kwargs, dict):
            raise ConversionError("malformed_message", "lc-serialized message without constructor id/kwargs")
        cls = ident[-1]
        role = _LC_ROLES.get(cls) if isinstance(cls, str) else None
        if role is None:
            raise ConversionError("unknown_role", f"LangChain class {cls!r} is not a chat message")
        return _from_langchain(role, kwargs)
    kind = msg.get("type")
    if kind is None or kind == "message":  # OpenAI chat messages (and Responses-API style message items)
        if "role" not in msg:
            raise ConversionError("malformed_message", "message has neither 'role', 'type' nor 'lc'")
        return _from_openai(msg)
    role = _LC_ROLES.get(kind) if isinstance(kind, str) else None
    if role is None:
        raise ConversionError("unknown_role", f"message type {kind!r} is not a chat message type")
    data = msg.get("data")
    if isinstance(data, dict) and "content" not in msg:  # messages_to_dict(): {"type", "data": {...}}
        msg = data
    return _from_langchain(role, msg)


def _role(value: Any) -> str:
    role = _ROLES.get(value) if isinstance(value, str) else None
    if role is None:
        raise ConversionError("unknown_role", f"role {value!r} is not an OpenAI chat role")
    return role


def _from_langchain(role: str, kw: dict[str, Any]) -> ChatMessage:
    """LangChain message fields (lc ``kwargs`` or a ``model_dump``) under the already-mapped ``role``."""
    content = kw.get("content")
    if type(content) is str and not kw.get("name"):  # fast path (most messages): text, no name, no calls
        extra = kw.get("additional_kwargs")
        if not extra or ("name" not in extra and "tool_calls" not in extra and "function_call" not in extra):
            if role == "system" or role == "user":
                return {"role": role, "content": content}  # type: ignore[typeddict-item]
            if role == "assistant" and content and not kw.get("tool_calls") and not kw.get("invalid_tool_calls"):
                return {"role": "assistant", "content": content}
    if role == "chat":
        role = _role(kw.get("role"))
    extra = kw.get("additional_kwargs") or {}
    if not isinstance(extra, dict):
        raise ConversionError("malformed_message", "additional_kwargs is not an object")
    name = kw.get("name") or extra.get("name")
    if role == "assistant":
        calls = _assistant_calls(kw.get("tool_calls"), extra.get("tool_calls"), kw.get("invalid_tool_calls"))
        return _assistant(kw, calls, extra.get("function_call"), name)
    out: ChatMessage = {"role": role, "content": _content(kw, role, None)}  # type: ignore[typeddict-item]
    return _finish(out, role, name, kw.get("tool_call_id"))


def _from_openai(msg: dict[str, Any]) -> ChatMessage:
    role = _role(msg.get("role"))
    name = msg.get("name")
    content = msg.get("content")
    if type(content) is str and not name:  # fast path (most messages): text, no name, no calls
        if role == "system" or role == "user" or role == "developer":
            return {"role": role, "content": content}  # type: ignore[typeddict-item]
        if role == "assistant" and content and not msg.get("tool_calls") and not msg.get("function_call"):
            return {"role": "assistant", "content": content}
    if role == "assistant":
        calls = _assistant_calls(None, msg.get("tool_calls"), None)
        return _assistant(msg, calls, msg.get("function_call"), name)
    out: ChatMessage = {"role": role, "content": _content(msg, role, None)}  # type: ignore[typeddict-item]
    return _finish(out, role, name, msg.get("tool_call_id"))


def _finish(out: ChatMessage, role: str, name: Any, tool_call_id: Any) -> ChatMessage:
    if role == "tool":
        if not isinstance(tool_call_id, str) or not tool_call_id:
            raise ConversionError("malformed_message", "tool message without tool_call_id")
        out["tool_call_id"] = tool_call_id
        return out  # OpenAI tool messages have no name (LangChain's ToolMessage.name is the tool's)
    if name:
        if not isinstance(name, str):
            raise ConversionError("malformed_message", "name is not a string")
        out["name"] = name
    elif role == "function":
        raise ConversionError("malformed_message", "function message without name")
    return out


def _assistant(src: dict[str, Any], calls: list[ToolCall], function_call: Any, name: Any) -> ChatMessage:
    content = _content(src, "assistant", {c["id"] for c in calls} if calls else None)
    fc = _function_call(function_call, "function_call") if function_call is not None else None
    if not content and (calls or fc):
        content = None
    elif content is None:
        raise ConversionError("missing_content", "assistant message with no content and no tool or function call")
    out: ChatMessage = {"role": "assistant", "content": content}
    if fc is not None:
        out["function_call"] = fc
    if calls:
        out["tool_calls"] = calls
    if name:
        if not isinstance(name, str):
            raise ConversionError("malformed_message", "name is not a string")
        out["name"] = name
    return out


def _content(src: dict[str, Any], role: str, call_ids: set[str] | None) -> Any:
    """The message's content: a string, a list of text/image parts, or None (assistant only, checked by caller)."""
    content = src.get("content")
    if type(content) is str:
        return content
    if content is None:
        if role == "assistant":
            return None
        raise ConversionError("missing_content", f"{role} message has no content")
    if not isinstance(content, list):
        raise ConversionError("malformed_message", f"content is a {type(content).__name__}, not text or parts")
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        if isinstance(part, str):
            parts.append({"type": "text", "text": part})
            continue
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise ConversionError("malformed_message", f"content[{i}] text part without text")
            parts.append({"type": "text", "text": text})
        elif kind == "image_url" or kind == "image":
            parts.append(_image_part(part, i))
        elif kind == "tool_use" and call_ids is not None and part.get("id") in call_ids:
            continue  # the same call is in tool_calls
        else:
            raise ConversionError("unsupported_content", f"content[{i}] has part type {kind!r}")
    if role == "assistant" and all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _image_part(part: dict[str, Any], i: int) -> dict[str, Any]:
    if part["type"] == "image_url":
        image = part.get("image_url")
        if isinstance(image, str):
            image = {"url": image}
        if not isinstance(image, dict) or not isinstance(image.get("url"), str):
            raise ConversionError("malformed_message", f"content[{i}] image_url part without url")
        return {"type": "image_url", "image_url": image}
    # LangChain standard block: {"type": "image", "url": …} or {"type": "image", "base64"|"data": …, "mime_type"}
    url = part.get("url")
    data = part.get("base64") or (part.get("data") if part.get("source_type") == "base64" else None)
    if isinstance(data, str) and isinstance(part.get("mime_type"), str):
        url = f"data:{part['mime_type']};base64,{data}"
    if not isinstance(url, str):
        raise ConversionError("unsupported_content", f"content[{i}] image block is neither a URL nor base64 data")
    return {"type": "image_url", "image_url": {"url": url}}


def _assistant_calls(parsed: Any, openai: Any, invalid: Any) -> list[ToolCall]:
    """Tool calls of an assistant message from the parsed (LangChain) and OpenAI forms, deduplicated by id."""
    if invalid:
        first = invalid[0] if isinstance(invalid, list) and isinstance(invalid[0], dict) else {}
        raise ConversionError(
            "invalid_arguments", f"invalid_tool_calls: call {first.get('name')!r} has arguments that are not JSON"
        )
    if not parsed and not openai:
        return []
    calls: list[ToolCall] = []
    seen: set[str] = set()
    if openai:
        if not isinstance(openai, list):
            raise ConversionError("malformed_message", "tool_calls is not a list")
        for i, call in enumerate(openai):
            tc = tool_call_from_openai(call, f"tool_calls[{i}]")
            calls.append(tc)
            seen.add(tc["id"])
    if parsed:
        if not isinstance(parsed, list):
            raise ConversionError("malformed_message", "tool_calls is not a list")
        for i, call in enumerate(parsed):
            if isinstance(call, dict) and call.get("id") in seen:
                continue
            calls.append(tool_call_from_langchain(call, f"tool_calls[{i}]"))
    return calls


def tool_call_from_langchain(call: Any, where: str = "tool_call") -> ToolCall:
    """A parsed LangChain tool call ``{"name", "args": {…}, "id"}`` → OpenAI ``ToolCall`` (``json.dumps(args)``)."""
    if not isinstance(call, dict):
        raise ConversionError("malformed_message", f"{where} is not an object")
    cid, name, args = call.get("id"), call.get("name"), call.get("args")
    if not isinstance(cid, str) or not cid or not isinstance(name, str) or not name:
        raise ConversionError("malformed_message", f"{where} needs a string id and name")
    if isinstance(args, str):  # a chunk's partial form: the raw JSON text
        _check_json(args, f"{where}.args")
        arguments = args
    elif isinstance(args, dict):
        arguments = _dumps(args)
    else:
        raise ConversionError("invalid_arguments", f"{where}.args is not an object")
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": arguments}}


def tool_call_from_openai(call: Any, where: str = "tool_call") -> ToolCall:
    """An OpenAI tool call ``{"id", "type": "function", "function": {"name", "arguments": "<json>"}}``, checked."""
    if not isinstance(call, dict):
        raise ConversionError("malformed_message", f"{where} is not an object")
    cid = call.get("id")
    if not isinstance(cid, str) or not cid:
        raise ConversionError("malformed_message", f"{where} has no id")
    if call.get("type", "function") != "function":
        raise ConversionError("unsupported_content", f"{where} has type {call.get('type')!r}, not 'function'")
    return {"id": cid, "type": "function", "function": _function_call(call.get("function"), f"{where}.function")}


def _function_call(fc: Any, where: str) -> FunctionCall:
    if not isinstance(fc, dict) or not isinstance(fc.get("name"), str) or not fc["name"]:
        raise ConversionError("malformed_message", f"{where} needs a name")
    arguments = fc.get("arguments")
    if isinstance(arguments, dict):  # some SDKs record arguments already parsed
        arguments = _dumps(arguments)
    elif not isinstance(arguments, str):
        raise ConversionError("invalid_arguments", f"{where}.arguments is not a JSON text")
    else:
        _check_json(arguments, f"{where}.arguments")
    return {"name": fc["name"], "arguments": arguments}


def _check_json(text: str, where: str) -> None:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ConversionError("invalid_arguments", f"{where} is not valid JSON: {text[:80]!r}") from None
    if not isinstance(value, dict):
        raise ConversionError("invalid_arguments", f"{where} is JSON but not an object: {text[:80]!r}")
