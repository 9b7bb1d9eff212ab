"""Incremental detokenization and stop strings (TextTracker), on SmolLM2's real byte-level tokenizer."""

from __future__ import annotations

import pytest

from tracetune.serve.text import TextTracker


def pushed(tracker: TextTracker, ids: list[int]) -> list[str]:
    return [tracker.push(i) for i in ids]


@pytest.mark.parametrize(
    "text", ["Hello, world!", "héllo wörld — 🌍🚀 ok", '<tool_call>{"a": 1}</tool_call>', "  x\n\ny"]
)
def test_pieces_join_to_the_decoded_text(tokenizer, text):
    ids = tokenizer.encode(text)
    tracker = TextTracker(tokenizer)
    pieces = pushed(tracker, ids)
    assert "".join(pieces) + tracker.flush() == tokenizer.decode(ids) == text
    assert not any("\ufffd" in p for p in pieces)  # never half a character


def test_a_character_split_over_tokens_is_held_until_complete(tokenizer):
    ids = tokenizer.encode("🌍")
    assert len(ids) > 1  # byte-level BPE splits the emoji
    tracker = TextTracker(tokenizer)
    assert pushed(tracker, ids)[:-1] == [""] * (len(ids) - 1)
    assert tracker.text == "🌍"


def test_stop_string_ends_the_text_before_it(tokenizer):
    ids = tokenizer.encode("The answer is 42. END and more")
    tracker = TextTracker(tokenizer, stop=["END", "never"])
    pieces = []
    for i in ids:
        pieces.append(tracker.push(i))
        if tracker.stopped:
            break
    assert tracker.stopped
    assert "".join(pieces) == "The answer is 42. "
    assert tracker.flush() == "" and tracker.push(ids[-1]) == ""


def test_a_possible_stop_string_is_held_back_then_released(tokenizer):
    ids = tokenizer.encode("a ## b")
    tracker = TextTracker(tokenizer, stop=["###"])
    pieces = pushed(tracker, ids)
    assert "".join(pieces) + tracker.flush() == "a ## b"
    assert "#" not in "".join(pieces[: len(tokenizer.encode("a ##"))])  # "##" waited: it could have become "###"


def test_the_earliest_stop_string_wins(tokenizer):
    tracker = TextTracker(tokenizer, stop=["world", "lo"])
    out = "".join(pushed(tracker, tokenizer.encode("hello world")))
    assert tracker.stopped and out == "hel"
