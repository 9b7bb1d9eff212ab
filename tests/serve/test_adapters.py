"""LoRA adapters written by the training recipe, served by the engine: hot-loaded on first use, mixed with the base
model and each other in one batch, evicted least-recently-used, identical to a PeftModel of the same adapter."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.serve.support import tiny_engine
from tests.train import CALCULATOR_TRAIN, read_jsonl, tiny_llama
from tracetune.chat.format import render_prompt
from tracetune.serve.engine.protocol import GenerationRequest, SamplingParams, generate
from tracetune.train.recipe import TrainConfig, run_training

RECORD = read_jsonl(CALCULATOR_TRAIN)[0]
PROMPT = render_prompt(RECORD["messages"][:-1], tools=RECORD.get("tools"))


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tokenizer) -> list[Path]:
    """Two adapters of the tiny model (seed 0 weights): one trained by the recipe, one random LoRA as PEFT saves
    it (the engine cannot tell them apart)."""
    from peft import LoraConfig, get_peft_model

    config = TrainConfig(
        training_file=str(CALCULATOR_TRAIN),
        output_dir=str(tmp_path_factory.mktemp("trained")),
        n_epochs=1,
        batch_size=8,
        learning_rate_multiplier=64,
        seed=0,
    )
    trained = run_training(config, None, base_model=tiny_llama(tokenizer.vocab_size), tokenizer=tokenizer)
    random_dir = tmp_path_factory.mktemp("random") / "adapter"
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    get_peft_model(tiny_llama(tokenizer.vocab_size), lora).save_pretrained(str(random_dir))
    return [Path(trained.adapter_dir), random_dir]


def greedy(tokenizer, adapter: Path | None, max_tokens: int = 12, temperature: float = 0) -> GenerationRequest:
    return GenerationRequest(
        tokenizer.encode(PROMPT),
        SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=5),
        adapter_dir=str(adapter) if adapter else None,
    )


def sampled(tokenizer, adapter: Path | None) -> GenerationRequest:
    return greedy(tokenizer, adapter, 12, 1.0)


def reference(tokenizer, adapter: Path, max_tokens: int = 12) -> list[int]:
    from peft import PeftModel

    model = PeftModel.from_pretrained(tiny_llama(tokenizer.vocab_size), str(adapter)).eval()
    ids = tokenizer.encode(PROMPT)
    with torch.inference_mode():
        out = model.generate(
            input_ids=torch.tensor([ids]), max_new_tokens=max_tokens, do_sample=False, pad_token_id=2, eos_token_id=None
        )
    return out[0, len(ids) :].tolist()  # type: ignore[no-any-return]


def test_adapters_and_base_in_one_batch_decode_as_they_do_alone(tokenizer, adapters):
    eng = tiny_engine(tokenizer)
    try:
        alone = [generate(eng, [greedy(tokenizer, a)])[0][0].token_ids for a in (None, *adapters)]
        assert alone[0] not in alone[1:]  # an adapter changes the model
        for adapter, tokens in zip(adapters, alone[1:], strict=True):
            want = reference(tokenizer, adapter)
            assert tokens == want[: len(tokens)]  # the same model PEFT makes of the saved adapter
        mixed = generate(eng, [greedy(tokenizer, a) for a in (adapters[1], None, adapters[0], adapters[1])])
        assert [m[0].token_ids for m in mixed] == [alone[2], alone[0], alone[1], alone[2]]
        assert eng.max_rows_seen >= 3
        assert eng.adapters.loaded == [str(adapters[0].resolve()), str(adapters[1].resolve())]
    finally:
        eng.close()


def test_mixed_adapter_forward_gives_each_adapter_s_own_logits(tokenizer, adapters):
    from peft import PeftModel

    from tracetune.serve.engine.adapters import BASE, AdapterSet

    models = AdapterSet(tiny_llama(tokenizer.vocab_size), capacity=4)
    names = [models.acquire(str(a)) for a in adapters]
    ids = torch.tensor([tokenizer.encode(PROMPT)] * 3)
    with torch.inference_mode():
        mixed = models.model(input_ids=ids, **models.forward_kwargs([names[1], BASE, names[0]])).logits
        base = tiny_llama(tokenizer.vocab_size)(input_ids=ids[:1]).logits[0]
        own = [
            PeftModel.from_pretrained(tiny_llama(tokenizer.vocab_size), str(a)).eval()(input_ids=ids[:1]).logits[0]
            for a in adapters
        ]
    torch.testing.assert_close(mixed[0], own[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mixed[1], base, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mixed[2], own[0], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(own[0], base) and not torch.allclose(own[0], own[1])


def test_least_recently_used_adapter_is_evicted_and_reloads_the_same(tokenizer, adapters):
    eng = tiny_engine(tokenizer, max_adapters=1)
    try:
        first = generate(eng, [sampled(tokenizer, adapters[0])])[0][0].token_ids
        generate(eng, [sampled(tokenizer, adapters[1])])
        assert eng.adapters.loaded == [str(adapters[1].resolve())]
        assert generate(eng, [sampled(tokenizer, adapters[0])])[0][0].token_ids == first
        assert eng.adapters.loaded == [str(adapters[0].resolve())]
        # both at once: the one running is held, so capacity is exceeded until it finishes
        both = generate(eng, [greedy(tokenizer, adapters[0], 12, 1.0), greedy(tokenizer, adapters[1], 30, 1.0)])
        assert both[0][0].token_ids == first
        assert len(eng.adapters.loaded) == 1
    finally:
        eng.close()


def test_a_missing_adapter_fails_only_its_request(tokenizer, tmp_path):
    eng = tiny_engine(tokenizer)
    try:
        with pytest.raises(Exception, match=r"adapter_config\.json|Can't find|does not"):
            generate(eng, [greedy(tokenizer, tmp_path / "nothing-here")])
        assert generate(eng, [greedy(tokenizer, None, 3)])[0][0].completion_tokens == 3
    finally:
        eng.close()
