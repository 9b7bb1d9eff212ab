"""The vLLM engine, for GPUs: vLLM's ``AsyncLLM`` with LoRA enabled, our rendered prompt as token ids, our
llguidance grammar through vLLM's structured outputs (the ``guidance`` backend), adapters by path on first use.

Install with ``pip install 'tracetune[vllm]'`` on a CUDA machine (it brings its own CUDA torch). ``tracetune serve
--engine vllm`` uses it; ``auto`` picks it when vLLM is installed and CUDA is present. Every fine-tuned model is a
PEFT adapter directory in the data home; a request names it and vLLM loads it at that moment (``LoRARequest``,
an id per adapter path, ``max_loras`` resident on the GPU, the rest in vLLM's CPU LRU), so a replica serves a model
whose job succeeded anywhere as soon as the store says it exists: no restart, no preloading.

The mapping (:func:`sampling_options`, :func:`events_from_output`) is plain data in and out, unit-tested with
vLLM's request and response shapes; the engine only turns the options into vLLM's objects and runs vLLM's event
loop in a thread of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracetune.errors import Unavailable
from tracetune.models.engines import VLLM_INSTALL_HINT
from tracetune.serve.engine.protocol import (
    EngineClosed,
    EventSink,
    FinishReason,
    GenerationRequest,
    SequenceEvent,
    check_request,
)

log = logging.getLogger(__name__)

# -- the mapping (no vLLM needed) -------------------------------------------------------------------------------


def sampling_options(request: GenerationRequest) -> dict[str, Any]:
    """vLLM ``SamplingParams`` keyword arguments for ``request`` (``structured_outputs`` as a dict of
    ``StructuredOutputsParams`` fields; ``output_kind`` by name): deltas, OpenAI's sampling, our grammar."""
    params = request.params
    options: dict[str, Any] = {
        "n": request.n,
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "seed": params.seed,
        "stop": list(params.stop),
        "ignore_eos": params.ignore_eos,
        "include_stop_str_in_output": False,
        "skip_special_tokens": True,
        "output_kind": "DELTA",
    }
    if request.constraint is not None:
        options["structured_outputs"] = {"grammar": "%llguidance {}\n" + request.constraint.spec.grammar}
    return options


@dataclass
class AdapterIds:
    """vLLM's integer id per adapter directory (stable for the engine's life: vLLM caches adapters by id)."""

    _ids: dict[str, int] = field(default_factory=dict)
    _next: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, adapter_dir: str) -> tuple[str, int, str]:
        """``(lora_name, lora_int_id, lora_path)`` for ``LoRARequest``."""
        path = str(Path(adapter_dir).resolve())
        with self._lock:
            if path not in self._ids:
                self._ids[path] = next(self._next)
            number = self._ids[path]
        return f"adapter-{number}", number, path


def events_from_output(output: Any, produced: dict[int, int]) -> list[SequenceEvent]:
    """The :class:`SequenceEvent` of each choice in one vLLM ``RequestOutput`` (delta mode): ``outputs`` are
    ``CompletionOutput`` (``index``, ``text``, ``token_ids``, ``finish_reason``); ``produced`` counts each
    choice's tokens so far (updated). A choice vLLM aborted ends with an error."""
    prompt_tokens = len(getattr(output, "prompt_token_ids", None) or ())
    events = []
    for choice in output.outputs:
        produced[choice.index] = produced.get(choice.index, 0) + len(choice.token_ids)
        reason = choice.finish_reason
        if reason == "abort":
            events.append(SequenceEvent(choice.index, choice.text, tuple(choice.token_ids),
                                        error=EngineClosed("vLLM aborted the request")))  # fmt: skip
            continue
        finish: FinishReason | None = None
        if reason is not None:
            finish = "length" if reason == "length" else "stop"
        events.append(
            SequenceEvent(
                choice.index,
                choice.text,
                tuple(choice.token_ids),
                finish_reason=finish,
                prompt_tokens=prompt_tokens,
                completion_tokens=produced[choice.index],
            )
        )
    return events


