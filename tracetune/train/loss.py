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
"""

from __future__ import annotations

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
        cache = head.past_key_values
        if cache is not None and all(type(layer) is DynamicLayer for layer in getattr(cache, "layers", [None])):
            cache.batch_repeat_interleave(rows)
            tail = decoder(
                input_ids=input_ids[:, prefix:], attention_mask=attention_mask, past_key_values=cache, use_cache=True
            )
            return torch.cat([head[0].expand(rows, -1, -1), tail[0]], dim=1)
    return decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)[0]


def token_loss(lm: CausalLM, batch: dict[str, torch.Tensor], share_prefix: bool = True) -> tuple[Any, int, int]:
    """``(loss, correct, count)``: mean cross-entropy over the tokens with a label, how many of them the model
    predicts right (greedy), and how many there are."""
    import torch.nn.functional as F

    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE_INDEX
    if lm.decoder is not None:
        hidden = hidden_states(lm.decoder, batch["input_ids"], batch["attention_mask"], share_prefix)
        logits = lm.head(hidden[:, :-1][keep])
    else:
        out = lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
        logits = out.logits[:, :-1][keep]
    target = labels[keep]
    logits = logits.float()
    loss = F.cross_entropy(logits, target)
    correct = int((logits.detach().argmax(-1) == target).sum())
    return loss, correct, int(target.numel())
