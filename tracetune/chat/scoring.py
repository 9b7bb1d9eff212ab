"""Scoring one model reply against the held-out answer: pure functions over OpenAI-format messages, shared by
training (validation metrics each epoch) and evaluation (``tracetune eval``).

A held-out record (OpenAI chat fine-tuning JSONL) is cut before its last assistant turn (:func:`split_record`);
that turn is the *expected* answer and the model's reply (an OpenAI chat ``message``: ``content``, ``tool_calls``
or legacy ``function_call``) is scored against it:

* expected calls → ``name_correct`` (the same function names, in order), ``args_exact`` (the same arguments too,
  numbers compared as numbers: ``12`` equals ``12.0``, ``"12"`` does not), ``valid_json`` (every call the model
  made, or tried to make — a ``<tool_call>`` block left in its text — has arguments that parse as a JSON object);
* expected text → ``text_exact`` (equal after trimming and collapsing whitespace) and ``text_fuzzy`` (a
  ``difflib`` ratio of at least :data:`FUZZY_THRESHOLD` on the normalised, case-folded texts).

``correct`` is ``args_exact`` for a call, ``text_exact`` for text. :func:`differences` says, in short phrases,
where a reply that is not exact differs (an evaluation page shows them beside the answer).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tracetune.chat.format import TOOL_CALL_OPEN, content_text
from tracetune.errors import InvalidInput

FUZZY_THRESHOLD = 0.8
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Score:
    expected_kind: str  # "call" | "text"
    correct: bool
    name_correct: bool | None = None
    args_exact: bool | None = None
    valid_json: bool | None = None  # None: the model made no call and tried none
    text_exact: bool | None = None
    text_fuzzy: bool | None = None
    latency_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Call = tuple[str, Any]  # (name, parsed arguments, or the raw text when it is not a JSON object)


def calls_of(message: Mapping[str, Any]) -> list[Call]:
    """The calls of an OpenAI assistant message (``tool_calls``, else ``function_call``), arguments parsed."""
    raw: list[Mapping[str, Any]] = []
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        raw.append(fn)
    if not raw and message.get("function_call"):
        raw.append(message["function_call"])
    return [(str(fn.get("name", "")), _arguments(fn.get("arguments"))) for fn in raw]


def split_record(record: Mapping[str, Any], line: int = 0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``(prompt messages, expected assistant message)``: the record cut before its last assistant message."""
    messages = record.get("messages")
    if not isinstance(messages, list):
        raise InvalidInput("a record needs a 'messages' list", field="messages", line=line)
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], dict) and messages[index].get("role") == "assistant":
            if index == 0:
                break
            return [dict(m) for m in messages[:index]], dict(messages[index])
    raise InvalidInput("a record needs an assistant message after at least one other", field="messages", line=line)


def score_reply(expected: Mapping[str, Any], reply: Mapping[str, Any], *, latency_s: float | None = None) -> Score:
    """Score ``reply`` (the model's message) against ``expected`` (the record's last assistant message)."""
    want = calls_of(expected)
    got = calls_of(reply)
    text = _text(reply)
    tried = got or TOOL_CALL_OPEN in text
    valid_json = None if not tried else (TOOL_CALL_OPEN not in text and all(isinstance(a, dict) for _, a in got))
    if want:
        names = [n for n, _ in got] == [n for n, _ in want]
        exact = names and all(same_value(a, b) for (_, a), (_, b) in zip(got, want, strict=True))
        return Score("call", exact, names, exact, valid_json, latency_s=latency_s)
    wanted, said = _normal(_text(expected)), _normal(text)
    exact = not got and said == wanted
    fuzzy = not got and difflib.SequenceMatcher(None, said.casefold(), wanted.casefold()).ratio() >= FUZZY_THRESHOLD
    return Score("text", exact, valid_json=valid_json, text_exact=exact, text_fuzzy=fuzzy, latency_s=latency_s)


