"""Exact token counts of rendered prompts, an order of magnitude faster than tokenizing each prompt whole.

A Hugging Face tokenizer turns text into tokens in stages, and each stage only ever looks inside the piece the
previous stage produced:

1. added tokens (``<|im_start|>``, ``<|im_end|>`` and the model's other added tokens) are split off first;
2. the pre-tokenizer cuts each remaining piece into words; for byte-level BPE models (GPT-2, Llama-3, SmolLM2:
   ``ByteLevel(use_regex=True)``, no normalizer) the words are the matches of GPT-2's regex
   ``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``;
3. the BPE model encodes each word on its own (merges never cross words).

So a prompt's count is the number of turn markers plus the counts of the pieces between them, and a piece's
count is the sum of its words' counts. ``TokenCounter`` memoizes both (a dataset repeats its system prompt and
tool schemas in every record, and its words everywhere), and finds the words of an ASCII piece with Python's
``re`` (the regex above restricted to ASCII, where ``\\p{L}`` is ``[A-Za-z]``, ``\\p{N}`` is ``[0-9]`` and
``\\s`` is ``[ \\t\\n\\v\\f\\r]``), which is several times faster than the tokenizer's own pre-tokenizer. A word
not seen before is encoded by the tokenizer's own BPE model (``tokenizer.backend.model.tokenize``) after the
byte-level pre-tokenizer's byte → character mapping (GPT-2's ``bytes_to_unicode``; for ASCII: printable
characters stay, the others become ``chr(256 + byte)``, DEL ``chr(289)``), so every count is the tokenizer's.
Pieces holding non-ASCII text or an added token are counted whole by the tokenizer; when the markers are not
added tokens, or the tokenizer is not a byte-level BPE of that shape, the counter falls back to those exact,
slower paths. ``tests/convert/test_target_check.py`` checks the counts against the tokenizer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Protocol

from tracetune.chat.format import CHATML, ChatTemplate

__all__ = ["CountingTokenizer", "TokenCounter"]

_WS = " \\t\\n\\v\\f\\r"
GPT2_ASCII_WORDS = re.compile(
    rf"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^{_WS}A-Za-z0-9]+|[{_WS}]+(?![^{_WS}])|[{_WS}]+"
)


class CountingTokenizer(Protocol):
    """What counting needs of a tokenizer (``tracetune.models.ModelTokenizer`` is one)."""

    def count(self, text: str) -> int: ...


class TokenCounter:
    """``count(text)`` = ``tokenizer.count(text)``, computed piecewise with memos (see the module docstring)."""

    __slots__ = ("_added", "_bpe", "_pieces", "_split", "_words", "memo_size", "tokenizer")

    def __init__(self, tokenizer: CountingTokenizer, template: ChatTemplate = CHATML, memo_size: int = 65536) -> None:
        self.tokenizer = tokenizer
        self.memo_size = memo_size
        self._pieces: dict[str, int] = {}
        self._words: dict[str, int] = {}
        added = _added_tokens(tokenizer)
        markers = (template.turn_start, template.turn_end)
        special = added is not None and all(m in added for m in markers)
        self._split: Callable[[str], list[str]] | None = (
            re.compile("|".join(map(re.escape, markers))).split if special else None
        )
        # an added token left inside a piece: that piece is counted by the tokenizer itself
        self._added: Callable[[str], Any] | None = None
        self._bpe: Callable[[str], list[Any]] | None = None
        if special and added is not None and _byte_level_bpe(tokenizer):
            others = sorted(set(added) - set(markers), key=len, reverse=True)
            self._added = re.compile("|".join(map(re.escape, others))).search if others else lambda _: None
            bpe = tokenizer.backend.model.tokenize  # type: ignore[attr-defined]
            if all(len(bpe(w.translate(_ASCII_BYTE_CHARS))) == tokenizer.count(w) for w in _PROBES):
                self._bpe = bpe

    def count(self, text: str) -> int:
        split = self._split
        if split is None:
            return self.tokenizer.count(text)
        pieces = split(text)
        total = len(pieces) - 1  # one token per marker
        memo = self._pieces
        for piece in pieces:
            if piece:
                n = memo.get(piece)
                if n is None:
                    if len(memo) >= self.memo_size:
                        memo.clear()
                    n = memo[piece] = self._count_piece(piece)
                total += n
        return total

    def _count_piece(self, piece: str) -> int:
        if self._added is None or not piece.isascii() or self._added(piece):
            return self.tokenizer.count(piece)
        words = self._words
        if len(words) >= self.memo_size:
            words.clear()
        total = 0
        bpe = self._bpe
        for word in GPT2_ASCII_WORDS.findall(piece):
            n = words.get(word)
            if n is None:
                n = len(bpe(word.translate(_ASCII_BYTE_CHARS))) if bpe else self.tokenizer.count(word)
                words[word] = n
            total += n
        return total


# GPT-2's bytes_to_unicode for the ASCII bytes: "!".."~" stay, bytes 0-32 → chr(256 + byte), DEL (127) → chr(289)
_ASCII_BYTE_CHARS = {b: 256 + b for b in range(33)} | {127: 289}
_PROBES = (" Hello", "\n\n", " 12345", '":', "'s", "\t", "\x7f", "supercalifragilistic", "  ")


def _added_tokens(tokenizer: Any) -> set[str] | None:
    """The contents of the added tokens the tokenizer splits off before anything else (None: unknown)."""
    backend = getattr(tokenizer, "backend", None)
    decoder = getattr(backend, "get_added_tokens_decoder", None)
    if decoder is None:
        return None
    tokens = list(decoder().values())
    if any(t.normalized or t.single_word or t.lstrip or t.rstrip for t in tokens):
        return None  # matching depends on context: not a plain split
    return {t.content for t in tokens}


def _byte_level_bpe(tokenizer: Any) -> bool:
    """Whether the tokenizer is a byte-level BPE that pre-tokenizes with GPT-2's regex and normalizes nothing."""
    try:
        config = json.loads(tokenizer.backend.to_str())
    except (AttributeError, TypeError, ValueError):
        return False
    pre = config.get("pre_tokenizer") or {}
    model = config.get("model") or {}
    return (
        config.get("normalizer") is None
        and pre.get("type") == "ByteLevel"
        and pre.get("use_regex") is True
        and pre.get("add_prefix_space") is False
        and model.get("type") == "BPE"
        and model.get("dropout") is None
    )
