"""Training data: loss mask on assistant tokens only, errors naming lines, length-grouped deterministic batches."""

from __future__ import annotations

import json
import math
import random

import pytest

from tests.models import shared_smollm2_tokenizer
from tests.train import CALCULATOR_TRAIN
from tracetune.chat.format import render_prompt
from tracetune.errors import InvalidInput
from tracetune.models import ModelTokenizer
from tracetune.train.data import (
    IGNORE_INDEX,
    Example,
    collate,
    encode_record,
    length_grouped_batches,
    load_examples,
    sorted_batches,
)

CALL = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "rent"}'}}
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory) -> ModelTokenizer:
    return shared_smollm2_tokenizer(tmp_path_factory)


def trained_text(example: Example, tokenizer: ModelTokenizer) -> list[str]:
    """The decoded runs of consecutive trainable tokens."""
    runs: list[list[int]] = []
    previous = False
    for token, label in zip(example.input_ids, example.labels, strict=True):
        if label != IGNORE_INDEX:
            if not previous:
                runs.append([])
            runs[-1].append(token)
        previous = label != IGNORE_INDEX
    return [tokenizer.decode(run) for run in runs]


def write_jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_loss_mask_covers_exactly_the_assistant_tokens(tokenizer):
    record = {
        "messages": [
            {"role": "system", "content": "You keep the books."},
            {"role": "user", "content": "What do we pay in rent?"},
            {"role": "assistant", "content": "Let me look.", "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": "2400"},
            {"role": "assistant", "content": "We pay 2400 a month."},
        ],
        "tools": TOOLS,
    }
    example = encode_record(record, tokenizer)
    assert all(label in (token, IGNORE_INDEX) for token, label in zip(example.input_ids, example.labels, strict=True))
    assert trained_text(example, tokenizer) == [
        'Let me look.\n<tool_call>{"name": "lookup", "arguments": {"q": "rent"}}</tool_call><|im_end|>',
        "We pay 2400 a month.<|im_end|>",
    ]
    # the ids are exactly the prompt serving renders (same text, tokenized as one string)
    assert tokenizer.decode(example.input_ids) == render_prompt(
        record["messages"], tools=TOOLS, add_generation_prompt=False
    )


def test_weight_zero_turns_are_masked(tokenizer):
    record = {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "A bad answer.", "weight": 0},
            {"role": "user", "content": "Again?"},
            {"role": "assistant", "content": "A good answer.", "weight": 1},
        ]
    }
    assert trained_text(encode_record(record, tokenizer), tokenizer) == ["A good answer.<|im_end|>"]


def test_calculator_examples(tokenizer):
    examples = load_examples(CALCULATOR_TRAIN, tokenizer, context_length=8192)
    assert [e.line for e in examples] == list(range(1, 21))
    for e in examples:
        (text,) = trained_text(e, tokenizer)
        assert text.startswith('<tool_call>{"name": "Calculator", "arguments": {"num1": ')
        assert text.endswith("</tool_call><|im_end|>")


def test_an_example_over_the_context_length_names_its_line(tokenizer, tmp_path):
    short = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    long = {"messages": [{"role": "user", "content": "word " * 300}, {"role": "assistant", "content": "ok"}]}
    path = tmp_path / "train.jsonl"
    write_jsonl(path, [short, short, long, short])
    with pytest.raises(InvalidInput) as err:
        load_examples(path, tokenizer, context_length=256)
    assert err.value.line == 3 and err.value.field == "training_file"
    assert "line 3" in str(err.value) and "context length of 256" in str(err.value)


def test_invalid_lines_are_reported_with_their_numbers(tokenizer, tmp_path):
    path = tmp_path / "train.jsonl"
    good = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    path.write_text(json.dumps(good) + "\n{not json\n" + json.dumps({"messages": []}) + "\n", encoding="utf-8")
    with pytest.raises(InvalidInput) as err:
        load_examples(path, tokenizer, context_length=8192, field="validation_file")
    assert err.value.line == 2 and err.value.field == "validation_file"
    assert "line 2:" in err.value.message and "line 3: messages:" in err.value.message


def test_a_file_with_nothing_to_train_on_is_refused(tokenizer, tmp_path):
    path = tmp_path / "train.jsonl"
    quiet = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello", "weight": 0}]}
    write_jsonl(path, [quiet])
    with pytest.raises(InvalidInput) as err:
        load_examples(path, tokenizer, context_length=8192)
    assert err.value.line == 1 and "nothing to train on" in err.value.message


