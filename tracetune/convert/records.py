"""Pure functions: one ``ChatSession`` (``types.py``, OpenAI chat format) → one JSONL training record.

``record_from_session(session, fmt)`` builds a plain dict; ``dumps_record(record)`` turns it into one JSONL line.
No format carries the session's ``source`` (lineage stays with the exporter). An input that is not
``ChatSession``-shaped raises ``InvalidInput(code="malformed_session")``. Formats (``FORMATS``):

``"openai"`` — OpenAI chat fine-tuning JSONL, exactly what ``POST /v1/files`` (purpose ``fine-tune``) takes::

    {"messages": [...], "tools": [...], "parallel_tool_calls": false}

  ``messages`` are the session's messages unchanged (shared, not copied). ``tools`` is written when the session
  offered tools, else ``functions`` (legacy) when it offered functions; never both (``tools`` wins).
  ``parallel_tool_calls`` is written when the session knows it and offered ``tools``.

``"hf"`` — Hugging Face / TRL conversational dataset, the shapes ``tokenizer.apply_chat_template(messages,
tools=tools)`` takes::

    {"messages": [{"role": "assistant", "content": "",
                   "tool_calls": [{"id": "call_1", "type": "function",
                                   "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                  {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "18C"}],
     "tools": [{"type": "function", "function": {"name": ..., "description": ..., "parameters": {...}}}]}

  * tool-call ``arguments`` are parsed into a dict (chat templates render them with ``tojson``); a value that is
    not a JSON object text is kept as the original string;
  * legacy ``function_call`` becomes a one-element ``tool_calls`` (no ``id``); ``function`` messages become
    ``tool`` messages with ``name``; ``functions`` become ``tools`` entries;
  * ``tool`` messages also get ``name`` (the called function, looked up by ``tool_call_id``) since many
    templates print it;
  * ``developer`` becomes ``system`` (templates know no developer role);
  * ``content`` is always present: ``None`` → ``""``; a list of only text parts → the texts joined with
    ``"\\n"``; other part lists are kept, with OpenAI ``image_url`` parts as ``{"type": "image", "url": …}``;
  * ``weight`` is dropped (TRL has no per-message weight); ``tools`` is omitted when none were offered.

``"sharegpt"`` — the LLaMA-Factory ShareGPT convention (``formatting: sharegpt`` with its default tags)::

    {"conversations": [{"from": "system", "value": ...}, {"from": "human", "value": ...},
                       {"from": "function_call", "value": "{\\"name\\": ..., \\"arguments\\": {...}}"},
                       {"from": "observation", "value": ...}, {"from": "gpt", "value": ...}],
     "tools": "[{\\"name\\": ..., \\"description\\": ..., \\"parameters\\": {...}}]"}

  * leading ``system``/``developer`` messages become one ``system`` entry (texts joined with ``"\\n\\n"``);
  * an assistant turn with calls becomes one ``function_call`` entry whose value is the JSON text of
    ``{"name", "arguments": <object>}``, or of a list of those for parallel calls; its text content, if any, is
    dropped (LLaMA-Factory's own OpenAI converter does the same);
  * consecutive ``tool``/``function`` messages become one ``observation``, joined the way LLaMA-Factory's own
    converter joins parallel results (``"\\n</tool_response>\\n<tool_response>\\n"``);
  * ``tools`` is the JSON text of the bare function definitions, omitted when none were offered;
  * LLaMA-Factory drops any example whose turns do not alternate human/observation → gpt/function_call and end
    on the assistant side; such a session, a system message after the start, or a non-text content part raises
    ``InvalidInput`` (code ``sharegpt_unrepresentable``) instead of writing a line that would be dropped.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import orjson

from tracetune.chat.types import ChatSession
from tracetune.errors import InvalidInput

FORMATS = ("openai", "hf", "sharegpt")

SHAREGPT_OBSERVATION_JOINER = "\n</tool_response>\n<tool_response>\n"
_SHAREGPT_USER_SIDE = ("human", "observation")
_SHAREGPT_ASSISTANT_SIDE = ("gpt", "function_call")


class _ChatSessionShape:
    """``with chat_session_shape:`` turns the errors a non-``ChatSession``-shaped input causes into
    ``InvalidInput(field="messages", code="malformed_session")`` (a class, not ``@contextmanager``: 10x cheaper)."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is not None and issubclass(kind, (AttributeError, KeyError, TypeError, ValueError)):
            message = f"not a ChatSession: {kind.__name__}: {exc}"
            raise InvalidInput(message, field="messages", code="malformed_session") from exc


chat_session_shape = _ChatSessionShape()


def record_from_session(session: ChatSession, fmt: str = "openai") -> dict[str, Any]:
    """One session → one record dict in format ``fmt`` (see the module docstring for each shape)."""
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}", field="format")
    with chat_session_shape:
        messages = session.get("messages")
        if not isinstance(messages, list):
            raise InvalidInput("session has no messages list", field="messages")
        if fmt == "openai":
            return _openai_record(session, messages)
        if fmt == "hf":
            return _hf_record(session, messages)
        return _sharegpt_record(session, messages)


def dumps_record(record: dict[str, Any]) -> bytes:
    """One record → one JSONL line (compact UTF-8 JSON, ``b"\\n"`` appended)."""
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


# ── openai ────────────────────────────────────────────────────────────────────────────────────────────────