def differences(expected: Mapping[str, Any], reply: Mapping[str, Any], *, limit: int = 6) -> list[str]:
    """How ``reply`` differs from ``expected``, in short phrases (at most ``limit``): each call's name and each
    argument that is not the expected one (``operation: "-", not "+"``), or the words of a text answer that
    differ. Empty when :func:`score_reply` finds it exact."""
    want, got = calls_of(expected), calls_of(reply)
    out: list[str] = []
    if want:
        if not got:
            out.append(
                f"no call; expected {', '.join(n for n, _ in want)}"
                + (f": {_clip(_text(reply))}" if _text(reply) else "")
            )
        for i, ((want_name, want_args), (got_name, got_args)) in enumerate(zip(want, got, strict=False)):
            where = f"call {i + 1}: " if len(want) > 1 else ""
            if got_name != want_name:
                out.append(f"{where}called {got_name}, not {want_name}")
            elif isinstance(want_args, dict) and isinstance(got_args, dict):
                for key in [*want_args, *(k for k in got_args if k not in want_args)]:
                    if key not in got_args:
                        out.append(f"{where}{key}: missing")
                    elif key not in want_args:
                        out.append(f"{where}{key}: not expected")
                    elif not same_value(got_args[key], want_args[key]):
                        out.append(
                            f"{where}{key}: {_clip(json.dumps(got_args[key]))}, not {_clip(json.dumps(want_args[key]))}"
                        )
            elif not same_value(got_args, want_args):
                out.append(f"{where}arguments {_clip(str(got_args))}, not {_clip(str(want_args))}")
        if len(got) != len(want) and got:
            out.append(f"{len(got)} calls, not {len(want)}")
        return out[:limit]
    if got:
        return [f"called {', '.join(n for n, _ in got)}; expected text"]
    said, wanted = _normal(_text(reply)).split(), _normal(_text(expected)).split()
    for op, a0, a1, b0, b1 in difflib.SequenceMatcher(None, said, wanted).get_opcodes():
        if op == "replace":
            out.append(f"{_clip(' '.join(said[a0:a1]))!r}, not {_clip(' '.join(wanted[b0:b1]))!r}")
        elif op == "delete":
            out.append(f"{_clip(' '.join(said[a0:a1]))!r} not expected")
        elif op == "insert":
            out.append(f"{_clip(' '.join(wanted[b0:b1]))!r} missing")
    return out[:limit]


def _clip(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def same_value(got: Any, want: Any) -> bool:
    """Equal as JSON values, numbers compared as numbers (``12 == 12.0``; booleans are not numbers)."""
    if _number(got) and _number(want):
        return float(got) == float(want)
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(same_value(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(same_value, got, want))
    return type(got) is type(want) and bool(got == want)


def summarize(scores: Sequence[Score]) -> dict[str, Any]:
    """Rates over ``scores``: each metric over the examples it applies to (``None`` when it applies to none)."""

    def rate(values: list[bool | None]) -> float | None:
        known = [v for v in values if v is not None]
        return round(sum(known) / len(known), 4) if known else None

    latencies = sorted(s.latency_s for s in scores if s.latency_s is not None)
    return {
        "examples": len(scores),
        "accuracy": rate([s.correct for s in scores]),
        "tool_name_accuracy": rate([s.name_correct for s in scores]),
        "tool_args_exact": rate([s.args_exact for s in scores]),
        "valid_json_rate": rate([s.valid_json for s in scores]),
        "text_exact": rate([s.text_exact for s in scores]),
        "text_fuzzy": rate([s.text_fuzzy for s in scores]),
        "latency_p50_s": round(latencies[len(latencies) // 2], 3) if latencies else None,
        "latency_mean_s": round(sum(latencies) / len(latencies), 3) if latencies else None,
    }


def _arguments(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else {}
        except ValueError:
            return value
    return value if value is not None else {}


def _text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    return content_text(content) if content is not None else ""


def _normal(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
