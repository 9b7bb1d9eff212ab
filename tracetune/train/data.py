"""Training data: OpenAI chat fine-tuning JSONL → token ids + loss labels, and length-grouped batches.

A record (``{"messages": [...], "tools"?: [...], "functions"?: [...]}``) is rendered by
:func:`tracetune.chat.format.render` — the same text serving feeds the model — and tokenized as one string by
:func:`tracetune.chat.format.encode_segments`. A token's label is its id when it is trainable (an assistant
turn's text, tool-call blocks and end marker, unless the message has ``weight: 0``) and :data:`IGNORE_INDEX`
otherwise, so the loss falls on assistant tokens only.

Batches group examples of similar length: each epoch the examples are shuffled (seeded by ``seed`` and the
epoch), cut into buckets of ``batch_size * BUCKET_BATCHES`` examples, sorted by length within a bucket and cut
into batches, and the batches are shuffled. A batch is padded only to its own longest example.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from tracetune.chat.format import (
    CHATML,
    ChatTemplate,
    OffsetTokenizer,
    content_text,
    encode_decisions,
    encode_segments,
    render,
)
from tracetune.chat.preference import preference_records, validate_preference_record
from tracetune.chat.reinforcement import validate_reinforcement_record
from tracetune.chat.validate import Problem, validate_lines, validate_record
from tracetune.errors import InvalidInput

if TYPE_CHECKING:
    import torch

IGNORE_INDEX = -100  # the label of a token that carries no loss (torch's cross_entropy default)
BUCKET_BATCHES = 50  # batches per length-sorting bucket: large enough to group well, small enough to stay random
MAX_PROBLEMS_SHOWN = 5


@dataclass(frozen=True)
class Example:
    """One tokenized record: ``labels[i]`` is ``input_ids[i]`` where the token is trained on, else -100;
    ``weights[i]`` the weight of that token's loss (None: every trained token weighs 1)."""

    line: int
    input_ids: list[int]
    labels: list[int]
    weights: list[float] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_trainable(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


# each method's file format: the validator of a line, and what the format is called in messages
RECORD_FORMATS: dict[str, tuple[Callable[[Any, int], list[Problem]], str]] = {
    "supervised": (validate_record, "chat fine-tuning"),
    "dpo": (validate_preference_record, "preference (DPO)"),
    "reinforcement": (validate_reinforcement_record, "reinforcement (RFT)"),
}


def read_records(
    path: Path, *, field: str = "training_file", method: str = "supervised"
) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` for every line of a fine-tuning JSONL file in ``method``'s format
    (:data:`RECORD_FORMATS`: chat records; DPO lines, :mod:`tracetune.chat.preference`; RFT lines,
    :mod:`tracetune.chat.reinforcement`), validated first.

    Raises :class:`InvalidInput` (with ``field`` and the first bad line) listing the first problems when any
    line is invalid; blank lines at the end are ignored.
    """
    validator, kind = RECORD_FORMATS[method]
    try:
        lines = Path(path).read_bytes().splitlines()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}", field=field) from None
    report = validate_lines(lines, validator=validator)
    errors = [p for p in report.problems if p.level == "error"]
    if errors:
        parts = [f"line {p.line}: {p.field + ': ' if p.field else ''}{p.message}" for p in errors[:MAX_PROBLEMS_SHOWN]]
        if len(errors) > MAX_PROBLEMS_SHOWN:
            parts.append(f"… {len(errors) - MAX_PROBLEMS_SHOWN} more")
        shown = "; ".join(parts)
        raise InvalidInput(f"{Path(path).name} is not valid {kind} data: {shown}", field=field, line=errors[0].line)
    return [(n, orjson.loads(raw)) for n, raw in enumerate(lines, 1) if raw.strip()]


def encode_record(
    record: dict[str, Any],
    tokenizer: OffsetTokenizer,
    *,
    template: ChatTemplate | str = CHATML,
    line: int = 0,
    decision_weight: float = 1.0,
) -> Example:
    """Render and tokenize one record; labels keep the trainable tokens only. With a ``decision_weight`` other than
    1, the tokens of the trained calls' argument values that are not copied from the record's user and tool
    messages (:func:`tracetune.chat.format.encode_decisions`) weigh that much in the loss, every other trained
    token 1."""
    segments = render(
        record["messages"], tools=record.get("tools"), functions=record.get("functions"), template=template
    )
    if decision_weight == 1.0:
        ids, mask = encode_segments(segments, tokenizer)
        return Example(line, ids, [t if m else IGNORE_INDEX for t, m in zip(ids, mask, strict=True)])
    ids, mask, decision = encode_decisions(segments, tokenizer, source=_copy_source(record["messages"]))
    labels = [t if m else IGNORE_INDEX for t, m in zip(ids, mask, strict=True)]
    return Example(line, ids, labels, [decision_weight if d else 1.0 for d in decision])


def _copy_source(messages: list[dict[str, Any]]) -> str:
    """What a call's argument values may be copied from: the text the user and the tools wrote (not the system
    prompt, which names the choices, e.g. every team a ticket may go to)."""
    return "\n".join(content_text(m.get("content")) for m in messages if m.get("role") in ("user", "tool", "function"))


def load_examples(
    path: Path,
    tokenizer: OffsetTokenizer,
    *,
    context_length: int,
    template: ChatTemplate | str = CHATML,
    field: str = "training_file",
    decision_weight: float = 1.0,
) -> list[Example]:
    """Every record of ``path`` (:func:`read_records`) tokenized (:func:`encode_examples`)."""
    return encode_examples(
        read_records(path, field=field), tokenizer, context_length=context_length, template=template, field=field,
        decision_weight=decision_weight, name=Path(path).name,
    )  # fmt: skip


def encode_examples(
    records: list[tuple[int, dict[str, Any]]],
    tokenizer: OffsetTokenizer,
    *,
    context_length: int,
    template: ChatTemplate | str = CHATML,
    field: str = "training_file",
    decision_weight: float = 1.0,
    name: str = "the file",
) -> list[Example]:
    """``(line, record)`` pairs tokenized (:func:`encode_record`). No records, an example longer than
    ``context_length`` tokens, or one with no token to train on (every assistant turn has ``weight: 0``), is an
    :class:`InvalidInput` naming its line."""
    examples = [
        encode_record(r, tokenizer, template=template, line=n, decision_weight=decision_weight) for n, r in records
    ]
    if not examples:
        raise InvalidInput(f"{name} holds no examples", field=field)
    too_long = [e for e in examples if len(e) > context_length]
    if too_long:
        first = too_long[0]
        more = f" ({len(too_long) - 1} more lines too)" if len(too_long) > 1 else ""
        raise InvalidInput(
            f"the example on line {first.line} is {len(first)} tokens, over the model's context length of "
            f"{context_length}{more}",
            field=field,
            line=first.line,
        )
    empty = next((e for e in examples if e.n_trainable == 0), None)
    if empty is not None:
        raise InvalidInput(
            f"the example on line {empty.line} has nothing to train on (every assistant message has weight 0)",
            field=field,
            line=empty.line,
        )
    return examples


def encode_pairs(
    records: list[tuple[int, dict[str, Any]]],
    tokenizer: OffsetTokenizer,
    *,
    context_length: int,
    template: ChatTemplate | str = CHATML,
    field: str = "training_file",
    name: str = "the file",
) -> list[tuple[Example, Example]]:
    """``(line, DPO record)`` pairs tokenized as ``(preferred, non-preferred)`` examples whose labels cover the
    outputs only (:func:`tracetune.chat.preference.preference_records`); problems as :func:`encode_examples`."""
    split = [preference_records(r) for _, r in records]
    lines = [n for n, _ in records]
    encoded = encode_examples(
        [(n, pair[0]) for n, pair in zip(lines, split, strict=True)]
        + [(n, pair[1]) for n, pair in zip(lines, split, strict=True)],
        tokenizer, context_length=context_length, template=template, field=field, name=name,
    )  # fmt: skip
    return list(zip(encoded[: len(records)], encoded[len(records) :], strict=True))


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, *, seed: int, epoch: int, bucket_batches: int = BUCKET_BATCHES
) -> list[list[int]]:
    """The batches (lists of example indexes) of one epoch: shuffled, grouped by length, deterministic for a
    given ``(seed, epoch)``. There are always ``ceil(len(lengths) / batch_size)`` of them."""
    rng = random.Random(f"tracetune:{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    bucket = batch_size * bucket_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), bucket):
        chunk = sorted(order[start : start + bucket], key=lambda i: -lengths[i])
        batches.extend(chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches in a fixed order (longest first), for evaluation: least padding, no randomness."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[k : k + batch_size] for k in range(0, len(order), batch_size)]


def collate(examples: Sequence[Example], pad_id: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` tensors, as wide as the longest example, and
    ``loss_weights`` (float) when an example has token weights."""
    import torch

    width = max(len(e) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    weighted = any(e.weights is not None for e in examples)
    weights = torch.ones((len(examples), width), dtype=torch.float32) if weighted else None
    for row, example in enumerate(examples):
        n = len(example)
        input_ids[row, :n] = torch.tensor(example.input_ids, dtype=torch.long)
        labels[row, :n] = torch.tensor(example.labels, dtype=torch.long)
        attention_mask[row, :n] = 1
        if weights is not None and example.weights is not None:
            weights[row, :n] = torch.tensor(example.weights, dtype=torch.float32)
    batch = {
        "input_ids": input_ids.to(device),
        "attention_mask": attention_mask.to(device),
        "labels": labels.to(device),
    }
    if weights is not None:
        batch["loss_weights"] = weights.to(device)
    return batch
