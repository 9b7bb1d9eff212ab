"""The transformers engine on a tiny random Llama: what it decodes, batching, stops, aborts, constraints."""

from __future__ import annotations

import queue
import threading
import time

import pytest
import torch

from tests.serve.support import tiny_engine
from tests.train import tiny_llama
from tracetune.chat.format import parse_assistant, render_prompt
from tracetune.serve.engine.protocol import GenerationRequest, SamplingParams, SequenceEvent, generate

PROMPTS = [
    render_prompt([{"role": "user", "content": "What is 2+2?"}]),
    render_prompt([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour, please."}]),
    render_prompt([{"role": "user", "content": "hi"}]),
]


def req(tokenizer, prompt: str, n: int = 1, **params) -> GenerationRequest:
    settings = {"max_tokens": 12, "temperature": 0.9, "seed": 7, **params}
    return GenerationRequest(tokenizer.encode(prompt), SamplingParams(**settings), n=n)


def test_greedy_decoding_matches_transformers_generate(engine, tokenizer):
    ids = tokenizer.encode(PROMPTS[1])
    got = generate(engine, [GenerationRequest(ids, SamplingParams(max_tokens=16, temperature=0))])[0][0]
    model = tiny_llama(tokenizer.vocab_size)  # the engine's weights (it may hold adapters by now)
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False, pad_token_id=2, eos_token_id=None)
    want = out[0, len(ids) :].tolist()
    assert got.token_ids == want[: len(got.token_ids)]
    assert got.completion_tokens == len(got.token_ids) and got.prompt_tokens == len(ids)
    assert got.finish_reason == ("length" if len(got.token_ids) == 16 else "stop")


def test_seeded_sampling_is_repeatable_and_independent_of_the_batch(engine, tokenizer):
    alone = [generate(engine, [req(tokenizer, p)])[0][0].token_ids for p in PROMPTS]
    together = generate(engine, [req(tokenizer, p) for p in PROMPTS])  # different lengths: a left-padded batch
    assert [c[0].token_ids for c in together] == alone
    again = generate(engine, [req(tokenizer, PROMPTS[0], seed=8)])[0][0].token_ids
    assert again != alone[0]  # another seed, another sample


def test_n_choices_share_the_prompt_and_differ(engine, tokenizer):
    choices = generate(engine, [req(tokenizer, PROMPTS[0], n=3, max_tokens=10)])[0]
    assert [c.index for c in choices] == [0, 1, 2]
    assert len({tuple(c.token_ids) for c in choices}) == 3
    assert all(c.prompt_tokens == len(tokenizer.encode(PROMPTS[0])) for c in choices)
    first = generate(engine, [req(tokenizer, PROMPTS[0], max_tokens=10, seed=7)])[0][0]
    assert choices[0].token_ids == first.token_ids  # choice 0 uses the seed, choice i seed + i


def test_requests_arriving_together_are_decoded_in_one_batch(tokenizer):
    eng = tiny_engine(tokenizer)
    try:
        requests = [req(tokenizer, PROMPTS[i % 3], max_tokens=20, seed=i) for i in range(6)]
        results = generate(eng, requests)
        assert all(r[0].completion_tokens == 20 for r in results)
        assert eng.max_rows_seen >= 4
        assert eng.steps < 6 * 19  # fewer forward passes than one request after another
    finally:
        eng.close()


def test_max_tokens_and_stop_strings(engine, tokenizer):
    full = generate(engine, [req(tokenizer, PROMPTS[2], max_tokens=30, seed=3)])[0][0]
    assert full.finish_reason == "length" and full.completion_tokens == 30
    stop = full.text[10:14]
    assert stop.strip(), full.text
    cut = generate(engine, [req(tokenizer, PROMPTS[2], max_tokens=30, seed=3, stop=(stop,))])[0][0]
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.index(stop)]