def test_batches_are_deterministic_complete_and_grouped_by_length():
    rng = random.Random(7)
    lengths = [rng.randint(10, 500) for _ in range(1003)]
    batches = length_grouped_batches(lengths, 8, seed=3, epoch=0)
    assert batches == length_grouped_batches(lengths, 8, seed=3, epoch=0)
    assert batches != length_grouped_batches(lengths, 8, seed=3, epoch=1)
    assert batches != length_grouped_batches(lengths, 8, seed=4, epoch=0)
    assert len(batches) == math.ceil(1003 / 8)
    assert sorted(i for b in batches for i in b) == list(range(1003))
    assert all(len(b) == 8 for b in batches if b is not min(batches, key=len))

    # grouping: far less padding than batches of random examples
    def padding(groups):
        return sum(max(lengths[i] for i in g) * len(g) - sum(lengths[i] for i in g) for g in groups)

    order = list(range(1003))
    rng.shuffle(order)
    random_batches = [order[k : k + 8] for k in range(0, 1003, 8)]
    assert padding(batches) < padding(random_batches) / 5


def test_collate_pads_only_to_the_batch_max():
    examples = [Example(1, [5, 6, 7], [IGNORE_INDEX, 6, 7]), Example(2, [8, 9], [IGNORE_INDEX, 9])]
    batch = collate(examples, pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [IGNORE_INDEX, 9, IGNORE_INDEX]]


def test_no_padding_beyond_each_batch_max(tokenizer):
    examples = load_examples(CALCULATOR_TRAIN, tokenizer, context_length=8192)
    lengths = [len(e) for e in examples]
    for epoch in range(3):
        for ids in length_grouped_batches(lengths, 4, seed=0, epoch=epoch):
            batch = collate([examples[i] for i in ids], pad_id=2)
            assert batch["input_ids"].shape[1] == max(lengths[i] for i in ids)
            assert int(batch["attention_mask"].sum()) == sum(lengths[i] for i in ids)
    assert [len(b) for b in sorted_batches(lengths, 8)] == [8, 8, 4]


def test_decision_weight_falls_on_the_argument_values_only(tokenizer):
    from tracetune.chat.format import argument_value_spans, tool_call_to_block
    from tracetune.demo.tickets import Ticket

    block = "Routing it.\n" + tool_call_to_block("route_ticket", '{"team": "sales", "priority": 3, "note": "a, b"}')
    assert [block[a:b] for a, b in argument_value_spans(block)] == ['"sales"', "3", '"a, b"']
    assert argument_value_spans('<tool_call>{"name":"f","arguments":{"x":1}}</tool_call>') == []  # not canonical

    record = Ticket("My card was declined.", "billing", 1).record()
    plain = encode_record(record, tokenizer)
    weighted = encode_record(record, tokenizer, decision_weight=4.0)
    assert plain.weights is None and weighted.labels == plain.labels
    assert weighted.weights is not None
    heavy = "".join(tokenizer.decode([t]) for t, w in zip(weighted.input_ids, weighted.weights, strict=True) if w == 4)
    assert "billing" in heavy and "1" in heavy and len(heavy) <= len('"billing", 1}') + 2  # the team and priority
    assert not any(word in heavy for word in ("route", "team", "priority", "name"))  # nothing of the format
    assert all(w == 1.0 for t, w in zip(weighted.labels, weighted.weights, strict=True) if t == -100)


def test_argument_values_copied_from_the_question_are_not_decisions(tokenizer):
    """The calculator's numbers are copied from the question (and "+" when it is written there): only the
    operation asked in words ("times") is a decision the model must make."""
    from tracetune.chat.format import argument_value_spans, copied_from, tool_call_to_block

    assert copied_from(12, "What's 12 + 5?") and copied_from("+", "What's 12 + 5?") and copied_from(15.75, "of 15.75")
    assert copied_from("/", "What is 6/3?") and copied_from("Sales", "ask sales")
    assert not copied_from(2, "a team of 25") and not copied_from("*", "What is 3 times 4?")
    assert not copied_from(True, "true") and not copied_from([1], "[1]") and not copied_from("x", "")
    block = tool_call_to_block("Calculator", '{"num1": 3, "num2": 4, "operation": "*"}')
    assert [block[a:b] for a, b in argument_value_spans(block, source="What is 3 times 4?")] == ['"*"']

    record = {
        "messages": [
            {"role": "system", "content": "You use the calculator for *, +, - and /."},
            {"role": "user", "content": "What is 37 times 12?"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
                "name": "Calculator", "arguments": '{"num1": 37, "num2": 12, "operation": "*"}'}}]},
        ]
    }  # fmt: skip
    weighted = encode_record(record, tokenizer, decision_weight=4.0)
    assert weighted.weights is not None
    heavy = "".join(tokenizer.decode([t]) for t, w in zip(weighted.input_ids, weighted.weights, strict=True) if w == 4)
    assert "*" in heavy and "37" not in heavy and "12" not in heavy  # the system prompt's "*" is not a source
