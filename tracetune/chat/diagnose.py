"""Diagnostics a user can act on: what the data and a model's answers say about whether it learned the decision.

Pure functions over OpenAI chat fine-tuning records and reply messages, shared by training (a job's result),
``tracetune eval``, ``tracetune export`` and the UI. Each finding says what was seen and what to do:

* ``collapsed_outputs``: most answers are the same call or text while the expected answers vary ("8/8 validation
  calls are the same call"; answers without a call are left out when every expected answer is one) — the model
  learned the format, not the decision;
* ``rare_values``: an argument with a few possible values (an enum, a bool, a small set of numbers) has values with
  fewer than :data:`MIN_PER_VALUE` training examples;
* ``unseen_values``: validation expects argument values no training example shows;
* ``leakage``: validation prompts that also appear in the training data (the validation score overstates how well
  the model does on new inputs);
* ``copied_input``: text answers that repeat the user's message instead of answering it;
* ``undeclared_tools``: records whose answers call tools while the record offers none (no ``tools`` /
  ``functions``): the model learns the calls without the schemas in its prompt, and an app that offers them at
  serving time shows it a prompt it never saw (LangChain's ``convert_messages_for_finetuning`` drops them).

:func:`value_distribution` is the per-tool argument table (``{"route_ticket.team": {"billing": 12, ...}}``) the
export and the dataset builder show before training.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tracetune.chat.format import content_text
from tracetune.chat.scoring import calls_of, split_record

MIN_PER_VALUE = 5  # training examples per distinct answer value below which a value is rarely learned
MAX_CATEGORIES = 12  # an argument with more distinct values than this is free-form, not a choice
COLLAPSE_SHARE = 0.8  # this share of answers being one answer (while the expected ones vary) is a collapse
MIN_ANSWERS = 3
MORE_DATA = "tracetune export"  # the command that makes training data from traces
BIGGER_MODEL = "tracetune models add"
FREE = "\0free"


@dataclass(frozen=True)
class Finding:
    code: str
    message: str  # what was seen, with the figures
    advice: str  # what to do about it
    level: str = "warning"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def answer_key(message: Mapping[str, Any]) -> str:
    """One comparable string per answer: its calls (names and arguments, keys sorted) or its normalised text."""
    calls = calls_of(message)
    if calls:
        return "; ".join(f"{name}({_compact(args)})" for name, args in calls)
    content = message.get("content")
    return " ".join((content_text(content) if content is not None else "").split())


def collapsed_outputs(
    expected: Sequence[Mapping[str, Any]], replies: Sequence[Mapping[str, Any]], *, where: str = "validation"
) -> Finding | None:
    """A finding when at least :data:`COLLAPSE_SHARE` of ``replies`` are one answer while ``expected`` holds
    several (a constant answer on a task whose answer varies). When every expected answer is a call, the replies
    that make no call (a format slip, not a decision) are left out of the share: 6 calls, all the same, and 2
    answers in prose is a collapse."""
    calls_expected = bool(expected) and all(calls_of(e) for e in expected)
    decided = [r for r in replies if calls_of(r)] if calls_expected else list(replies)
    if len(decided) < MIN_ANSWERS:
        return None
    answers = collections.Counter(answer_key(r) for r in decided)
    top, count = answers.most_common(1)[0]
    wanted = collections.Counter(answer_key(e) for e in expected)
    if len(wanted) < 2 or count / len(decided) < COLLAPSE_SHARE or count <= wanted.most_common(1)[0][1]:
        return None
    kind = "call" if calls_of(decided[0]) or "(" in top else "answer"
    others = len(replies) - len(decided)
    besides = f" ({others} more answered without a call)" if others else ""
    return Finding(
        "collapsed_outputs",
        f"{count}/{len(decided)} {where} {'calls' if calls_expected else 'answers'} are the same {kind}"
        f"{besides}: {_short(top) or '(an empty reply)'}; the expected answers have {len(wanted)} distinct values",
        "The model gives (nearly) one answer whatever the input: it learned the format, not the decision. Add "
        "examples of the other answers (see the value balance of the training data), train more epochs, have a "
        f"teacher label more traces, or try a bigger base model ({BIGGER_MODEL}).",
    )


_JSON_TEXTS: dict[tuple[type, Any], str] = {}


def _json_text(value: str | bool | int) -> str:
    """``json.dumps(value)``, remembered: the values of a categorical argument repeat across a dataset's records
    (the dumps were 6% of an export's time). Bounded: only short values, at most 100,000 of them."""
    key = (type(value), value)  # True and 1 are equal keys otherwise
    text = _JSON_TEXTS.get(key)
    if text is None:
        text = json.dumps(value)
        if len(text) <= 64 and len(_JSON_TEXTS) < 100_000:
            _JSON_TEXTS[key] = text
    return text


class ArgumentValues:
    """How often each value of each ``tool.argument`` is given by the assistant calls of the records added so far
    (counted incrementally, so an export of any size keeps one small table); a value that is not a string, boolean
    or integer counts as free-form."""

    def __init__(self) -> None:
        self.counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)

    @classmethod
    def of(cls, records: Iterable[Mapping[str, Any]]) -> ArgumentValues:
        values = cls()
        for record in records:
            values.add(record)
        return values

    def add(self, record: Mapping[str, Any]) -> None:
        for message in record.get("messages") or []:
            if not isinstance(message, Mapping) or message.get("role") != "assistant":
                continue
            for name, args in calls_of(message):
                if not isinstance(args, dict):
                    continue
                for key, value in args.items():
                    scalar = isinstance(value, str | bool | int) and not isinstance(value, float)
                    self.counts[f"{name}.{key}"][_json_text(value) if scalar else FREE] += 1

    def table(self) -> dict[str, dict[str, int]]:
        """Every argument whose values are a small set of scalars (at most :data:`MAX_CATEGORIES` distinct values,
        each seen more than once on average) → its values (as JSON text) and their counts, most common first."""
        table: dict[str, dict[str, int]] = {}
        for argument, counts in sorted(self.counts.items()):
            total = sum(counts.values())
            if FREE in counts or len(counts) > MAX_CATEGORIES or len(counts) * 2 > total:
                continue
            table[argument] = dict(counts.most_common())
        return table