def _openai_record(session: ChatSession, messages: list[Any]) -> dict[str, Any]:
    record: dict[str, Any] = {"messages": messages}
    tools = session.get("tools")
    if tools:
        record["tools"] = tools
        parallel = session.get("parallel_tool_calls")
        if parallel is not None:
            record["parallel_tool_calls"] = parallel
    else:
        functions = session.get("functions")
        if functions:
            record["functions"] = functions
    return record


# ── hf ────────────────────────────────────────────────────────────────────────────────────────────────────


def _parse_arguments(arguments: Any) -> Any:
    """A JSON object text → dict; anything else is returned unchanged."""
    if isinstance(arguments, str):
        try:
            parsed = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return arguments
        return parsed if isinstance(parsed, dict) else arguments
    return arguments


def _hf_content(content: Any) -> Any:
    if content is None:
        return ""
    if not isinstance(content, list):
        return content
    if all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "\n".join(str(p.get("text", "")) for p in content)
    parts = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            parts.append({"type": "image", "url": url})
        else:
            parts.append(part)
    return parts


def _hf_call(function: dict[str, Any], call_id: Any) -> dict[str, Any]:
    call: dict[str, Any] = {
        "type": "function",
        "function": {"name": function.get("name"), "arguments": _parse_arguments(function.get("arguments"))},
    }
    if call_id:
        call["id"] = call_id
    return call


def _hf_record(session: ChatSession, messages: list[Any]) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    names_by_call_id: dict[str, Any] = {}
    for message in messages:
        role = message.get("role")
        msg: dict[str, Any] = {"role": "system" if role == "developer" else role}
        msg["content"] = _hf_content(message.get("content"))
        if role == "assistant":
            calls = []
            for tc in message.get("tool_calls") or ():
                function = tc.get("function") or {}
                call_id = tc.get("id")
                if call_id:
                    names_by_call_id[call_id] = function.get("name")
                calls.append(_hf_call(function, call_id))
            if message.get("function_call"):
                calls.append(_hf_call(message["function_call"], None))
            if calls:
                msg["tool_calls"] = calls
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if call_id is not None:
                msg["tool_call_id"] = call_id
            name = message.get("name") or names_by_call_id.get(call_id or "")
            if name:
                msg["name"] = name
        elif role == "function":
            msg["role"] = "tool"
            msg["name"] = message.get("name")
        elif message.get("name"):
            msg["name"] = message["name"]
        out.append(msg)
    record: dict[str, Any] = {"messages": out}
    tools = session.get("tools") or [{"type": "function", "function": f} for f in session.get("functions") or ()]
    if tools:
        record["tools"] = tools
    return record


# ── sharegpt ──────────────────────────────────────────────────────────────────────────────────────────────


def _unrepresentable(message: str, field: str) -> InvalidInput:
    return InvalidInput(f"not representable in ShareGPT: {message}", field=field, code="sharegpt_unrepresentable")


def _sharegpt_text(content: Any, field: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for k, part in enumerate(content):
            if not (isinstance(part, dict) and part.get("type") == "text"):
                raise _unrepresentable("only text content parts can be carried", f"{field}[{k}]")
            texts.append(str(part.get("text", "")))
        return "\n".join(texts)
    raise _unrepresentable("content is neither text nor a list of parts", field)


def _sharegpt_calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    functions = [tc.get("function") or {} for tc in message.get("tool_calls") or ()]
    if message.get("function_call"):
        functions.append(message["function_call"])
    return [{"name": f.get("name"), "arguments": _parse_arguments(f.get("arguments"))} for f in functions]


def _sharegpt_record(session: ChatSession, messages: list[Any]) -> dict[str, Any]:
    conversation: list[dict[str, str]] = []
    start = 0
    systems = []
    while start < len(messages) and messages[start].get("role") in ("system", "developer"):
        systems.append(_sharegpt_text(messages[start].get("content"), f"messages[{start}].content"))
        start += 1
    if systems:
        conversation.append({"from": "system", "value": "\n\n".join(systems)})
    turns: list[dict[str, str]] = []
    observations: list[str] = []
    for i in range(start, len(messages)):
        message = messages[i]
        role = message.get("role")
        text = _sharegpt_text(message.get("content"), f"messages[{i}].content")
        if role in ("tool", "function"):
            observations.append(text)
            continue
        if observations:
            turns.append({"from": "observation", "value": SHAREGPT_OBSERVATION_JOINER.join(observations)})
            observations = []
        if role == "user":
            turns.append({"from": "human", "value": text})
        elif role == "assistant":
            calls = _sharegpt_calls(message)
            if calls:
                value = orjson.dumps(calls[0] if len(calls) == 1 else calls).decode()
                turns.append({"from": "function_call", "value": value})
            else:
                turns.append({"from": "gpt", "value": text})
        else:
            raise _unrepresentable(f"a {role!r} message after the conversation started", f"messages[{i}].role")
    if observations:
        turns.append({"from": "observation", "value": SHAREGPT_OBSERVATION_JOINER.join(observations)})
    for k, turn in enumerate(turns):
        if turn["from"] not in (_SHAREGPT_ASSISTANT_SIDE if k % 2 else _SHAREGPT_USER_SIDE):
            raise _unrepresentable(
                f"turn {k} is {turn['from']!r}; turns must alternate human/observation and gpt/function_call",
                "messages",
            )
    if not turns or len(turns) % 2:
        raise _unrepresentable("the conversation must end with an assistant turn", "messages")
    conversation.extend(turns)
    record: dict[str, Any] = {"conversations": conversation}
    offered = session.get("tools")
    tools = [t.get("function") for t in offered if t.get("type") == "function"] if offered else session.get("functions")
    if tools:
        record["tools"] = orjson.dumps(tools).decode()
    return record