def test_abort_stops_a_request_and_frees_its_row(tokenizer):
    eng = tiny_engine(tokenizer)
    events: queue.SimpleQueue[SequenceEvent] = queue.SimpleQueue()
    try:
        request = req(tokenizer, PROMPTS[0], max_tokens=900)
        eng.submit(request, events.put)
        events.get(timeout=30)
        eng.abort(request.request_id)
        deadline = time.time() + 10
        while eng.running and time.time() < deadline:
            time.sleep(0.01)
        assert eng.running == 0
        seen = 0
        while not events.empty():
            seen += 1
            assert not events.get().done
        assert seen < 800
    finally:
        eng.close()


def test_close_ends_running_requests_with_an_error(tokenizer):
    eng = tiny_engine(tokenizer)
    events: queue.SimpleQueue[SequenceEvent] = queue.SimpleQueue()
    eng.submit(req(tokenizer, PROMPTS[0], max_tokens=900), events.put)
    events.get(timeout=30)
    eng.close()
    last = events.get(timeout=5)
    while not last.done:
        last = events.get(timeout=5)
    assert last.error is not None and "closed" in str(last.error)


def test_prompt_over_the_context_is_refused(engine, tokenizer):
    from tracetune.errors import InvalidInput

    with pytest.raises(InvalidInput) as err:
        engine.submit(GenerationRequest([1] * 1024, SamplingParams(max_tokens=1)), lambda e: None)
    assert err.value.code == "context_length_exceeded"


class ForcedTokens:
    """A constraint (the interface of ``tracetune.serve.constrain``) that allows exactly ``ids`` then eos."""

    def __init__(self, ids: list[int], eos: int) -> None:
        self.ids, self.eos = ids, eos

    def start(self) -> ForcedState:
        return ForcedState([*self.ids, self.eos])


class ForcedState:
    def __init__(self, ids: list[int]) -> None:
        self.ids, self.pos = ids, 0

    def mask_logits(self, logits: torch.Tensor) -> None:
        keep = logits[self.ids[self.pos]].clone()
        logits.fill_(float("-inf"))
        logits[self.ids[self.pos]] = keep

    def advance(self, token_id: int) -> None:
        assert token_id == self.ids[self.pos]
        self.pos += 1

    def is_accepting(self) -> bool:
        return self.pos >= len(self.ids) - 1

    def is_finished(self) -> bool:
        return self.pos >= len(self.ids) - 1


def test_a_constraint_is_applied_per_row(engine, tokenizer):
    forced = tokenizer.encode('{"answer": 4}')
    constrained = req(tokenizer, PROMPTS[0], max_tokens=50)
    constrained.constraint = ForcedTokens(forced, tokenizer.eos_token_id)  # type: ignore[assignment]
    free = req(tokenizer, PROMPTS[1], max_tokens=8)
    got, other = generate(engine, [constrained, free])
    assert got[0].text == '{"answer": 4}' and got[0].finish_reason == "stop"
    assert got[0].token_ids == forced  # stopped when nothing but the end could follow
    assert other[0].token_ids == generate(engine, [req(tokenizer, PROMPTS[1], max_tokens=8)])[0][0].token_ids


