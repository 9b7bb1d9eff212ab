"""Preference (DPO) fine-tuning records, as OpenAI specifies them, validated and split into two chat records.

A line of a DPO file::

    {"input": {"messages": [...], "tools"?: [...], "functions"?: [...], "parallel_tool_calls"?: bool},
     "preferred_output": [{"role": "assistant", ...}], "non_preferred_output": [{"role": "assistant", ...}]}

Each output is a list of assistant messages (OpenAI's files hold exactly one; more are accepted) answering the
input's conversation. Validation composes the two chat records the pair stands for — the input's messages followed
by each output — and checks both with :func:`tracetune.chat.validate.validate_record`, so a DPO line is held to the
rules of a chat line (tool calls, arguments, declared tools…); a problem's field is named as the DPO line names it
(``input.messages[2].content``, ``preferred_output[0].tool_calls[0].function.arguments``). On top of those:

* ``unknown_key`` (a top-level key other than the three), ``missing_input`` / ``invalid_input``,
  ``missing_output`` (``preferred_output`` or ``non_preferred_output`` absent), ``invalid_output`` (not a
  non-empty list of assistant messages), ``identical_outputs`` (the two outputs are the same: the pair teaches
  nothing).

:func:`preference_records` gives the two records to train on: the input's own assistant messages get ``weight: 0``,
so that the loss (and the log-probabilities DPO compares) cover the outputs only. :func:`preference_line` goes the
other way: two chat records answering the same conversation (a run and its correction, in an export) → a DPO line.
"""

from __future__ import annotations

import re
from typing import Any

from tracetune.chat.validate import Problem, validate_record

KEYS = ("input", "preferred_output", "non_preferred_output")
OUTPUTS = ("preferred_output", "non_preferred_output")
_MESSAGE_INDEX = re.compile(r"^messages\[(\d+)\]")


def validate_preference_record(record: Any, line: int) -> list[Problem]:
    """Every problem of one parsed DPO line (any JSON value) at ``line``."""
    if not isinstance(record, dict):
        return [Problem(line, "", "a DPO record must be a JSON object", "not_object")]
    out = [
        Problem(line, key, f"unknown top-level key {key!r}; a DPO line has {', '.join(KEYS)}", "unknown_key")
        for key in record
        if key not in KEYS
    ]
    source = record.get("input")
    if "input" not in record:
        out.append(Problem(line, "input", "missing: the conversation both outputs answer", "missing_input"))
    elif not isinstance(source, dict):
        out.append(Problem(line, "input", "must be an object with messages (and tools)", "invalid_input"))
        source = None
    outputs: dict[str, list[Any]] = {}
    for name in OUTPUTS:
        value = record.get(name)
        if name not in record:
            out.append(Problem(line, name, "missing: a list holding the assistant's answer", "missing_output"))
        elif not isinstance(value, list) or not value:
            out.append(Problem(line, name, "must be a non-empty list of assistant messages", "invalid_output"))
        else:
            roles = [m.get("role") if isinstance(m, dict) else None for m in value]
            wrong = next((i for i, role in enumerate(roles) if role != "assistant"), None)
            if wrong is not None:
                out.append(
                    Problem(
                        line, f"{name}[{wrong}]", f"must be an assistant message, not role {roles[wrong]!r}",
                        "invalid_output",
                    )
                )  # fmt: skip
            else:
                outputs[name] = value
    if source is None:
        return out
    prompt = source.get("messages")
    n_prompt = len(prompt) if isinstance(prompt, list) else 0
    seen: set[tuple[str, str, str]] = set()  # a problem of the input is found twice (once per composed record)
    for name in OUTPUTS:
        composed = dict(source)
        if name in outputs and isinstance(prompt, list):
            composed["messages"] = [*prompt, *outputs[name]]
        elif name not in outputs and name != OUTPUTS[0]:
            continue  # the input was already checked with the other output (or alone, below)
        for problem in validate_record(composed, line):
            if problem.code == "no_assistant_message" and name not in outputs:
                continue  # the missing output is already reported
            where = _field(problem.field, name, n_prompt)
            key = (where, problem.code, problem.message)
            if key not in seen:
                seen.add(key)
                out.append(Problem(line, where, problem.message, problem.code, problem.level))
    if len(outputs) == 2 and outputs["preferred_output"] == outputs["non_preferred_output"]:
        out.append(
            Problem(
                line, "non_preferred_output", "is identical to preferred_output: the pair teaches nothing",
                "identical_outputs",
            )
        )  # fmt: skip
    return out


def preference_records(record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The chat records ``(preferred, non_preferred)`` of a valid DPO line: the input's messages (its assistant
    messages at ``weight: 0``) followed by each output."""
    source = record["input"]
    prompt = [{**m, "weight": 0} if m.get("role") == "assistant" else m for m in source["messages"]]
    return tuple(  # type: ignore[return-value]
        {**source, "messages": [*prompt, *record[name]]} for name in OUTPUTS
    )


def _field(path: str, output: str, n_prompt: int) -> str:
    """A composed record's field path as the DPO line names it."""
    match = _MESSAGE_INDEX.match(path)
    if match and int(match.group(1)) >= n_prompt:
        return f"{output}[{int(match.group(1)) - n_prompt}]{path[match.end() :]}"
    return f"input.{path}" if path else "input"


def preference_line(preferred: dict[str, Any], non_preferred: dict[str, Any]) -> dict[str, Any]:
    """The DPO line of two chat records that answer the same conversation (a run and its correction): the
    preferred record's messages up to its last assistant turn (and its tools) are the input, each record's last
    assistant message an output. The inverse of :func:`preference_records`."""
    *prompt, chosen = preferred["messages"]
    source = {k: v for k, v in preferred.items() if k != "messages"}
    return {
        "input": {"messages": prompt, **source},
        "preferred_output": [chosen],
        "non_preferred_output": [non_preferred["messages"][-1]],
    }
