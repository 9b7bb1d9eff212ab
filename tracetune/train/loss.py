"""The training loss — mean cross-entropy over a batch's trainable tokens — computed without waste.

Two savings, both exact (the same loss and gradients, up to float rounding):

* **Logits only where a label is.** The vocabulary projection (576 x 49,152 for SmolLM2, about a fifth of the
  model's FLOPs per token) runs on the positions that carry loss — the assistant tokens — not on the prompt.
* **A shared prefix runs once.** The rows of a batch usually start with the same tokens: the system prompt and
  the tool schemas, identical in every record of a tool-calling dataset and often most of each example. Under
  causal attention their hidden states are identical in every row, so the prefix runs once (batch of one), its
  key/value cache is repeated for every row, and only the rest of each row runs per row; gradients flow back
  through the cache into the one prefix computation (summed over the rows, as they would be). The only
  difference from running every row in full: LoRA dropout draws one mask for the prefix instead of one per row.

Models whose decoder cannot be called apart from the head, or that use a cache other than a plain dynamic one
(sliding-window attention), fall back to the full forward pass.

Training runs forward and backward in one call, :func:`token_loss_backward`, so that it can also bound memory: the
rows of a batch run ``rows_per_pass`` at a time (forward, then backward at once, the gradients adding up in the
parameters), each trimmed to its own length, while a shared prefix still runs once. Its key/value cache and hidden
states are cut from its graph (as leaves that collect the gradients of every row pass), and after the last row
pass one backward pass runs through the prefix with those summed gradients. The activations alive at once are then
the prefix's and one row pass's, not the whole batch's, whatever the batch size. The loss is the same mean over the
batch's trainable tokens: every row pass adds its sum of token losses divided by the batch's token count. A batch
with ``loss_weights`` (per token: a tool call's argument values may weigh more, ``TrainConfig.decision_weight``)
takes the gradient of the weighted mean instead; the loss reported stays the plain mean, comparable across runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tracetune.train.data import IGNORE_INDEX

if TYPE_CHECKING:
    import torch

MIN_SHARED_PREFIX = 16  # below this, running the prefix apart costs more than it saves


@dataclass
class CausalLM:
    """A (PEFT-wrapped) causal LM seen as ``decoder`` (token ids → hidden states) and ``head`` (→ logits)."""

    model: Any
    decoder: Any = None
    head: Any = None

    @classmethod
    def of(cls, model: Any) -> CausalLM:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        get_decoder = getattr(base, "get_decoder", None)
        decoder = get_decoder() if callable(get_decoder) else None
        head = base.get_output_embeddings() if decoder is not None else None
        return cls(model, decoder, head) if head is not None else cls(model)


def shared_prefix_length(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> int:
    """How many leading tokens every row has in common (real tokens, not padding), leaving every row at least
    one column after it."""
    same = (input_ids == input_ids[:1]) & attention_mask.bool()
    run = int(same.all(dim=0).long().cumprod(dim=0).sum())
    return min(run, input_ids.shape[1] - 1)


def hidden_states(
    decoder: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, share_prefix: bool = True
) -> Any:
    """The decoder's last hidden states ``(batch, length, hidden)``, running a shared prefix once when there is
    one worth it."""
    import torch
    from transformers.cache_utils import DynamicLayer

    rows = input_ids.shape[0]
    prefix = shared_prefix_length(input_ids, attention_mask) if share_prefix and rows > 1 else 0
    if prefix >= MIN_SHARED_PREFIX:
        head = decoder(input_ids=input_ids[:1, :prefix], use_cache=True)
        cache = head.cache
        if cache is not None and all(type(layer) is DynamicLayer for layer in getattr(cache, "layers", [None])):
            cache.batch_repeat_interleave(rows)
            tail = decoder(input_ids=input_ids[:, prefix:], attention_mask=attention_mask, cache=cache, use_cache=True)
            return torch.cat([head[0].expand(rows, -1, -1), tail[0]], dim=1)
    return decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)[0]


def token_loss_backward(
    lm: CausalLM,
    batch: dict[str, torch.Tensor],
    share_prefix: bool = True,
    rows_per_pass: int | None = None,
    recompute_prefix: bool = False,
) -> tuple[float, int, int]:
    """Forward and backward of :func:`token_loss` (gradients accumulate in ``.grad``), ``rows_per_pass`` rows at
    a time (None: all at once) after a shared prefix that runs once: ``(loss, correct, count)``. With
    ``recompute_prefix`` the prefix keeps no activations between its forward and its backward pass: each decoder
    layer's are recomputed there, one layer at a time (see :func:`_layers_recomputed`)."""
    import torch

    input_ids, attention_mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    weights = batch.get("loss_weights")  # per-token loss weights: the gradient is of the weighted mean
    rows = input_ids.shape[0]
    per_pass = rows if rows_per_pass is None else max(1, rows_per_pass)
    count = int((labels[:, 1:] != IGNORE_INDEX).sum())
    total_weight = count if weights is None else float(weights[:, 1:][labels[:, 1:] != IGNORE_INDEX].sum())
    lengths = attention_mask.sum(dim=1)
    prefix = 0
    if lm.decoder is not None and share_prefix and rows > 1:
        prefix = min(shared_prefix_length(input_ids, attention_mask), int(lengths.min()) - 1)
    roots: list[Any] = []  # (tensor of the prefix's graph, leaf standing for it in the row passes)
    if prefix >= MIN_SHARED_PREFIX:
        from transformers.cache_utils import DynamicCache, DynamicLayer

        with _layers_recomputed(lm.decoder) if recompute_prefix else contextlib.nullcontext():
            head = lm.decoder(input_ids=input_ids[:1, :prefix], use_cache=True)
        cache = head.cache
        layers = getattr(cache, "layers", [None])
        if cache is not None and len(layers) == len(lm.decoder.layers) and all(type(x) is DynamicLayer for x in layers):
            for tensor in [head[0]] + [t for layer in cache.layers for t in (layer.keys, layer.values)]:
                roots.append((tensor, tensor.detach().requires_grad_(tensor.requires_grad)))
        del head, cache
    if not roots:
        prefix = 0
    loss_sum, correct = 0.0, 0
    for start in range(0, rows, per_pass):
        part = slice(start, start + per_pass)
        trained_columns = (labels[part] != IGNORE_INDEX).any(dim=0).nonzero()
        if trained_columns.numel() == 0:
            continue
        # columns from the last trained token on predict nothing that is trained: they need not run at all
        width = max(int(trained_columns[-1]), prefix + 1)
        ids, mask = input_ids[part, :width], attention_mask[part, :width]
        targets = labels[part, 1 : width + 1]
        target_at = targets != IGNORE_INDEX
        n = ids.shape[0]
        if prefix:
            leaves = [leaf for _, leaf in roots]
            pairs = zip(leaves[1::2], leaves[2::2], strict=True)
            kv = [(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in pairs]
            tail = lm.decoder(input_ids=ids[:, prefix:], attention_mask=mask, cache=DynamicCache(kv), use_cache=True)[0]
            logits = lm.head(torch.cat([leaves[0].expand(n, -1, -1), tail], dim=1)[target_at])
        elif lm.decoder is not None:
            hidden = lm.decoder(input_ids=ids, attention_mask=mask, use_cache=False)[0]
            logits = lm.head(hidden[target_at])
        else:
            logits = lm.model(input_ids=ids, attention_mask=mask, use_cache=False).logits[target_at]
        token_weights = None if weights is None else weights[part, 1 : width + 1][target_at]
        loss, weighted, hits = _summed_loss(logits, targets[target_at], token_weights)
        (weighted / total_weight).backward()
        loss_sum, correct = loss_sum + float(loss.detach()), correct + hits
        del logits, loss, weighted
    pending = [(tensor, leaf.grad) for tensor, leaf in roots if tensor.requires_grad and leaf.grad is not None]
    if pending:  # the prefix, once, with the gradients every row pass sent it
        torch.autograd.backward([t for t, _ in pending], [g for _, g in pending])
    return loss_sum / count, correct, count


class _KeyValueRecorder:
    """Stands for the cache inside a recomputed layer: the prefix has nothing before it, so ``update`` hands the new
    keys and values back, and remembers them (and the layer index) for the real cache."""

    def __init__(self) -> None:
        self.kv: tuple[Any, Any] | None = None
        self.layer_idx: int | None = None

    def update(self, keys: Any, values: Any, layer_idx: int, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        self.kv, self.layer_idx = (keys, values), layer_idx
        return keys, values


@contextlib.contextmanager
def _layers_recomputed(decoder: Any) -> Iterator[None]:
    """Within the block, every decoder layer runs under activation checkpointing: it keeps only its input, and
    the backward pass recomputes it (with the same dropout masks: the RNG state is restored for the recompute).
    The cache update is taken out of the checkpointed part (a recompute must not write the cache twice)."""
    from torch.utils.checkpoint import checkpoint

    layers = list(getattr(decoder, "layers", []))

    def recomputed(original: Any) -> Any:
        def forward(hidden: Any, *args: Any, **kwargs: Any) -> Any:
            cache = kwargs.pop("cache", None)
            seen: dict[str, Any] = {}

            def run(h: Any) -> Any:
                recorder = _KeyValueRecorder()
                out = original(h, *args, cache=recorder, **kwargs)
                seen["layer_idx"] = recorder.layer_idx
                return (out, *recorder.kv) if recorder.kv is not None else (out,)

            out, *kv = checkpoint(run, hidden, use_reentrant=False)
            if cache is not None and kv:
                cache.update(kv[0], kv[1], seen["layer_idx"])
            return out

        return forward

    for layer in layers:
        layer.forward = recomputed(layer.forward)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward  # the class's forward again


def use_cheap_dropout(model: Any) -> int:
    """Swap every ``torch.nn.Dropout`` of ``model``'s LoRA layers (PEFT's ``lora_dropout``) for
    :func:`cheap_dropout`, which draws the same kind of mask about five times faster on the CPU; how many were
    swapped. The adapter is unchanged (dropout has no weights), and so is the saved format."""
    import torch

    swapped = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, torch.nn.ModuleDict):
            for name, dropout in list(dropouts.items()):
                if type(dropout) is torch.nn.Dropout and dropout.p > 0:
                    dropouts[name] = cheap_dropout(dropout.p)
                    swapped += 1
    return swapped


def cheap_dropout(p: float) -> Any:
    """Dropout with probability ``p`` (to 1/65,536) whose mask comes from 16-bit random numbers, four per 64-bit
    draw of the generator, where ``torch.nn.Dropout`` draws one Bernoulli number per element: on the CPU that draw
    is most of dropout's cost (10% of a LoRA training step on SmolLM2). Kept elements are scaled by ``1 / (1 - p)``
    as usual; the backward pass keeps the mask as booleans. (The class is defined on first use: importing this module
    does not import torch.)"""
    global _CheapDropout
    if _CheapDropout is None:
        _CheapDropout = _define_cheap_dropout()
    return _CheapDropout(p)


_CheapDropout: Any = None


def _define_cheap_dropout() -> Any:
    import torch

    class _MaskScale(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
            ctx.save_for_backward(keep)
            ctx.scale = scale
            return torch.where(keep, x, 0.0).mul_(scale)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, None, None]:
            (keep,) = ctx.saved_tensors
            return torch.where(keep, grad, 0.0).mul_(ctx.scale), None, None

    class CheapDropout(torch.nn.Module):
        def __init__(self, p: float) -> None:
            super().__init__()
            self.p = p
            self.threshold = round(p * 65536) - 32768  # an int16 below it is dropped: probability p (to 2^-16)
            self.scale = 1.0 / (1.0 - (self.threshold + 32768) / 65536)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training or self.p == 0:
                return x
            n = x.numel()
            bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), 2**63 - 1)
            keep = bits.view(torch.int16)[:n].view(x.shape) >= self.threshold
            return _MaskScale.apply(x, keep, self.scale)

        def extra_repr(self) -> str:
            return f"p={self.p}"

    return CheapDropout


