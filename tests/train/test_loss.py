"""The loss shortcuts are exact: logits only where a label is, and a shared prefix run once per batch."""

from __future__ import annotations

import pytest
import torch

from tests.models import shared_smollm2_tokenizer
from tests.train import CALCULATOR_TRAIN, tiny_llama
from tracetune.train.data import collate, load_examples
from tracetune.train.loss import (
    MIN_SHARED_PREFIX,
    CausalLM,
    shared_prefix_length,
    token_loss,
    token_loss_backward,
)


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    return shared_smollm2_tokenizer(tmp_path_factory)


def test_shared_prefix_length():
    ids = torch.tensor([[1, 2, 3, 4, 5], [1, 2, 3, 9, 0], [1, 2, 3, 4, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 1, 0]])
    assert shared_prefix_length(ids, mask) == 3
    assert shared_prefix_length(ids[[0, 2]], mask[[0, 2]]) == 4  # padding never counts as shared
    assert shared_prefix_length(ids[:1], mask[:1]) == 4  # at least one column is left after the prefix


def lora_model(vocab_size: int, dropout: float = 0.0):
    from peft import LoraConfig, get_peft_model

    from tracetune.models.compat import peft_wrapping

    config = LoraConfig(r=4, lora_dropout=dropout, target_modules=["q_proj", "v_proj", "down_proj"])
    with peft_wrapping():
        model = get_peft_model(tiny_llama(vocab_size), config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)  # B starts at zero: make the adapter matter
    return model


def test_shared_prefix_gives_the_same_loss_and_gradients(tokenizer):
    examples = load_examples(CALCULATOR_TRAIN, tokenizer, context_length=8192)
    batch = collate(examples[:4], pad_id=2)
    assert shared_prefix_length(batch["input_ids"], batch["attention_mask"]) >= MIN_SHARED_PREFIX
    model = lora_model(tokenizer.vocab_size)
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


def grads_of(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(
    ("share", "rows_per_pass", "recompute"),
    [(False, 1, False), (True, None, False), (True, 1, False), (True, 3, True), (True, 1, True)],
)
def test_row_passes_and_recomputed_prefix_give_the_same_loss_and_gradients(tokenizer, share, rows_per_pass, recompute):
    examples = load_examples(CALCULATOR_TRAIN, tokenizer, context_length=8192)
    batch = collate(examples[:4], pad_id=2)
    model = lora_model(tokenizer.vocab_size)
    model.eval()  # no dropout: every way computes the same function
    lm = CausalLM.of(model)
    loss, correct, count = token_loss(lm, batch, share_prefix=False)
    loss.backward()
    want = grads_of(model)
    model.zero_grad()
    got_loss, got_correct, got_count = token_loss_backward(lm, batch, share, rows_per_pass, recompute)
    assert (got_correct, got_count) == (correct, count)
    assert got_loss == pytest.approx(float(loss.detach()), rel=1e-5)
    got = grads_of(model)
    for name, grad in want.items():
        torch.testing.assert_close(got[name], grad, rtol=1e-4, atol=1e-7)
    assert all(type(layer).forward is layer.forward.__func__ for layer in lm.decoder.layers)  # no patch left


def test_recomputed_prefix_draws_the_same_dropout_masks(tokenizer):
    """In training mode (LoRA dropout on) the recompute replays the RNG: the same gradients, the same RNG after."""
    examples = load_examples(CALCULATOR_TRAIN, tokenizer, context_length=8192)
    batch = collate(examples[:4], pad_id=2)
    model = lora_model(tokenizer.vocab_size, dropout=0.3)
    model.train()
    lm = CausalLM.of(model)
    results = []
    for recompute in (False, True):
        model.zero_grad()
        torch.manual_seed(7)
        loss, _, _ = token_loss_backward(lm, batch, True, 1, recompute)
        results.append((loss, grads_of(model), torch.get_rng_state()))
    (loss_a, grads_a, rng_a), (loss_b, grads_b, rng_b) = results
    assert loss_a == loss_b and torch.equal(rng_a, rng_b)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-5, atol=1e-8)


def test_cheap_dropout_drops_p_and_scales_the_rest():
    from tracetune.train.loss import cheap_dropout

    dropout = cheap_dropout(0.05)
    x = torch.ones(400, 1000, requires_grad=True)
    torch.manual_seed(3)
    y = dropout(x)
    kept = y != 0
    assert abs(1 - float(kept.float().mean()) - 0.05) < 0.002
    assert torch.allclose(y[kept], torch.tensor(1 / (1 - 0.05)), rtol=1e-4)
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient goes through the same mask, with the same scale
    torch.manual_seed(3)
    assert torch.equal(dropout(x), y)  # seeded: the same mask again
    assert not torch.equal(dropout(x), y)  # and a new one on the next draw
    dropout.eval()
    assert dropout(x) is x


def test_use_cheap_dropout_swaps_the_lora_dropouts_only(tokenizer):
    from tracetune.train.loss import use_cheap_dropout

    model = lora_model(tokenizer.vocab_size, dropout=0.1)
    assert use_cheap_dropout(model) == 2 * 3  # 2 layers, 3 target modules
    kinds = {type(d).__name__ for m in model.modules() if hasattr(m, "lora_dropout") for d in m.lora_dropout.values()}
    assert kinds == {"CheapDropout"}
    assert use_cheap_dropout(lora_model(tokenizer.vocab_size, dropout=0.0)) == 0  # Identity stays


@pytest.mark.parametrize(("share", "rows_per_pass"), [(False, None), (True, 1)])
def test_decision_weights_give_the_weighted_mean_gradient_and_report_the_plain_loss(tokenizer, share, rows_per_pass):
    examples = load_examples(CALCULATOR_TRAIN, tokenizer, context_length=8192, decision_weight=5.0)
    batch = collate(examples[:4], pad_id=2)
    weights, labels = batch["loss_weights"][:, 1:], batch["labels"][:, 1:]
    keep = labels != -100
    assert set(weights[keep].unique().tolist()) == {1.0, 5.0}  # argument values weigh 5, the rest of a call 1
    model = lora_model(tokenizer.vocab_size)
    model.eval()
    lm = CausalLM.of(model)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    losses = torch.nn.functional.cross_entropy(out.logits[:, :-1][keep], labels[keep], reduction="none")
    ((losses * weights[keep]).sum() / weights[keep].sum()).backward()
    want = grads_of(model)
    model.zero_grad()
    got_loss, _, count = token_loss_backward(lm, batch, share, rows_per_pass)
    assert got_loss == pytest.approx(float(losses.mean().detach()), rel=1e-5) and count == int(keep.sum())
    got = grads_of(model)
    for name, grad in want.items():
        torch.testing.assert_close(got[name], grad, rtol=1e-4, atol=1e-7)
