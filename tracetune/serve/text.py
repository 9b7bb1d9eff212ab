"""Token ids → text, one token at a time, with stop strings. Pure Python (no torch).

:class:`TextTracker` decodes incrementally as vLLM does: it re-decodes only a short window of recent tokens
(``prefix_offset:``) and emits the part beyond what the window decoded to before, holding text back while it
ends in an incomplete UTF-8 sequence (``"\\ufffd"``). Stop strings end the text before the first one found, and
while the text ends with what could still become a stop string, that tail is held back, so a streamed client
never sees a stop string or part of one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

REPLACEMENT = "\ufffd"


class Decoder(Protocol):
    def decode(self, ids: list[int], *, skip_special_tokens: bool = False) -> str: ...


class TextTracker:
    """The text of one generated sequence. :meth:`push` a token id, get the text safe to emit now."""

    def __init__(self, tokenizer: Decoder, stop: Sequence[str] = ()) -> None:
        self._tokenizer = tokenizer
        self._stop = tuple(s for s in stop if s)
        self._longest_stop = max((len(s) for s in self._stop), default=0)
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0
        self.text = ""  # all text decoded so far (cut at a stop string once found)
        self._emitted = 0
        self.stopped = False

    def push(self, token_id: int) -> str:
        """Add a token; the text that may be emitted now ("" while held back). After a stop string is found
        :attr:`stopped` is true and the text before the stop string has been emitted."""
        if self.stopped:
            return ""
        self._ids.append(token_id)
        prefix = self._tokenizer.decode(self._ids[self._prefix_offset : self._read_offset])
        window = self._tokenizer.decode(self._ids[self._prefix_offset :])
        if len(window) > len(prefix) and not window.endswith(REPLACEMENT):
            self.text += window[len(prefix) :]
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)
        return self._release()

    def flush(self) -> str:
        """At the end of generation (not by a stop string): everything not emitted yet."""
        if self.stopped:
            return ""
        if self._read_offset < len(self._ids):  # an incomplete character at the very end: emit what decodes
            prefix = self._tokenizer.decode(self._ids[self._prefix_offset : self._read_offset])
            window = self._tokenizer.decode(self._ids[self._prefix_offset :])
            self.text += window[len(prefix) :]
            self._read_offset = len(self._ids)
        out = self.text[self._emitted :]
        self._emitted = len(self.text)
        return out

    def _release(self) -> str:
        if not self._stop:
            out = self.text[self._emitted :]
            self._emitted = len(self.text)
            return out
        start = max(0, self._emitted - self._longest_stop + 1)
        cut = -1
        for s in self._stop:
            at = self.text.find(s, start)
            if at != -1 and (cut == -1 or at < cut):
                cut = at
        if cut != -1:
            self.text = self.text[:cut]
            self.stopped = True
            out = self.text[self._emitted :]
            self._emitted = len(self.text)
            return out
        safe = len(self.text) - _held_back(self.text, self._stop, self._emitted)
        out = self.text[self._emitted : safe]
        self._emitted = max(self._emitted, safe)
        return out


def _held_back(text: str, stop: Sequence[str], emitted: int) -> int:
    """How many trailing characters of ``text`` (beyond ``emitted``) could be the start of a stop string."""
    best = 0
    for s in stop:
        for k in range(min(len(s) - 1, len(text) - emitted), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best
