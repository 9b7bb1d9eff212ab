"""Prefix caching: the KV of recent prompts, reused for the part of a new prompt that starts the same way.

Apps that call tools send the same system prompt and tool schemas with every request (the calculator prompt: ~200
of ~220 tokens), so a prompt's prefill mostly recomputes keys and values the engine computed moments ago. After
each prefill the prompt's per-layer keys and values are kept (by reference: the engine never writes into a cache
tensor, it concatenates); a new prompt for the same adapter starts from the longest common prefix with a kept one,
and only the rest is run through the model. Attention is causal, so the keys and values of a prefix do not depend
on what follows it (equal up to float rounding of the differently shaped kernels). Entries are evicted least
recently used; an adapter's entries go with the adapter.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

Layers = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class _Entry:
    adapter: str
    ids: list[int]
    layers: Layers


class PrefixCache:
    def __init__(self, max_entries: int = 8, min_tokens: int = 32) -> None:
        self.max_entries = max_entries
        self.min_tokens = min_tokens
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._next = 0
        self.hits = 0
        self.reused_tokens = 0

    def lookup(self, adapter: str, ids: list[int]) -> tuple[int, Layers | None]:
        """``(m, layers)``: the first ``m`` positions of ``ids`` (at most ``len(ids) - 1``: one token must be run
        for the logits) are in ``layers`` (``[1, heads, m, head_dim]`` each), or ``(0, None)``."""
        best, found = 0, None
        for key, entry in self._entries.items():
            if entry.adapter != adapter:
                continue
            m = _common_prefix(entry.ids, ids, len(ids) - 1)
            if m > best:
                best, found = m, key
        if found is None or best < self.min_tokens:
            return 0, None
        self._entries.move_to_end(found)
        self.hits += 1
        self.reused_tokens += best
        layers = self._entries[found].layers
        return best, [(k[:, :, :best], v[:, :, :best]) for k, v in layers]

    def store(self, adapter: str, ids: list[int], layers: Layers) -> None:
        """Keep a prompt's keys and values (``[1, heads, len(ids), head_dim]`` per layer)."""
        if self.max_entries <= 0 or len(ids) < self.min_tokens:
            return
        for key, entry in list(self._entries.items()):  # a kept prompt this one extends is redundant
            if entry.adapter == adapter and len(entry.ids) <= len(ids) and ids[: len(entry.ids)] == entry.ids:
                del self._entries[key]
        self._entries[self._next] = _Entry(adapter, list(ids), layers)
        self._next += 1
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def drop_adapter(self, adapter: str) -> None:
        for key in [k for k, e in self._entries.items() if e.adapter == adapter]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


def _common_prefix(a: list[int], b: list[int], limit: int) -> int:
    n = min(len(a), len(b), limit)
    if n <= 0 or a[0] != b[0]:
        return 0
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]: bisect on slice equality (C speed)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo
