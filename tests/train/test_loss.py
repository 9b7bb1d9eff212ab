"""The loss shortcuts are exact: logits only where a label is, and a shared prefix run once per batch."""

from __future__ import annotations

import pytest
import torch

from tests.models import shared_smollm2_tokenizer
from tests.train import CALCULATOR_TRAIN, tiny_llama
from tracetune.train.data import collate, load_examples
from tracetune.train.loss import MIN_SHARED_PREFIX, CausalLM, shared_prefix_length, token_loss


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    return shared_smollm2_tokenizer(tmp_path_factory)


def test_shared_prefix_length():
    ids = torch.tensor([[1, 2, 3, 4, 5], [1, 2, 3, 9, 0], [1, 2, 3, 4, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 1, 0]])
    assert shared_prefix_length(ids, mask) == 3
    assert shared_prefix_length(ids[[0, 2]], mask[[0, 2]]) == 4  # padding never counts as shared
    assert shared_prefix_length(ids[:1], mask[:1]) == 4  # at least one column is left after the prefix


def test_shared_prefix_gives_the_same_loss_and_gradients(tokenizer):
    from peft import LoraConfig, get_peft_model

    examples = load_examples(CALCULATOR_TRAIN, tokenizer, context_length=8192)
    batch = collate(examples[:4], pad_id=2)
    assert shared_prefix_length(batch["input_ids"], batch["attention_mask"]) >= MIN_SHARED_PREFIX
    model = get_peft_model(tiny_llama(tokenizer.vocab_size), LoraConfig(r=4, target_modules=["q_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)  # B starts at zero: make the adapter matter
    model.eval()  # no dropout: both ways see the same function
    lm = CausalLM.of(model)
    assert lm.decoder is not None
    results = []
    for share in (False, True):
        model.zero_grad()
        loss, correct, count = token_loss(lm, batch, share_prefix=share)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((loss.detach(), correct, count, grads))
    (loss_a, correct_a, count_a, grads_a), (loss_b, correct_b, count_b, grads_b) = results
    assert count_a == count_b == sum(e.n_trainable for e in examples[:4])
    assert correct_a == correct_b
    torch.testing.assert_close(loss_b, loss_a)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-4, atol=1e-7)
    # and the full forward pass (all logits) agrees with the label-only shortcut
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    labels = batch["labels"][:, 1:]
    keep = labels != -100
    full = torch.nn.functional.cross_entropy(out.logits[:, :-1][keep], labels[keep])
    torch.testing.assert_close(full.detach(), loss_a)
