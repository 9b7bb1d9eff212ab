"""The ONE chat format: messages + tools → model prompt (with trainable spans), and tool calls parsed back out.

Training (labels), serving (prompt + parsing the completion) and validation (does a record render?) all call
this module, so the text the model learns from is byte-for-byte the text it is served with.

SmolLM2's own chat template is plain ChatML (``<|im_start|>{role}\\n{content}<|im_end|>\\n``, a default system
prompt when the first message is not ``system``, generation prompt ``<|im_start|>assistant\\n``) and knows
nothing of tools. tracetune extends it, and renders a plain conversation (system / user / assistant text)
exactly as the model's template does:

* tools offered (``tools`` or legacy ``functions``) are described at the end of the system turn (after the
  caller's system text, or as the whole system turn when there is none): a short instruction, one JSON schema
  per line, and how to call;
* an assistant's calls (``tool_calls``, or legacy ``function_call``) follow its text as tagged JSON blocks,
  one per call: ``<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>``; call ids
  are not rendered;
* a ``tool`` message (and a legacy ``function`` message) is a turn of its own with role ``tool`` and the
  result as its content. Why a ``tool`` role rather than a ``user`` turn wrapping ``<tool_response>`` tags:
  the model's template renders any role verbatim, so such a turn is exactly what SmolLM2's own template makes
  of an OpenAI tool message (no extra convention to learn); each result stays one turn, so messages map 1:1
  onto turns and a result is recovered by splitting on the turn markers (:func:`split_turns`); and tool output
  can never be mistaken for something the user said. Results are matched to calls by order, as OpenAI's
  list order does; the ``tool_call_id`` / function ``name`` is not rendered;
* ``developer`` is treated as ``system``; content given as a list of parts has its text parts joined with
  ``"\\n"`` (as vLLM does); any other part (image, audio, file) is an :class:`~tracetune.errors.InvalidInput`.

Only ChatML is implemented; :class:`ChatTemplate` holds the role markers so another family can be added.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypedDict

import orjson

from tracetune.chat.types import ToolCall
from tracetune.errors import InvalidInput

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
# json.dumps separators used inside a rendered call block (constrained decoding must produce the same text)
TOOL_CALL_JSON_SEPARATORS = (", ", ": ")
TOOL_CALL_JOINER = "\n"  # between the assistant's text and its first block, and between blocks


@dataclass(frozen=True)
class ChatTemplate:
    """The markers of one model family's chat template: a turn is ``turn_start + role + role_end + body +
    turn_end + turn_sep``. ``default_system`` is rendered when the first message is not a system message."""

    name: str
    turn_start: str
    role_end: str
    turn_end: str
    turn_sep: str
    default_system: str | None = None
    tool_role: str = "tool"

    def header(self, role: str) -> str:
        return f"{self.turn_start}{role}{self.role_end}"

    def generation_prompt(self) -> str:
        return self.header("assistant")


CHATML = ChatTemplate(
    name="chatml",
    turn_start=IM_START,
    role_end="\n",
    turn_end=IM_END,
    turn_sep="\n",
    default_system="You are a helpful AI assistant named SmolLM, trained by Hugging Face",
)
TEMPLATES: dict[str, ChatTemplate] = {CHATML.name: CHATML}


def get_template(name: str) -> ChatTemplate:
    """The template registered under ``name`` (``"chatml"``)."""
    try:
        return TEMPLATES[name]
    except KeyError:
        raise InvalidInput(
            f"unknown chat template {name!r}; known: {', '.join(sorted(TEMPLATES))}", field="chat_template"
        ) from None


class Segment(NamedTuple):
    """A piece of the prompt; ``trainable`` marks text the model must learn to produce (loss is taken on it)."""

    text: str
    trainable: bool


class ParsedAssistant(TypedDict):
    content: str | None
    tool_calls: list[ToolCall]
    errors: list[str]  # one line per block that looked like a call but was not one (its text stays in content)


# -- rendering -------------------------------------------------------------------------------------------------


def render(
    messages: Sequence[Mapping[str, Any]],
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    functions: Sequence[Mapping[str, Any]] | None = None,
    add_generation_prompt: bool = False,
    template: ChatTemplate | str = CHATML,
) -> list[Segment]:
    """Render OpenAI chat ``messages`` (and the tools offered) into prompt segments.

    Concatenating the segments' texts gives the prompt. A segment is trainable exactly for an assistant turn's
    text + call blocks + end marker, unless the message has OpenAI's ``weight: 0``. Adjacent segments with the
    same flag are merged. Raises :class:`InvalidInput` naming the offending field (``messages[2].content[1]``).
    """
    tpl = get_template(template) if isinstance(template, str) else template
    tool_text = describe_tools(tools, functions, template=tpl)
    turns = [_normalize(i, m) for i, m in enumerate(messages)]
    if turns and turns[0].role == "system":
        if tool_text:
            first = turns[0]
            body = f"{first.body}\n\n{tool_text}" if first.body else tool_text
            turns[0] = _Turn("system", body, False)
    elif tool_text:
        turns.insert(0, _Turn("system", tool_text, False))
    elif tpl.default_system is not None and turns:
        turns.insert(0, _Turn("system", tpl.default_system, False))

    out: list[Segment] = []
    for turn in turns:
        role = tpl.tool_role if turn.role == "tool" else turn.role
        _append(out, tpl.header(role), False)
        _append(out, turn.body + tpl.turn_end, turn.trainable)
        _append(out, tpl.turn_sep, False)
    if add_generation_prompt:
        _append(out, tpl.generation_prompt(), False)
    return out


def render_prompt(
    messages: Sequence[Mapping[str, Any]],
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    functions: Sequence[Mapping[str, Any]] | None = None,
    add_generation_prompt: bool = True,
    template: ChatTemplate | str = CHATML,
) -> str:
    """The prompt string for serving: :func:`render` joined, ending with the assistant generation prompt."""
    segments = render(
        messages, tools=tools, functions=functions, add_generation_prompt=add_generation_prompt, template=template
    )
    return "".join(s.text for s in segments)


def describe_tools(
    tools: Sequence[Mapping[str, Any]] | None,
    functions: Sequence[Mapping[str, Any]] | None = None,
    *,
    template: ChatTemplate = CHATML,
) -> str:
    """The system-prompt section that offers the tools ("" when none): instruction, one schema per line, usage.

    Memoized on the exact JSON of the definitions: a dataset offers the same tools in every record."""
    if not tools and not functions:
        return ""
    try:
        key = (orjson.dumps(tools), orjson.dumps(functions), template)
    except TypeError:  # not plain JSON (a Mapping subclass, a huge int …): no memo
        return _describe_tools(tools, functions, template)
    text = _TOOL_TEXTS.get(key)
    if text is None:
        text = _describe_tools(tools, functions, template)
        if len(_TOOL_TEXTS) >= _TOOL_TEXTS_SIZE:
            _TOOL_TEXTS.clear()
        _TOOL_TEXTS[key] = text
    return text


_TOOL_TEXTS: dict[tuple[bytes, bytes, ChatTemplate], str] = {}
_TOOL_TEXTS_SIZE = 256


def _describe_tools(
    tools: Sequence[Mapping[str, Any]] | None,
    functions: Sequence[Mapping[str, Any]] | None,
    template: ChatTemplate,
) -> str:
    schemas: list[str] = []
    for i, tool in enumerate(tools or ()):
        schemas.append(_schema_line(_tool_function(tool, f"tools[{i}]"), f"tools[{i}]"))
    for i, fn in enumerate(functions or ()):
        schemas.append(_schema_line(fn, f"functions[{i}]"))
    if not schemas:
        return ""
    example = f'{TOOL_CALL_OPEN}{{"name": "<tool name>", "arguments": {{<arguments as JSON>}}}}{TOOL_CALL_CLOSE}'
    return "\n".join(
        [
            "# Tools",
            "You may call one or more of these tools (one JSON schema per line):",
            *schemas,
            "To call a tool, write one block per call:",
            example,
            f'The results come back in "{template.tool_role}" turns, in the order of the calls.',
        ]
    )


def tool_call_to_block(name: str, arguments: str | Mapping[str, Any]) -> str:
    """One call as rendered: ``<tool_call>{"name": …, "arguments": {…}}</tool_call>``.

    ``arguments`` is an object or its JSON text (OpenAI's form); it is re-serialized, so the block is canonical.
    """
    args = _decode_arguments(arguments, "arguments") if isinstance(arguments, str) else dict(arguments)
    body = json.dumps({"name": name, "arguments": args}, ensure_ascii=False, separators=TOOL_CALL_JSON_SEPARATORS)
    return f"{TOOL_CALL_OPEN}{body}{TOOL_CALL_CLOSE}"


def split_turns(prompt: str, *, template: ChatTemplate = CHATML) -> list[tuple[str, str]]:
    """Recover ``(role, body)`` per turn from a rendered prompt (inverse of the turn framing; a trailing
    generation prompt comes back as an assistant turn with an empty body). Text that itself contains the turn
    markers cannot be told apart from them, here as for the model."""
    turns: list[tuple[str, str]] = []
    for chunk in prompt.split(template.turn_start)[1:]:
        role, _, rest = chunk.partition(template.role_end)
        body = rest.split(template.turn_end, 1)[0]
        turns.append((role, body))
    return turns


class _Turn(NamedTuple):
    role: str  # system | user | assistant | tool
    body: str
    trainable: bool


def _append(out: list[Segment], text: str, trainable: bool) -> None:
    if not text:
        return
    if out and out[-1].trainable == trainable:
        out[-1] = Segment(out[-1].text + text, trainable)
    else:
        out.append(Segment(text, trainable))


_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_ROLES |= {"tool": "tool", "function": "tool"}


def _normalize(index: int, message: Mapping[str, Any]) -> _Turn:
    where = f"messages[{index}]"
    if not isinstance(message, Mapping):
        raise InvalidInput("a message must be an object", field=where)
    raw_role = message.get("role")
    role = _ROLES.get(raw_role) if isinstance(raw_role, str) else None
    if role is None:
        raise InvalidInput(
            f"unknown role {message.get('role')!r}; expected one of {', '.join(_ROLES)}", field=f"{where}.role"
        )
    text = content_text(message.get("content"), f"{where}.content")
    if role != "assistant":
        return _Turn(role, text, False)
    blocks = [tool_call_to_block(n, a) for n, a in _assistant_calls(message, where)]
    body = TOOL_CALL_JOINER.join([text, *blocks] if text else blocks)
    weight = message.get("weight", 1)
    if weight not in (0, 1) or isinstance(weight, bool):
        raise InvalidInput(f"weight must be 0 or 1, got {weight!r}", field=f"{where}.weight")
    return _Turn(role, body, weight == 1)


def content_text(content: Any, where: str = "content") -> str:
    """Message content as text: a string as is, ``None`` as "", a parts list's text parts joined by "\\n"."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidInput(f"content must be a string or a list of parts, got {type(content).__name__}", field=where)
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind != "text" or not isinstance(part.get("text"), str):
            raise InvalidInput(
                f"content part of type {kind!r} is not supported: only text parts can be rendered for a text model",
                field=f"{where}[{j}]",
            )
        texts.append(part["text"])
    return "\n".join(texts)


def _assistant_calls(message: Mapping[str, Any], where: str) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []
    for j, call in enumerate(message.get("tool_calls") or ()):
        at = f"{where}.tool_calls[{j}]"
        if not isinstance(call, Mapping) or call.get("type", "function") != "function":
            raise InvalidInput("only function tool calls can be rendered", field=f"{at}.type")
        calls.append(_name_and_arguments(call.get("function"), f"{at}.function"))
    if message.get("function_call") is not None:
        calls.append(_name_and_arguments(message["function_call"], f"{where}.function_call"))
    return calls


def _name_and_arguments(fn: Any, at: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise InvalidInput("a call needs a function name", field=f"{at}.name")
    arguments = fn.get("arguments")
    if arguments is None or arguments == "":
        return fn["name"], {}
    if isinstance(arguments, str):
        return fn["name"], _decode_arguments(arguments, f"{at}.arguments")
    if isinstance(arguments, Mapping):
        return fn["name"], dict(arguments)
    raise InvalidInput("arguments must be a JSON object (or its text)", field=f"{at}.arguments")


def _decode_arguments(text: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"arguments are not valid JSON: {exc}", field=where) from None
    if not isinstance(value, dict):
        raise InvalidInput(f"arguments must be a JSON object, got {type(value).__name__}", field=where)
    return value


def _tool_function(tool: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(tool, Mapping):
        raise InvalidInput("a tool must be an object", field=where)
    if "function" in tool:
        if tool.get("type", "function") != "function":
            raise InvalidInput(f"only function tools can be offered, got type {tool.get('type')!r}", field=where)
        return tool["function"]
    if "name" in tool:  # a bare function definition, as some clients send
        return tool
    raise InvalidInput(f"only function tools can be offered, got type {tool.get('type')!r}", field=f"{where}.type")


def _schema_line(fn: Any, where: str) -> str:
    if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise InvalidInput("a tool needs a function name", field=f"{where}.name")
    schema: dict[str, Any] = {"name": fn["name"]}  # fixed key order: the line does not depend on the client
    for key in ("description", "parameters"):
        if fn.get(key) is not None:
            schema[key] = fn[key]
    return json.dumps(schema, ensure_ascii=False, separators=TOOL_CALL_JSON_SEPARATORS)


# -- parsing ---------------------------------------------------------------------------------------------------

_BLOCK = re.compile(re.escape(TOOL_CALL_OPEN) + r"(.*?)" + re.escape(TOOL_CALL_CLOSE), re.DOTALL)


def parse_assistant(text: str, *, id_seed: str | None = None, template: ChatTemplate = CHATML) -> ParsedAssistant:
    """Split a completion into its text and its tool calls (the inverse of an assistant turn's body).

    Every ``<tool_call>…</tool_call>`` block whose body (surrounding whitespace tolerated) is a JSON object
    ``{"name": str, "arguments": object}`` — or a list of them — becomes a call; ``arguments`` come back as
    compact JSON text, as OpenAI returns them. A block that is not such JSON, or an unclosed one, stays in the
    text and is reported in ``errors``. ``content`` is the remaining text, stripped, or ``None`` when empty; a
    trailing ``<|im_end|>`` is ignored. Call ids are ``call_<24 hex>``: random, or derived from ``id_seed`` and
    the call's position when given (deterministic replays, tests).
    """
    if text.rstrip().endswith(template.turn_end):
        text = text.rstrip()[: -len(template.turn_end)]
    calls: list[tuple[str, dict[str, Any]]] = []
    errors: list[str] = []
    kept: list[str] = []
    pos = 0
    for n, match in enumerate(_BLOCK.finditer(text), start=1):
        kept.append(text[pos : match.start()])
        pos = match.end()
        found, error = _decode_block(match.group(1))
        if error:
            errors.append(f"tool call block {n} at character {match.start()}: {error}")
            kept.append(match.group(0))
        else:
            calls.extend(found)
    rest = text[pos:]
    if TOOL_CALL_OPEN in rest:
        errors.append(f"unclosed {TOOL_CALL_OPEN} at character {pos + rest.index(TOOL_CALL_OPEN)}")
    kept.append(rest)
    content = "".join(kept).strip()
    tool_calls: list[ToolCall] = [
        {
            "id": _call_id(id_seed, i),
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False, separators=(",", ":"))},
        }
        for i, (name, args) in enumerate(calls)
    ]
    return {"content": content or None, "tool_calls": tool_calls, "errors": errors}


def _decode_block(body: str) -> tuple[list[tuple[str, dict[str, Any]]], str | None]:
    try:
        value = json.loads(body)
    except ValueError as exc:
        return [], f"not valid JSON ({exc})"
    items = value if isinstance(value, list) else [value]
    calls = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            return [], 'expected {"name": …, "arguments": {…}}'
        args = item.get("arguments", {})
        if isinstance(args, str):  # tolerate arguments given as JSON text
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError:
                return [], "arguments are a string that is not JSON"
        if not isinstance(args, dict):
            return [], "arguments must be a JSON object"
        calls.append((item["name"], args))
    return calls, None


def _call_id(seed: str | None, index: int) -> str:
    if seed is None:
        return f"call_{uuid.uuid4().hex[:24]}"
    return f"call_{hashlib.sha256(f'{seed}:{index}'.encode()).hexdigest()[:24]}"


# -- tokens ----------------------------------------------------------------------------------------------------


class OffsetTokenizer(Protocol):
    """What :func:`encode_segments` needs (``tracetune.models.tokenizer.ModelTokenizer`` is one)."""

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]: ...