def _summed_loss(logits: Any, target: Any, weights: Any = None) -> tuple[Any, Any, int]:
    """Sum of the token cross-entropies (float32), the same sum weighted by ``weights`` (the sum itself without
    weights), and how many tokens greedy decoding gets right."""
    import torch.nn.functional as F

    logits = logits.float()
    hits = int((logits.detach().argmax(-1) == target).sum())
    if weights is None:
        loss = F.cross_entropy(logits, target, reduction="sum")
        return loss, loss, hits
    losses = F.cross_entropy(logits, target, reduction="none")
    return losses.sum(), (losses * weights).sum(), hits


def _labelled_logits(lm: CausalLM, batch: dict[str, torch.Tensor], share_prefix: bool) -> tuple[Any, Any, Any]:
    """``(logits, targets, keep)``: float32 logits at the positions whose next token has a label (the vocabulary
    projection runs there only; a shared prefix once), the labels they predict, and the ``(rows, length - 1)``
    mask of those positions."""
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE_INDEX
    if lm.decoder is not None:
        hidden = hidden_states(lm.decoder, batch["input_ids"], batch["attention_mask"], share_prefix)
        logits = lm.head(hidden[:, :-1][keep])
    else:
        out = lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
        logits = out.logits[:, :-1][keep]
    return logits.float(), labels[keep], keep


