"""The KV cache of a running batch whose rows started at different times (continuous batching).

Rows are left-padded to a common width: row ``i``'s ``lens[i]`` real positions are the rightmost columns of every
layer's ``[rows, heads, width, head_dim]`` keys and values, the padding columns are zeros and masked out. Rows
join (:meth:`BatchCache.merge`: another cache, padded on the left to the wider of the two, concatenated on the
batch axis) and leave (:meth:`BatchCache.keep`: the other rows selected, then padding columns no row needs any
more trimmed). Positions are passed explicitly (``position_ids`` = a row's own length), so a row's RoPE does not
depend on its padding, and a row decodes exactly as it would alone (up to float rounding of batched kernels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache


class BatchCache:
    def __init__(self) -> None:
        self.cache: DynamicCache | None = None
        self.lens: list[int] = []
        self.width = 0

    @property
    def rows(self) -> int:
        return len(self.lens)

    def merge(self, cache: DynamicCache, lens: Sequence[int]) -> None:
        """Append the rows of ``cache`` (each of width ``max(lens)``, left-padded) below the current rows."""
        width = int(cache.get_seq_length())
        if self.cache is None or not self.lens:
            self.cache, self.lens, self.width = cache, list(lens), width
            return
        target = max(width, self.width)
        for mine, theirs in zip(cache_layers(self.cache), cache_layers(cache), strict=True):
            mine.keys = torch.cat([_pad_left(mine.keys, target), _pad_left(theirs.keys, target)], dim=0)
            mine.values = torch.cat([_pad_left(mine.values, target), _pad_left(theirs.values, target)], dim=0)
        self.lens += list(lens)
        self.width = target

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only ``rows`` (indices, in order); drop the padding columns no remaining row needs."""
        if not rows:
            self.cache, self.lens, self.width = None, [], 0
            return
        if len(rows) == len(self.lens):
            return
        assert self.cache is not None
        index = torch.tensor(list(rows), dtype=torch.long, device=cache_layers(self.cache)[0].keys.device)
        self.lens = [self.lens[i] for i in rows]
        cut = self.width - max(self.lens)
        for layer in cache_layers(self.cache):
            layer.keys = layer.keys.index_select(0, index)[:, :, cut:]
            layer.values = layer.values.index_select(0, index)[:, :, cut:]
        self.width -= cut

    def step_inputs(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(position_ids [rows, 1], attention_mask [rows, width + 1] or None when no row is padded)`` for
        decoding one more token per row."""
        positions = torch.tensor(self.lens, dtype=torch.long, device=device)[:, None]
        if all(n == self.width for n in self.lens):
            return positions, None
        starts = torch.tensor([self.width - n for n in self.lens], dtype=torch.long, device=device)
        columns = torch.arange(self.width + 1, device=device)
        mask = (columns[None, :] >= starts[:, None]).to(torch.long)
        return positions, mask

    def advanced(self, tokens: int = 1) -> None:
        """``tokens`` positions were run for every row (the model appended them to the cache)."""
        self.lens = [n + tokens for n in self.lens]
        self.width += tokens


def cache_layers(cache: DynamicCache) -> list[Any]:
    layers = getattr(cache, "layers", None)
    if not layers or not all(hasattr(layer, "keys") and hasattr(layer, "values") for layer in layers):
        raise TypeError("continuous batching needs a DynamicCache of full-attention layers (keys / values)")
    return list(layers)


def _pad_left(t: torch.Tensor, width: int) -> torch.Tensor:
    missing = width - t.shape[2]
    if missing <= 0:
        return t
    pad = torch.zeros((t.shape[0], t.shape[1], missing, t.shape[3]), dtype=t.dtype, device=t.device)
    return torch.cat([pad, t], dim=2)