def encode_segments(segments: Sequence[Segment], tokenizer: OffsetTokenizer) -> tuple[list[int], list[bool]]:
    """Token ids of the whole prompt and, per token, whether it is trainable (the loss mask for training).

    The prompt is tokenized as one string — exactly the ids serving feeds the model — and each token is
    attributed to the segment holding its first character (character offsets from the tokenizer), so there is
    no drift at segment boundaries. A token spanning a boundary (rare: whitespace runs) goes to the segment it
    starts in.
    """
    ids, mask, _ = _encode(segments, tokenizer)
    return ids, mask


def encode_decisions(
    segments: Sequence[Segment], tokenizer: OffsetTokenizer, *, source: str = ""
) -> tuple[list[int], list[bool], list[bool]]:
    """:func:`encode_segments` plus, per token, whether it overlaps a trained call's argument value that is not
    copied from ``source`` (see :func:`argument_value_spans`): the few tokens that carry a tool call's decision."""
    ids, mask, offsets = _encode(segments, tokenizer)
    spans: list[tuple[int, int]] = []
    pos = 0
    for seg in segments:
        if seg.trainable:
            spans.extend((pos + a, pos + b) for a, b in argument_value_spans(seg.text, source=source))
        pos += len(seg.text)
    starts = [a for a, _ in spans]
    decision = []
    for (start, end), trained in zip(offsets, mask, strict=True):  # a token overlapping a value (' "', '1', '",')
        i = bisect.bisect_right(starts, max(start, end - 1)) - 1
        decision.append(trained and i >= 0 and spans[i][1] > start)
    return ids, mask, decision


