"""DPO's pieces of the recipe's step (as :mod:`tracetune.train.reinforcement` is RFT's): a batch of pairs collated
(the preferred outputs, then the non-preferred ones), their log-probabilities under the model as it is, the
reference log-probabilities computed once and kept on disk for a resumed run, and the loss of a batch."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tracetune.train.data import Example, collate, sorted_batches
from tracetune.train.loss import CausalLM, PreferenceLoss, preference_loss, sequence_logps

Pair = tuple[Example, Example]


def collate_pairs(pairs: Sequence[Pair], pad_id: int, device: Any) -> dict[str, Any]:
    """One batch of the pairs' preferred outputs, then their non-preferred ones."""
    return collate([c for c, _ in pairs] + [r for _, r in pairs], pad_id, device)


def pair_logps(
    lm: CausalLM, pairs: Sequence[Pair], batch_size: int, pad_id: int, device: Any, share_prefix: bool
) -> Any:
    """``(n, 2)`` log-probabilities of each pair's preferred and non-preferred output under the model as it is
    (no dropout, no gradients)."""
    import torch

    out = torch.zeros((len(pairs), 2), dtype=torch.float32)
    was_training = lm.model.training
    lm.model.eval()
    with torch.no_grad():
        for ids in sorted_batches([max(len(c), len(r)) for c, r in pairs], batch_size):
            batch = collate_pairs([pairs[i] for i in ids], pad_id, device)
            out[ids] = sequence_logps(lm, batch, share_prefix).view(2, len(ids)).t().float().cpu()
    lm.model.train(was_training)
    return out


def pairs_loss(policy: Any, reference: Any, beta: float) -> PreferenceLoss:
    """DPO's loss of ``policy`` log-probabilities (the ``2n`` rows of :func:`collate_pairs`, or ``(n, 2)``) against
    the ``(n, 2)`` ``reference``."""
    import torch

    if policy.dim() == 2:
        policy = torch.cat([policy[:, 0], policy[:, 1]])
    return preference_loss(policy, torch.cat([reference[:, 0], reference[:, 1]]), beta)


def reference_logps(
    path: Path, sets: Mapping[str, Sequence[Pair]], logps: Callable[[Sequence[Pair]], Any]
) -> dict[str, Any]:
    """The reference model's log-probabilities of every pair of each set (``logps(pairs)``, computed with the
    start model: a new adapter's output is 0, so the base model's; a fine-tuned start's own) — once, before the
    first step, with the weights being trained (no second copy of the model) — and kept in ``path`` for a resumed
    run, whose adapter has moved on."""
    import torch

    if path.exists():
        saved = torch.load(path)
        if {name: len(values) for name, values in saved.items()} == {name: len(p) for name, p in sets.items()}:
            return dict(saved)
    reference = {name: logps(pairs) for name, pairs in sets.items()}
    scratch = path.with_name(f".{path.name}-{os.getpid()}")
    torch.save(reference, scratch)
    os.replace(scratch, path)
    return reference
