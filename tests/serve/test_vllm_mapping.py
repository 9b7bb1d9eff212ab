"""The vLLM engine's mapping, without vLLM (no GPU here): our request → vLLM's ``SamplingParams`` fields, prompt as
token ids, grammar for its llguidance backend, adapter ids; vLLM's ``RequestOutput`` deltas → our events. The
response objects below mirror vLLM's ``RequestOutput`` / ``CompletionOutput`` fields (vllm/outputs.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tracetune.errors import Unavailable
from tracetune.models import DEFAULT_MODEL_ID, ModelTokenizer
from tracetune.serve.engine.protocol import GenerationRequest, SamplingParams
from tracetune.serve.engine.vllm import AdapterIds, events_from_output, sampling_options


@dataclass
class CompletionOutput:  # vllm.outputs.CompletionOutput
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None = None
    logprobs: Any = None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:  # vllm.outputs.RequestOutput
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    prompt_logprobs: Any
    outputs: list[CompletionOutput]
    finished: bool
    metrics: Any = None
    lora_request: Any = None
    kv_transfer_params: dict[str, Any] = field(default_factory=dict)


def test_sampling_options_are_openai_sampling_in_deltas() -> None:
    request = GenerationRequest(
        [1, 2, 3], SamplingParams(max_tokens=32, temperature=0.7, top_p=0.9, seed=5, stop=("\n\n",)), n=2
    )
    assert sampling_options(request) == {
        "n": 2, "max_tokens": 32, "temperature": 0.7, "top_p": 0.9, "seed": 5, "stop": ["\n\n"],
        "ignore_eos": False, "include_stop_str_in_output": False, "skip_special_tokens": True, "output_kind": "DELTA",
    }  # fmt: skip


def test_a_constraint_goes_to_vllm_as_our_llguidance_grammar(tokenizer: ModelTokenizer) -> None:
    from tracetune.serve.constrain import constraint_for_request
    from tracetune.serve.engine.grammar import compile_constraint

    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    spec = constraint_for_request(tools=[tool], tool_choice="required")
    assert spec is not None
    request = GenerationRequest([1], SamplingParams(max_tokens=8), constraint=compile_constraint(tokenizer, spec))
    grammar = sampling_options(request)["structured_outputs"]["grammar"]
    assert grammar == "%llguidance {}\n" + spec.grammar


def test_adapter_ids_are_stable_per_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = AdapterIds()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = ids.of(str(tmp_path / "a"))
    monkeypatch.chdir(tmp_path)
    assert ids.of("a") == first  # the same directory, spelled relatively
    name, number, path = ids.of(str(tmp_path / "b"))
    assert number != first[1] and name != first[0] and path == str((tmp_path / "b").resolve())


def test_request_outputs_become_events_per_choice() -> None:
    produced: dict[int, int] = {}
    prompt = [1, 2, 3, 4]
    deltas = [CompletionOutput(0, "Hel", [10, 11]), CompletionOutput(1, "A", [7])]
    events = events_from_output(RequestOutput("r", None, prompt, None, deltas, finished=False), produced)
    assert [(e.index, e.text, e.token_ids, e.done) for e in events] == [
        (0, "Hel", (10, 11), False),
        (1, "A", (7,), False),
    ]
    last = RequestOutput("r", None, prompt, None, [
        CompletionOutput(0, "lo", [12], finish_reason="stop", stop_reason=2),
        CompletionOutput(1, "B", [8], finish_reason="length"),
    ], finished=True)  # fmt: skip
    events = events_from_output(last, produced)
    assert [(e.finish_reason, e.completion_tokens, e.prompt_tokens) for e in events] == [
        ("stop", 3, 4),
        ("length", 2, 4),
    ]


def test_an_aborted_choice_ends_with_an_error() -> None:
    out = RequestOutput("r", None, [1], None, [CompletionOutput(0, "", [], finish_reason="abort")], finished=True)
    (event,) = events_from_output(out, {})
    assert event.error is not None and event.done


def test_without_vllm_the_engine_says_what_to_install(tmp_path: Path) -> None:
    from tracetune.models.engines import choose_engine
    from tracetune.serve.engine.vllm import VLLMEngine

    with pytest.raises(Unavailable, match=r"tracetune\[vllm\]"):
        choose_engine(tmp_path, DEFAULT_MODEL_ID, "vllm")
    with pytest.raises(Unavailable, match=r"tracetune\[vllm\]"):
        VLLMEngine(tmp_path, None, model_id=DEFAULT_MODEL_ID, context_length=1024)
    assert choose_engine(tmp_path, DEFAULT_MODEL_ID).engine != "vllm"  # auto: no vLLM, no GPU here