def argument_value_spans(text: str, *, source: str = "") -> list[tuple[int, int]]:
    """Character spans, in ``text``, of the argument values of every call block rendered there (each value's JSON
    text, quotes included). Blocks not in the canonical rendering of :func:`tool_call_to_block` are skipped, and so
    are values copied from ``source`` (:func:`copied_from`): a number or a string the user wrote is a copy, not a
    decision."""
    spans: list[tuple[int, int]] = []
    for block in _BLOCK.finditer(text):
        body = block.group(1)
        try:
            call = json.loads(body)
        except ValueError:
            continue
        if not isinstance(call, dict) or list(call) != ["name", "arguments"] or not isinstance(call["arguments"], dict):
            continue
        if _dumps(call) != body:
            continue
        pos = block.start(1) + len(f'{{"name": {_dumps(call["name"])}, "arguments": {{')
        for i, (key, value) in enumerate(call["arguments"].items()):
            pos += (2 if i else 0) + len(_dumps(key)) + 2  # ", " between pairs, then '"key": '
            value_text = _dumps(value)
            if not copied_from(value, source):
                spans.append((pos, pos + len(value_text)))
            pos += len(value_text)
    return spans


def copied_from(value: Any, source: str) -> bool:
    """Whether an argument value is written in ``source`` (case-insensitively; a value that starts or ends with a
    letter or digit only as a whole word or number): ``12`` in "What's 12 + 5?", ``"+"`` there too, but not ``2`` in
    "a team of 25". Only strings and numbers are looked for; ``true``, ``null``, lists and objects never count as
    copied."""
    if isinstance(value, bool) or not isinstance(value, str | int | float) or not source:
        return False
    text = value if isinstance(value, str) else _dumps(value)
    if not text.strip():
        return False
    head = r"(?<!\w)" if re.match(r"\w", text[0]) else ""
    tail = r"(?!\w)" if re.match(r"\w", text[-1]) else ""
    return re.search(head + re.escape(text) + tail, source, re.IGNORECASE) is not None


_BLOCK = re.compile(re.escape(TOOL_CALL_OPEN) + r"(.*?)" + re.escape(TOOL_CALL_CLOSE), re.S)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=TOOL_CALL_JSON_SEPARATORS)


def _encode(segments: Sequence[Segment], tokenizer: OffsetTokenizer) -> tuple[list[int], list[bool], list[Any]]:
    starts: list[int] = []
    flags: list[bool] = []
    pos = 0
    for seg in segments:
        starts.append(pos)
        flags.append(seg.trainable)
        pos += len(seg.text)
    ids, offsets = tokenizer.encode_with_offsets("".join(s.text for s in segments))
    mask = [flags[bisect.bisect_right(starts, start) - 1] if starts else False for start, _ in offsets]
    return ids, mask, list(offsets)


def count_tokens(segments: Sequence[Segment], tokenizer: OffsetTokenizer) -> tuple[int, int]:
    """``(total, trainable)`` token counts of a rendered prompt (see :func:`encode_segments`)."""
    ids, mask = encode_segments(segments, tokenizer)
    return len(ids), sum(mask)
