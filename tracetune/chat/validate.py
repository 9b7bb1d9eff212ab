"""Validate OpenAI chat fine-tuning JSONL and report every problem at once, with line numbers and field paths.

Input: lines (``bytes`` or ``str``, one JSON record each, 1-based line numbers) of the ``"openai"`` record format
(``records.py``): ``{"messages": [...], "tools"?: [...], "functions"?: [...], "parallel_tool_calls"?: bool}``.
Output: ``Report`` with every ``Problem(line, field, message, code, level)``; ``field`` is a JSON-pointer-ish path
such as ``messages[2].tool_calls[0].function.arguments`` (``""`` = the whole line).

Problem codes (all ``level="error"`` unless marked *warning*):

* line: ``blank_line`` (blank lines at the very end are ignored), ``invalid_json``, ``not_object``,
  ``unknown_key`` (a top-level key other than messages/tools/functions/parallel_tool_calls);
* messages: ``missing_messages``, ``invalid_messages`` (not a list), ``empty_messages``, ``invalid_message``
  (not an object), ``missing_role``, ``invalid_role``, ``missing_content``, ``invalid_content`` (not text/parts;
  ``null`` only for an assistant with calls), ``invalid_content_part``, ``empty_assistant_message`` (no content
  and no call: what LangChain's exporter leaves of a tool-calling turn), ``no_assistant_message`` (none with
  content or a call), ``invalid_weight`` (not 0/1, or not on an assistant message), ``misplaced_tool_calls``
  (calls on a non-assistant message), ``missing_name`` (function message);
* calls: ``invalid_tool_calls`` (not a non-empty list of objects / no function object), ``missing_tool_call_id``
  (on a call or a tool message), ``duplicate_tool_call_id``, ``invalid_tool_call_type``,
  ``invalid_function_name`` (not ``^[a-zA-Z0-9_-]{1,64}$``), ``invalid_arguments`` (not a string, or JSON that
  is not an object), ``arguments_not_json``, ``orphan_tool_call_id`` (a tool message answering no call of a
  preceding assistant message), *warning* ``unanswered_tool_call`` (a call with no tool message before the next
  assistant turn; calls of the final turn are the training target and need none), *warning* ``undeclared_tool``
  (a call to a function the record's tools/functions do not offer);
* definitions: ``invalid_tools`` (tools/functions not a non-empty list of objects, or a tool without a function
  object), ``invalid_tool_type``, ``invalid_function_name``, ``invalid_parameters`` (not a JSON-schema object
  with ``type: "object"``, ``properties`` an object, ``required`` a list of strings), ``duplicate_tool_name``,
  ``tools_and_functions`` (both given), ``invalid_parallel_tool_calls`` (not a boolean).

Hook for model-specific checks: ``validate_lines(lines, checks=[...])`` calls each ``check(record, line)`` on
every record that passed the structural checks above and adds what it returns (e.g. the target-model check that
renders each record with the base model's chat template).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

Level = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Problem:
    line: int
    field: str
    message: str
    code: str
    level: Level = "error"


RecordCheck = Callable[[dict[str, Any], int], list[Problem]]


class _Problems(list[Problem]):
    """The problems of one line; ``add`` fills in the line number."""

    __slots__ = ("line",)

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line

    def add(self, field: str, message: str, code: str, level: Level = "error") -> None:
        self.append(Problem(self.line, field, message, code, level))


TOP_LEVEL_KEYS = frozenset({"messages", "tools", "functions", "parallel_tool_calls"})
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_ROLES = frozenset(ROLES)
PART_TYPES = frozenset({"text", "image_url", "input_audio", "file", "refusal"})
_FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


@dataclass
class Report:
    problems: list[Problem]
    lines: int
    valid_lines: int
    by_code: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return sum(1 for p in self.problems if p.level == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for p in self.problems if p.level == "warning")

    @property
    def ok(self) -> bool:
        """No error-level problem (warnings allowed)."""
        return self.valid_lines == self.lines

    def format_text(self, max_problems: int | None = None) -> str:
        """One line per problem (``line N: field: message [code]``), then totals and counts by code."""
        out = []
        shown = self.problems if max_problems is None else self.problems[:max_problems]
        for p in shown:
            where = f"{p.field}: " if p.field else ""
            prefix = "warning: " if p.level == "warning" else ""
            out.append(f"line {p.line}: {prefix}{where}{p.message} [{p.code}]")
        if len(shown) < len(self.problems):
            out.append(f"… and {len(self.problems) - len(shown)} more")
        plural = "" if self.lines == 1 else "s"
        out.append(
            f"{self.lines} line{plural}, {self.valid_lines} valid; {self.errors} errors, {self.warnings} warnings"
        )
        out.extend(f"  {code}: {n}" for code, n in sorted(self.by_code.items()))
        return "\n".join(out)


def validate_lines(
    lines: Iterable[bytes | str],
    checks: Sequence[RecordCheck] = (),
    *,
    validator: Callable[[Any, int], list[Problem]] | None = None,
) -> Report:
    """Validate every line with ``validator`` (a parsed record and its line → its problems; default
    :func:`validate_record`, the chat format); ``checks`` run on structurally valid records only (see the module
    docstring)."""
    validator = validator or validate_record
    problems: list[Problem] = []
    blank: list[int] = []  # reported only if a non-blank line follows
    count = valid = 0
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            blank.append(number)
            continue
        if blank:
            problems.extend(Problem(n, "", "blank line", "blank_line") for n in blank)
            count += len(blank)
            blank = []
        count += 1
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            problems.append(Problem(number, "", f"not valid JSON: {exc}", "invalid_json"))
            continue
        found = validator(record, number)
        errors = any(p.level == "error" for p in found)
        if checks and not errors:
            for check in checks:
                found.extend(check(record, number))
            errors = any(p.level == "error" for p in found)
        if not errors:
            valid += 1
        problems.extend(found)
    return Report(problems, count, valid, dict(Counter(p.code for p in problems)))


def validate_record(record: Any, line: int) -> list[Problem]:
    """Every problem of one parsed record (any JSON value) at ``line``."""
    out = _Problems(line)
    if not isinstance(record, dict):
        out.add("", f"a record must be a JSON object, not {_kind(record)}", "not_object")
        return out
    for key in record:
        if key not in TOP_LEVEL_KEYS:
            out.add(key, f"unknown top-level key {key!r}", "unknown_key")
    declared: set[str] | None = None
    if "tools" in record:
        declared = _check_definitions(record["tools"], "tools", True, out)
    if "functions" in record:
        names = _check_definitions(record["functions"], "functions", False, out)
        declared = names if declared is None else declared | names
        if "tools" in record:
            out.add("functions", "give tools or (legacy) functions, not both", "tools_and_functions")
    if "parallel_tool_calls" in record and not isinstance(record["parallel_tool_calls"], bool):
        out.add("parallel_tool_calls", "must be true or false", "invalid_parallel_tool_calls")
    if "messages" not in record:
        out.add("messages", "missing", "missing_messages")
    else:
        _check_messages(record["messages"], declared, out)
    return out


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), "a number")


def _check_definitions(defs: Any, where: str, wrapped: bool, out: _Problems) -> set[str]:
    """``tools`` (``wrapped``: ``{"type": "function", "function": {...}}``) or legacy ``functions``; their names."""
    names: set[str] = set()
    if not isinstance(defs, list) or not defs:
        out.add(where, "must be a non-empty list", "invalid_tools")
        return names
    for k, item in enumerate(defs):
        f = f"{where}[{k}]"
        if not isinstance(item, dict):
            out.add(f, f"must be an object, not {_kind(item)}", "invalid_tools")
            continue
        if wrapped:
            if item.get("type") != "function":
                out.add(f"{f}.type", f"must be 'function', not {item.get('type')!r}", "invalid_tool_type")
            item = item.get("function")
            f = f"{f}.function"
            if not isinstance(item, dict):
                out.add(f, "missing function object", "invalid_tools")
                continue
        name = item.get("name")
        if not isinstance(name, str) or not _FUNCTION_NAME.fullmatch(name):
            out.add(f"{f}.name", f"{name!r} must match ^[a-zA-Z0-9_-]{{1,64}}$", "invalid_function_name")
        elif name in names:
            out.add(f"{f}.name", f"{name!r} is defined twice", "duplicate_tool_name")
        else:
            names.add(name)
        if "parameters" in item:
            _check_parameters(item["parameters"], f"{f}.parameters", out)
    return names


def _check_parameters(params: Any, f: str, out: _Problems) -> None:
    if not isinstance(params, dict):
        out.add(f, "must be a JSON-schema object", "invalid_parameters")
        return
    if params.get("type") != "object":
        out.add(f"{f}.type", f"must be 'object', not {params.get('type')!r}", "invalid_parameters")
    if "properties" in params and not isinstance(params["properties"], dict):
        out.add(f"{f}.properties", "must be an object", "invalid_parameters")
    required = params.get("required")
    if required is not None and not (isinstance(required, list) and all(isinstance(r, str) for r in required)):
        out.add(f"{f}.required", "must be a list of property names", "invalid_parameters")


def _check_messages(messages: Any, declared: set[str] | None, out: _Problems) -> None:
    if not isinstance(messages, list):
        out.add("messages", f"must be a list, not {_kind(messages)}", "invalid_messages")
        return
    if not messages:
        out.add("messages", "must not be empty", "empty_messages")
        return
    issued: set[str] = set()  # ids of every call made so far
    pending: dict[str, str] = {}  # id → field of the latest assistant turn's calls not yet answered
    has_target = False
    for i, m in enumerate(messages):
        f = f"messages[{i}]"
        if not isinstance(m, dict):
            out.add(f, f"must be an object, not {_kind(m)}", "invalid_message")
            continue
        role = m.get("role")
        if role is None:
            out.add(f"{f}.role", "missing", "missing_role")
            continue
        if not isinstance(role, str) or role not in _ROLES:
            out.add(f"{f}.role", f"{role!r} is not one of {', '.join(ROLES)}", "invalid_role")
            continue
        if role == "assistant":
            for unanswered, where in pending.items():
                message = f"call {unanswered!r} gets no tool message before the next assistant turn"
                out.add(where, message, "unanswered_tool_call", "warning")
            pending = {}
            has_target |= _check_assistant(m, f, declared, issued, pending, out)
            continue
        _check_content(m, role, f, out)
        for key in ("tool_calls", "function_call"):
            if key in m:
                out.add(f"{f}.{key}", f"only assistant messages make calls, not {role}", "misplaced_tool_calls")
        if "weight" in m:
            out.add(f"{f}.weight", "only assistant messages take a weight", "invalid_weight")
        if role == "tool":
            call_id = m.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                out.add(
                    f"{f}.tool_call_id", "a tool message needs the id of the call it answers", "missing_tool_call_id"
                )
            elif call_id not in issued:
                message = f"{call_id!r} matches no tool call of a preceding assistant message"
                out.add(f"{f}.tool_call_id", message, "orphan_tool_call_id")
            else:
                pending.pop(call_id, None)
        elif role == "function" and not (isinstance(m.get("name"), str) and m["name"]):
            out.add(f"{f}.name", "a function message needs the function's name", "missing_name")
    if not has_target:
        out.add("messages", "no assistant message with content or a tool call", "no_assistant_message")


def _check_content(m: dict[str, Any], role: str, f: str, out: _Problems) -> bool:
    """Checks ``content``; True when it holds something (non-empty text or parts)."""
    if "content" not in m:
        if role != "assistant":
            out.add(f"{f}.content", "missing", "missing_content")
        return False
    content = m["content"]
    if isinstance(content, str):
        return bool(content)
    if content is None:
        if role != "assistant":
            out.add(f"{f}.content", "null content is only for assistant calls", "invalid_content")
        return False
    if not isinstance(content, list):
        out.add(f"{f}.content", f"must be text or a list of parts, not {_kind(content)}", "invalid_content")
        return False
    for k, part in enumerate(content):
        pf = f"{f}.content[{k}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(kind, str) or kind not in PART_TYPES:
            out.add(pf, f"must be a content part with a known type, not {kind!r}", "invalid_content_part")
        elif kind == "text" and not isinstance(part.get("text"), str):
            out.add(f"{pf}.text", "a text part needs a string text", "invalid_content_part")
        elif kind == "image_url":
            image = part.get("image_url")
            if not (isinstance(image, dict) and isinstance(image.get("url"), str)):
                out.add(f"{pf}.image_url", "an image_url part needs image_url.url", "invalid_content_part")
    return bool(content)


def _check_assistant(
    m: dict[str, Any],
    f: str,
    declared: set[str] | None,
    issued: set[str],
    pending: dict[str, str],
    out: _Problems,
) -> bool:
    """Checks one assistant message; True when it is a training target (content or a call)."""
    calls = m.get("tool_calls")
    fc = m.get("function_call")
    has_calls = bool(calls) or fc is not None
    # null/absent content is right for a call
    has_content = False if has_calls and m.get("content") is None else _check_content(m, "assistant", f, out)
    if "weight" in m and (type(m["weight"]) is not int or m["weight"] not in (0, 1)):
        out.add(f"{f}.weight", f"must be 0 or 1, not {m['weight']!r}", "invalid_weight")
    if calls is not None:
        if not isinstance(calls, list) or not calls:
            out.add(f"{f}.tool_calls", "must be a non-empty list", "invalid_tool_calls")
        else:
            for j, call in enumerate(calls):
                _check_call(call, f"{f}.tool_calls[{j}]", declared, issued, pending, out)
    if fc is not None:
        if isinstance(fc, dict):
            _check_function(fc, f"{f}.function_call", declared, out)
        else:
            out.add(f"{f}.function_call", "must be an object", "invalid_tool_calls")
    if not has_content and not has_calls:
        message = "assistant message with no content and no tool call (a lost tool call?)"
        out.add(f, message, "empty_assistant_message")
    return has_content or has_calls


def _check_call(
    call: Any,
    f: str,
    declared: set[str] | None,
    issued: set[str],
    pending: dict[str, str],
    out: _Problems,
) -> None:
    if not isinstance(call, dict):
        out.add(f, f"must be an object, not {_kind(call)}", "invalid_tool_calls")
        return
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id:
        out.add(f"{f}.id", "a tool call needs an id", "missing_tool_call_id")
    elif call_id in issued:
        out.add(f"{f}.id", f"{call_id!r} is used by an earlier call", "duplicate_tool_call_id")
    else:
        issued.add(call_id)
        pending[call_id] = f
    if call.get("type") != "function":
        out.add(f"{f}.type", f"must be 'function', not {call.get('type')!r}", "invalid_tool_call_type")
    function = call.get("function")
    if isinstance(function, dict):
        _check_function(function, f"{f}.function", declared, out)
    else:
        out.add(f"{f}.function", "missing function object", "invalid_tool_calls")


def _check_function(fn: dict[str, Any], f: str, declared: set[str] | None, out: _Problems) -> None:
    name = fn.get("name")
    if not isinstance(name, str) or not _FUNCTION_NAME.fullmatch(name):
        out.add(f"{f}.name", f"{name!r} must match ^[a-zA-Z0-9_-]{{1,64}}$", "invalid_function_name")
    elif declared is not None and name not in declared:
        out.add(f"{f}.name", f"{name!r} is not among the offered tools", "undeclared_tool", "warning")
    arguments = fn.get("arguments")
    if not isinstance(arguments, str):
        out.add(f"{f}.arguments", f"must be a JSON text, not {_kind(arguments)}", "invalid_arguments")
        return
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        out.add(f"{f}.arguments", f"not valid JSON: {arguments[:60]!r}", "arguments_not_json")
        return
    if not isinstance(parsed, dict):
        out.add(f"{f}.arguments", f"must be a JSON object, not {_kind(parsed)}", "invalid_arguments")