def token_loss(lm: CausalLM, batch: dict[str, torch.Tensor], share_prefix: bool = True) -> tuple[Any, int, int]:
    """``(loss, correct, count)``: mean cross-entropy over the tokens with a label, how many of them the model
    predicts right (greedy), and how many there are."""
    import torch.nn.functional as F

    logits, target, _ = _labelled_logits(lm, batch, share_prefix)
    loss = F.cross_entropy(logits, target)
    correct = int((logits.detach().argmax(-1) == target).sum())
    return loss, correct, int(target.numel())


def sequence_logps(lm: CausalLM, batch: dict[str, torch.Tensor], share_prefix: bool = True) -> Any:
    """The log-probability of each row's trained tokens, summed per row: a ``(rows,)`` float32 tensor (with the
    graph, unless called under ``no_grad``). A prefix the rows share (a DPO pair's prompt, the tool schemas) runs
    once, and logits are computed only where a label is, as for :func:`token_loss`."""
    import torch
    import torch.nn.functional as F

    logits, target, keep = _labelled_logits(lm, batch, share_prefix)
    token_logps = -F.cross_entropy(logits, target, reduction="none")
    rows = keep.nonzero()[:, 0]
    return torch.zeros(keep.shape[0], dtype=token_logps.dtype, device=token_logps.device).index_add(
        0, rows, token_logps
    )