def value_distribution(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """The per-tool argument table of ``records`` (:meth:`ArgumentValues.table`)."""
    return ArgumentValues.of(records).table()


def value_balance(
    train: ArgumentValues, valid: ArgumentValues | None = None, *, min_per_value: int = MIN_PER_VALUE
) -> list[Finding]:
    """``rare_values`` per argument with values under ``min_per_value`` training examples; ``unseen_values`` per
    argument whose validation values the training data never shows."""
    findings: list[Finding] = []
    checked = valid.counts if valid is not None else {}
    for argument, counts in train.table().items():
        rare = [v for v, n in counts.items() if n < min_per_value]
        if rare:
            findings.append(
                Finding(
                    "rare_values",
                    f"{argument}: {_list(rare)} {'has' if len(rare) == 1 else 'have'} fewer than {min_per_value} "
                    f"training examples ({_counts(counts)})",
                    f"A value seen a few times is rarely learned: add traces whose answer is {_list(rare)} (rate "
                    f"more of them, or have a teacher label more), then rerun {MORE_DATA}.",
                )
            )
        unseen = [v for v in checked.get(argument, {}) if v not in counts]
        if unseen:
            findings.append(
                Finding(
                    "unseen_values",
                    f"{argument}: validation expects {_list(unseen)}, which no training example shows",
                    "The model cannot learn an answer it never sees: add training examples with it.",
                )
            )
    return findings


def leakage(train: Sequence[Mapping[str, Any]], valid: Sequence[Mapping[str, Any]]) -> Finding | None:
    """A finding when validation prompts (the messages before the last answer, and the tools) also appear in
    the training data."""
    seen = {_prompt_key(r) for r in train}
    shared = sum(1 for r in valid if _prompt_key(r) in seen)
    if not shared:
        return None
    return Finding(
        "leakage",
        f"{shared}/{len(valid)} validation prompts also appear in the training data",
        "The validation score overstates how the model does on new inputs: split by trace or session and drop "
        f"duplicates ({MORE_DATA} does both).",
    )


def copied_input(
    prompts: Sequence[Sequence[Mapping[str, Any]]], replies: Sequence[Mapping[str, Any]]
) -> Finding | None:
    """A finding when at least half the text answers repeat (contain, or are contained in) the last user message."""
    copies = total = 0
    for prompt, reply in zip(prompts, replies, strict=True):
        if calls_of(reply):
            continue
        said = answer_key(reply).casefold()
        asked = next((_text(m) for m in reversed(prompt) if m.get("role") == "user"), "").casefold()
        if not said or not asked:
            continue
        total += 1
        copies += len(said) >= 10 and (said in asked or asked in said)
    if total < MIN_ANSWERS or copies * 2 < total:
        return None
    return Finding(
        "copied_input",
        f"{copies}/{total} text answers repeat the user's message",
        "The model echoes its input: train more epochs or on more examples, or check that the training answers "
        "are not themselves copies of the questions.",
    )


def diagnose_replies(
    records: Sequence[Mapping[str, Any]], replies: Sequence[Mapping[str, Any]], *, where: str = "validation"
) -> list[Finding]:
    """What the replies to ``records`` (held-out records, each cut before its last assistant turn) show."""
    cut = [split_record(r) for r in records]
    found = [
        collapsed_outputs([expected for _, expected in cut], replies, where=where),
        copied_input([prompt for prompt, _ in cut], replies),
    ]
    return [f for f in found if f is not None]


def undeclared_calls(record: Mapping[str, Any]) -> list[str]:
    """The names of the tools a record calls (sorted, once each) when it declares no ``tools`` / ``functions``;
    empty when it declares some, or calls none."""
    if record.get("tools") or record.get("functions"):
        return []
    messages = record.get("messages")
    if not isinstance(messages, list):
        return []
    return sorted(
        {name for m in messages if isinstance(m, Mapping) and m.get("role") == "assistant" for name, _ in calls_of(m)}
    )


def undeclared_tools(records: Sequence[Mapping[str, Any]]) -> Finding | None:
    """A finding when records answer with tool calls but declare no ``tools`` / ``functions``."""
    names: collections.Counter[str] = collections.Counter()
    bare = 0
    for record in records:
        called = undeclared_calls(record)
        bare += bool(called)
        names.update(called)
    if not bare:
        return None
    return Finding(
        "undeclared_tools",
        f"{bare}/{len(records)} training records call tools ({_list(list(names))}) but declare none: the model "
        "learns the calls without their schemas in its prompt, and an app that offers the tools when it is "
        "served shows it a prompt it was never trained on",
        "Keep the tool definitions in every record (tracetune export keeps each run's tools and functions; "
        "LangChain's convert_messages_for_finetuning drops them), or serve the model without offering the tools.",
    )


def diagnose_data(train: Sequence[Mapping[str, Any]], valid: Sequence[Mapping[str, Any]] = ()) -> list[Finding]:
    """What the training (and validation) data show before any training."""
    found = value_balance(ArgumentValues.of(train), ArgumentValues.of(valid))
    extra = [undeclared_tools(train), leakage(train, valid) if valid else None]
    return found + [f for f in extra if f is not None]


def _prompt_key(record: Mapping[str, Any]) -> str:
    try:
        prompt, _ = split_record(record)
    except Exception:  # not a held-out-shaped record: it cannot leak a prompt
        return json.dumps(record, sort_keys=True, default=str)
    tools = record.get("tools") or record.get("functions") or []
    return json.dumps([[(m.get("role"), _text(m)) for m in prompt], tools], sort_keys=True, default=str)


def _text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    return " ".join((content_text(content) if content is not None else "").split())


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(", ", ": ")) if isinstance(value, dict) else str(value)


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _list(values: Sequence[str]) -> str:
    return ", ".join(values)


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{value}: {n}" for value, n in counts.items())
