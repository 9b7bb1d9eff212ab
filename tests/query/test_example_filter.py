"""The filter language over dataset examples: each construct keeps the right examples; anything else is a 400
naming the filter and where in it."""

from __future__ import annotations

import uuid

import pytest

from tracetune.errors import InvalidInput
from tracetune.query.example_filter import example_predicate

A = {
    "id": uuid.UUID("5b0c2f6e-8d1a-4e3b-9c7f-2a6e4d8b1c03"),  # fixed: it names parametrized tests
    "inputs": {"q": "2+2"},
    "outputs": {"a": 4},
    "metadata": {"level": "easy"},
    "splits": ["train"],
}
B = {
    "id": uuid.UUID("9e4a7b21-3c6d-4f80-a1b5-7d2c9e0f6a14"),
    "inputs": {"q": "x"},
    "outputs": None,
    "metadata": None,
    "splits": ["test", "hard"],
}


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ('has(metadata, \'{"level": "easy"}\')', [A]),
        ("has(outputs, '{\"a\": 4}')", [A]),
        ('has(outputs, \'{"a": "4"}\')', []),
        ('exists(metadata, "level")', [A]),
        ('exists(inputs, "q")', [A, B]),
        ('not(exists(metadata, "level"))', [B]),
        ('has(dataset_split, "hard")', [B]),
        ('in(dataset_split, ["train", "nope"])', [A]),
        ('or(has(dataset_split, "hard"), has(inputs, \'{"q": "2+2"}\'))', [A, B]),
        ('and(has(dataset_split, "hard"), has(inputs, \'{"q": "2+2"}\'))', []),
        (f'eq(id, "{A["id"]}")', [A]),
        (f'neq(id, "{A["id"]}")', [B]),
    ],
)
def test_each_construct_keeps_the_right_examples(text, kept):
    keep = example_predicate(text)
    assert [ex for ex in (A, B) if keep(ex)] == kept


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("gt(latency, 2)", "gt() is not a filter"),
        ("has(latency, '{}')", "cannot be filtered on latency"),
        ("has(metadata, 'not json')", "JSON object"),
        ("has(metadata, '[1]')", "JSON object"),
        ('search("x")', "search() is not a filter"),
        ("exists(metadata, 5)", "not a filter"),
        ("has(metadata", "filter"),
    ],
)
def test_anything_else_is_refused_naming_it(text, words):
    with pytest.raises(InvalidInput) as err:
        example_predicate(text)
    assert words in str(err.value) and err.value.field == "filter"