def test_a_forced_tool_call_parses_even_from_a_random_model(engine, tokenizer):
    from tracetune.serve.constrain import constraint_for_request
    from tracetune.serve.engine.grammar import compile_constraint

    tool = {
        "type": "function",
        "function": {
            "name": "set_unit",
            "parameters": {
                "type": "object",
                "properties": {"unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                "required": ["unit"],
            },
        },
    }
    spec = constraint_for_request(tools=[tool], tool_choice={"type": "function", "function": {"name": "set_unit"}})
    assert spec is not None
    request = req(tokenizer, render_prompt([{"role": "user", "content": "x"}], tools=[tool]), n=2, max_tokens=60)
    request.constraint = compile_constraint(tokenizer, spec)
    for choice in generate(engine, [request])[0]:
        parsed = parse_assistant(choice.text)
        assert choice.finish_reason == "stop" and not parsed["errors"] and parsed["content"] is None
        (call,) = parsed["tool_calls"]
        assert call["function"]["name"] == "set_unit"
        assert call["function"]["arguments"] in ('{"unit":"celsius"}', '{"unit":"fahrenheit"}')


def test_submit_never_blocks_on_inference(tokenizer):
    eng = tiny_engine(tokenizer)
    try:
        done = threading.Event()
        eng.submit(req(tokenizer, PROMPTS[0], max_tokens=200), lambda e: done.set() if e.done else None)
        started = time.perf_counter()
        eng.submit(req(tokenizer, PROMPTS[1], max_tokens=1), lambda e: None)
        assert time.perf_counter() - started < 0.05
        assert done.wait(60)
    finally:
        eng.close()


def test_a_shared_prompt_prefix_is_computed_once(tokenizer):

    tools = [{"type": "function", "function": {"name": "Calculator", "description": "Apply one operation " * 8}}]
    questions = ["What's 128 + 64?", "Add 3400 and 725."]
    prompts = [render_prompt([{"role": "user", "content": q}], tools=tools) for q in questions]
    cold = tiny_engine(tokenizer, prefix_cache_entries=0)
    warm = tiny_engine(tokenizer)
    try:
        want = [generate(cold, [req(tokenizer, p, max_tokens=8)])[0][0].token_ids for p in prompts]
        got = [generate(warm, [req(tokenizer, p, max_tokens=8)])[0][0].token_ids for p in prompts]
        assert got == want  # the same tokens with the shared prefix taken from the cache
        assert cold.prefix_cache.hits == 0 and warm.prefix_cache.hits == 1
        shared = len(tokenizer.encode(prompts[0].split("What's")[0]))
        assert shared - 2 <= warm.prefix_cache.reused_tokens <= shared + 1
        again = generate(warm, [req(tokenizer, prompts[1], max_tokens=8)])[0][0].token_ids
        assert again == want[1] and warm.prefix_cache.hits == 2
    finally:
        cold.close()
        warm.close()


def test_prefix_cache_keeps_recent_prompts_per_adapter():
    from tracetune.serve.engine.prefix_cache import PrefixCache

    layer = [(torch.zeros(1, 1, 40, 2), torch.zeros(1, 1, 40, 2))]
    cache = PrefixCache(max_entries=2, min_tokens=4)
    ids = list(range(40))
    cache.store("a", ids, layer)
    assert cache.lookup("b", ids) == (0, None)  # another adapter's keys differ
    m, past = cache.lookup("a", ids)
    assert m == 39 and past is not None and past[0][0].shape == (1, 1, 39, 2)  # one token left to run
    assert cache.lookup("a", [*ids[:10], 999])[0] == 10
    assert cache.lookup("a", [5, *ids])[0] == 0
    cache.store("a", [*ids, 40, 41], layer)  # extends the first: replaces it
    assert len(cache) == 1
    cache.store("c", [7] * 10, layer)
    cache.store("d", [8] * 10, layer)
    assert len(cache) == 2 and cache.lookup("a", ids) == (0, None)  # least recently used went first
    cache.drop_adapter("c")
    assert len(cache) == 1


def test_jump_forward_takes_forced_tokens_without_a_step_each(tokenizer):
    from tracetune.serve.constrain import constraint_for_request
    from tracetune.serve.engine.grammar import compile_constraint

    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    "city": {"type": "string"},
                },
                "required": ["unit", "city"],
            },
        },
    }
    spec = constraint_for_request(tools=[tool], tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert spec is not None
    constraint = compile_constraint(tokenizer, spec)
    prompt = render_prompt([{"role": "user", "content": "weather?"}], tools=[tool])
    results = {}
    for jump in (False, True):
        eng = tiny_engine(tokenizer, jump_forward=jump)
        try:
            request = req(tokenizer, prompt, max_tokens=40, seed=2)
            request.constraint = constraint
            results[jump] = (generate(eng, [request])[0][0], eng.steps, eng.forced_tokens)
        finally:
            eng.close()
    (slow, slow_steps, none), (fast, fast_steps, forced) = results[False], results[True]
    assert fast.token_ids == slow.token_ids and fast.text == slow.text and fast.finish_reason == slow.finish_reason
    assert slow.text.startswith('<tool_call>{"name": "get_weather", "arguments": {"unit": "')
    assert none == 0 and forced >= 10 and fast_steps <= slow_steps - forced + 1