# -- the engine -------------------------------------------------------------------------------------------------


class VLLMEngine:
    """:class:`~tracetune.serve.engine.protocol.Engine` on vLLM (a GPU; the model as a Hugging Face directory)."""

    engine_name = "vllm"

    def __init__(
        self,
        model_dir: Path,
        tokenizer: Any,
        *,
        model_id: str,
        context_length: int,
        chat_template: str = "chatml",
        max_loras: int = 8,
        max_lora_rank: int = 64,
        **engine_args: Any,
    ) -> None:
        try:
            from vllm import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:
            raise Unavailable(f"the vLLM engine is not installed: {VLLM_INSTALL_HINT}", field="model") from exc
        self.model_id = model_id
        self.context_length = context_length
        self.chat_template = chat_template
        self.tokenizer = tokenizer
        self.adapter_ids = AdapterIds()
        self._tasks: dict[str, concurrent.futures.Future[None]] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"tracetune-vllm-{model_id}", daemon=True)
        self._thread.start()
        args = AsyncEngineArgs(
            model=str(model_dir),
            max_model_len=context_length,
            enable_lora=True,
            max_loras=max_loras,
            max_lora_rank=max_lora_rank,
            structured_outputs_config={"backend": "guidance"},
            **engine_args,
        )
        self._llm = asyncio.run_coroutine_threadsafe(self._make(AsyncLLM, args), self._loop).result()

    @staticmethod
    async def _make(cls: Any, args: Any) -> Any:
        return cls.from_engine_args(args)

    @classmethod
    def load(cls, home: Path, model_id: str, threads: int | None = None, **options: Any) -> VLLMEngine:
        """The engine of base model ``model_id``: a Hugging Face directory as registered, or a GGUF model's
        de-quantized weights (``models.weights.cached_weights``)."""
        from tracetune.models.registry import resolve
        from tracetune.models.tokenizer import load_tokenizer
        from tracetune.models.weights import cached_weights

        spec = resolve(home, model_id)
        model_dir = cached_weights(home, spec) if spec.gguf_file else spec.path
        return cls(
            model_dir,
            load_tokenizer(home, model_id),
            model_id=model_id,
            context_length=spec.context_length,
            chat_template=spec.chat_template,
            **options,
        )

    def submit(self, request: GenerationRequest, on_event: EventSink) -> None:
        check_request(request, self.context_length)
        if self._loop.is_closed():
            raise EngineClosed(f"the engine of {self.model_id} is closed")
        future = asyncio.run_coroutine_threadsafe(self._generate(request, on_event), self._loop)
        self._tasks[request.request_id] = future
        future.add_done_callback(lambda _f: self._tasks.pop(request.request_id, None))

    def abort(self, request_id: str) -> None:
        if request_id in self._tasks and not self._loop.is_closed():
            asyncio.run_coroutine_threadsafe(self._llm.abort(request_id), self._loop)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._llm.shutdown()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    async def _generate(self, request: GenerationRequest, sink: EventSink) -> None:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        options = sampling_options(request)
        options["output_kind"] = RequestOutputKind[options["output_kind"]]
        if "structured_outputs" in options:
            options["structured_outputs"] = StructuredOutputsParams(**options["structured_outputs"])
        lora = LoRARequest(*self.adapter_ids.of(request.adapter_dir)) if request.adapter_dir else None
        produced: dict[int, int] = {}
        finished: set[int] = set()
        try:
            stream = self._llm.generate(
                TokensPrompt(prompt_token_ids=list(request.prompt_ids)),
                SamplingParams(**options),
                request.request_id,
                lora_request=lora,
            )
            async for output in stream:
                for event in events_from_output(output, produced):
                    if event.done:
                        finished.add(event.index)
                    sink(event)
        except Exception as exc:  # vLLM refused the request or its engine died: the request's choices end with it
            log.exception("vLLM failed request %s", request.request_id)
            error = Unavailable(f"vLLM failed: {exc}")
            for index in range(request.n):
                if index not in finished:
                    sink(SequenceEvent(index, "", (), error=error))
