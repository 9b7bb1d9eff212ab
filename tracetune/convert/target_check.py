"""The target-model check: does an OpenAI-format record (``records.py``) train the base model it is meant for?

Each record is rendered with the one chat format (``tracetune.chat.format.render``: messages + tools/functions,
with the trainable spans marked) and checked for (all ``level="error"``):

* ``unrenderable`` — the chat format refuses it (e.g. an image part for a text model); ``field`` names the part;
* ``empty_trainable`` — no trainable text: no assistant turn that carries loss (all have ``weight: 0``, or
  their bodies are empty), so the example teaches nothing;
* ``over_context`` — the rendered prompt has more tokens than the model's context length (the count is in the
  message); training would truncate it;
* ``tool_call_roundtrip`` — an assistant turn's rendered text does not parse back (``parse_assistant``) into
  the same calls (names and parsed arguments, in order): what the model would learn to write is not what
  serving would read back. Also checked for a text-only answer containing a ``<tool_call>`` block.

Tokens are those of the model's own tokenizer on the whole rendered prompt, exactly (``token_count.TokenCounter``).
This module does no I/O: the tokenizer comes in loaded (``tracetune.models.load_tokenizer``).

``target_model_check(tokenizer, context_length)`` is a ``RecordCheck`` for ``validate.validate_lines(checks=…)``;
the exporter calls ``inspect_record`` directly to get the token count along with the problems.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from tracetune.chat.format import (
    CHATML,
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    ChatTemplate,
    Segment,
    content_text,
    parse_assistant,
    render,
    split_turns,
)
from tracetune.chat.validate import Problem, RecordCheck
from tracetune.convert.token_count import CountingTokenizer, TokenCounter
from tracetune.errors import InvalidInput

__all__ = ["RecordInspection", "TokenCounter", "inspect_record", "target_model_check"]


class RecordInspection(NamedTuple):
    problems: list[Problem]
    tokens: int | None  # the rendered prompt's token count (None when it could not be rendered)


def inspect_record(
    record: Mapping[str, Any],
    line: int,
    counter: TokenCounter,
    context_length: int,
    template: ChatTemplate = CHATML,
) -> RecordInspection:
    """The target-model problems of one structurally valid OpenAI record at ``line``, and its token count."""
    messages = record.get("messages") or []
    try:
        segments = render(messages, tools=record.get("tools"), functions=record.get("functions"), template=template)
    except InvalidInput as exc:
        message = f"the target model's chat format cannot render it: {exc.message}"
        return RecordInspection([Problem(line, exc.field or "messages", message, "unrenderable")], None)
    problems: list[Problem] = []
    if not _has_trainable_text(segments, template):
        message = "nothing to learn: no assistant turn carries loss (all have weight 0 or are empty)"
        problems.append(Problem(line, "messages", message, "empty_trainable"))
    text = "".join(s.text for s in segments)
    tokens = counter.count(text)
    if tokens > context_length:
        message = f"{tokens} tokens, over the target model's context length of {context_length}"
        problems.append(Problem(line, "messages", message, "over_context"))
    problems.extend(_roundtrip_problems(messages, text, line, template))
    return RecordInspection(problems, tokens)


def target_model_check(
    tokenizer: CountingTokenizer, context_length: int, template: ChatTemplate = CHATML
) -> RecordCheck:
    """A ``validate.RecordCheck`` running ``inspect_record`` with ``tokenizer`` and ``context_length``."""
    counter = TokenCounter(tokenizer, template)

    def check(record: dict[str, Any], line: int) -> list[Problem]:
        return inspect_record(record, line, counter, context_length, template).problems

    return check


def _has_trainable_text(segments: list[Segment], template: ChatTemplate) -> bool:
    return any(s.trainable and s.text.replace(template.turn_end, "").strip() for s in segments)


def _expected_calls(message: Mapping[str, Any]) -> list[tuple[Any, Any]]:
    functions = [tc.get("function") or {} for tc in message.get("tool_calls") or ()]
    if message.get("function_call") is not None:
        functions.append(message["function_call"])
    return [(f.get("name"), _arguments(f.get("arguments"))) for f in functions]


def _arguments(arguments: Any) -> Any:
    if isinstance(arguments, str):
        return json.loads(arguments) if arguments.strip() else {}
    return {} if arguments is None else arguments


def _roundtrip_problems(messages: list[Any], text: str, line: int, template: ChatTemplate) -> list[Problem]:
    """Assistant turns with calls (or a call block in their text) whose rendered body parses back differently."""
    assistants = [(i, m) for i, m in enumerate(messages) if m.get("role") == "assistant"]
    wanted = [
        (k, i, m)
        for k, (i, m) in enumerate(assistants)
        if m.get("tool_calls") or m.get("function_call") is not None or TOOL_CALL_OPEN in content_text(m.get("content"))
    ]
    if not wanted or all(_plain(m, template) for _, _, m in wanted):
        return []
    bodies = [body for role, body in split_turns(text, template=template) if role == "assistant"]
    if len(bodies) != len(assistants):
        message = "the rendered prompt does not split back into its turns (turn markers inside the text?)"
        return [Problem(line, "messages", message, "tool_call_roundtrip")]
    problems = []
    for k, i, m in wanted:
        key = (
            "function_call"
            if m.get("function_call") is not None
            else "tool_calls"
            if m.get("tool_calls")
            else "content"
        )
        field = f"messages[{i}].{key}"
        parsed = parse_assistant(bodies[k], id_seed="roundtrip", template=template)
        got = [(tc["function"]["name"], json.loads(tc["function"]["arguments"])) for tc in parsed["tool_calls"]]
        try:
            expected = _expected_calls(m)
        except ValueError:  # arguments that are not JSON: render would have refused them already
            expected = None
        if parsed["errors"] or got != expected:
            detail = "; ".join(parsed["errors"]) or f"parsed {_names(got)}, expected {_names(expected or [])}"
            message = f"the rendered calls do not parse back into the same calls: {detail}"
            problems.append(Problem(line, field, message, "tool_call_roundtrip"))
    return problems


def _plain(message: Mapping[str, Any], template: ChatTemplate) -> bool:
    """Whether the message's calls certainly round-trip, without rendering and parsing: no call-block tag or turn
    marker in its text, names or argument texts, and no escape in the argument texts (so what the texts hold
    is what their decoded strings hold, and the rendered blocks parse back to exactly the decoded arguments)."""
    markers = (TOOL_CALL_OPEN, TOOL_CALL_CLOSE, template.turn_start, template.turn_end)
    texts = [content_text(message.get("content"))]
    functions = [tc.get("function") or {} for tc in message.get("tool_calls") or ()]
    if message.get("function_call") is not None:
        functions.append(message["function_call"])
    for function in functions:
        name, arguments = function.get("name"), function.get("arguments")
        if not isinstance(name, str) or not isinstance(arguments, str) or "\\" in arguments:
            return False
        texts += (name, arguments)
    return not any(marker in text for text in texts for marker in markers)


def _names(calls: list[tuple[Any, Any]]) -> str:
    return "[" + ", ".join(f"{name}({json.dumps(args, sort_keys=True)[:80]})" for name, args in calls) + "]"
