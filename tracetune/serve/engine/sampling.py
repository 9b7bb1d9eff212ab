"""Choosing the next token of each row of a batch: greedy, or temperature + nucleus (top-p) sampling.

Every row has its own ``torch.Generator`` (seeded from the request's ``seed``, else at random), so a seeded
choice draws the same numbers whatever else shares its batch. Rows are grouped: greedy rows take one argmax, the
sampled rows one vectorized temperature / top-p / softmax, then one draw per row with its generator.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch


def make_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A generator for one choice (on the model's device); ``None`` seeds it at random."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed if seed is not None else random.getrandbits(63))
    return gen


def sample_next(
    logits: torch.Tensor,
    temperatures: Sequence[float],
    top_ps: Sequence[float],
    generators: Sequence[torch.Generator | None],
) -> list[int]:
    """The next token id of every row of ``logits`` (``[rows, vocab]``, float32, masked rows already -inf).

    A row with temperature 0 (or no generator) is greedy."""
    rows = logits.shape[0]
    out = [0] * rows
    sampled = [i for i in range(rows) if temperatures[i] > 0 and generators[i] is not None]
    greedy = [i for i in range(rows) if i not in set(sampled)]
    if greedy:
        picks = logits[greedy].argmax(dim=-1).tolist() if len(greedy) < rows else logits.argmax(dim=-1).tolist()
        for i, tok in zip(greedy, picks, strict=True):
            out[i] = int(tok)
    if not sampled:
        return out
    part = logits[sampled] if len(sampled) < rows else logits
    temps = torch.tensor([temperatures[i] for i in sampled], dtype=part.dtype, device=part.device)
    probs = torch.softmax(part / temps[:, None], dim=-1)
    tops = [top_ps[i] for i in sampled]
    if any(p < 1.0 for p in tops):
        probs = _top_p(probs, torch.tensor(tops, dtype=probs.dtype, device=probs.device))
    for j, i in enumerate(sampled):
        out[i] = int(torch.multinomial(probs[j], 1, generator=generators[i]).item())
    return out


def _top_p(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Keep, per row, the smallest set of most likely tokens whose probability reaches ``top_p`` (at least one),
    renormalized."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the tokens ranked above each token
    drop = before >= top_p[:, None]
    drop[:, 0] = False
    sorted_probs = sorted_probs.masked_fill(drop, 0.0)
    kept = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return kept / kept.sum(dim=-1, keepdim=True)
