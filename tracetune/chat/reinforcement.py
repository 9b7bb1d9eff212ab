"""Reinforcement fine-tuning (RFT) records, as OpenAI specifies them: a prompt the model answers, and the item a
grader reads.

A line of an RFT file::

    {"messages": [... the conversation so far, not the answer ...], "tools"?: [...], "parallel_tool_calls"?: bool,
     "<any other key>": ...}

The model writes the assistant turn, so the messages must not end with one. The messages and tools are held to the
chat rules (:func:`tracetune.chat.validate.validate_record`, on the prompt followed by a placeholder answer: its
problems are not reported); every other key is part of the item the grader sees (``{{item.<key>}}``), any JSON.
The whole line is the item, as OpenAI passes it.
"""

from __future__ import annotations

from typing import Any

from tracetune.chat.validate import Problem, validate_record

CHAT_KEYS = ("messages", "tools", "functions", "parallel_tool_calls")
_PLACEHOLDER = {"role": "assistant", "content": "(the model's answer)"}


def validate_reinforcement_record(record: Any, line: int) -> list[Problem]:
    """Every problem of one parsed RFT line (any JSON value) at ``line``."""
    if not isinstance(record, dict):
        return [Problem(line, "", "an RFT record must be a JSON object", "not_object")]
    prompt = {key: record[key] for key in CHAT_KEYS if key in record}
    messages = record.get("messages")
    out: list[Problem] = []
    if isinstance(messages, list) and messages:
        last = messages[-1]
        if isinstance(last, dict) and last.get("role") == "assistant":
            out.append(
                Problem(
                    line, f"messages[{len(messages) - 1}]",
                    "an RFT prompt must end before the answer: the model writes the assistant turn",
                    "prompt_ends_with_answer",
                )
            )  # fmt: skip
            messages = messages[:-1]
        prompt["messages"] = [*messages, _PLACEHOLDER]
    placeholder = f"messages[{len(messages)}]" if isinstance(messages, list) else None
    for problem in validate_record(prompt, line):
        if placeholder is None or not problem.field.startswith(placeholder):
            out.append(problem)
    return out


def reinforcement_prompt(record: dict[str, Any]) -> dict[str, Any]:
    """The chat prompt of a valid RFT line: its messages and tools (the rest is the grader's item)."""
    return {key: record[key] for key in CHAT_KEYS if key in record}