@dataclass
class PreferenceLoss:
    """DPO's loss over a batch of pairs and what it shows: the implicit rewards ``beta * (log pi - log ref)`` of the
    preferred and the non-preferred outputs, their mean margin, and how often the preferred one wins."""

    loss: Any  # the mean of -log sigmoid(reward_preferred - reward_non_preferred), with its graph
    chosen_reward: float
    rejected_reward: float
    margin: float
    accuracy: float

    def metrics(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}_loss": float(self.loss.detach()),
            f"{prefix}_reward_margin": self.margin,
            f"{prefix}_reward_accuracy": self.accuracy,
            f"{prefix}_chosen_reward": self.chosen_reward,
            f"{prefix}_rejected_reward": self.rejected_reward,
        }


def preference_loss(policy: Any, reference: Any, beta: float) -> PreferenceLoss:
    """DPO (Rafailov et al., 2023) for ``policy`` and ``reference`` log-probabilities of ``2n`` rows: the ``n``
    preferred outputs, then the ``n`` non-preferred ones (the order :meth:`LoRARecipe` collates them in)."""
    import torch.nn.functional as F

    n = policy.shape[0] // 2
    rewards = beta * (policy - reference.to(policy.dtype))
    chosen, rejected = rewards[:n], rewards[n:]
    loss = -F.logsigmoid(chosen - rejected).mean()
    margin = (chosen - rejected).detach()
    return PreferenceLoss(
        loss, float(chosen.detach().mean()), float(rejected.detach().mean()), float(margin.mean()),
        float((margin > 0).float().mean()),
    )  # fmt: skip
