"""The llama.cpp engine, the CPU default: the base model's GGUF as it ships (quantized), fine-tuned models as GGUF
LoRA adapters applied per request, continuous batching in llama.cpp's own server loop.

llama.cpp's server (``xllamacpp``'s prebuilt wheels: its slots, continuous batching, prompt cache, samplers and
llguidance-constrained decoding) runs in a child process (:mod:`~tracetune.serve.engine.llamacpp_process`),
driven with its completion API on token ids: we render and tokenize the prompt ourselves (``chat.format``,
byte-identical to training), and a forced tool call or JSON schema is our own llguidance grammar
(``serve.constrain``) handed over as ``%llguidance``. Each choice of a request is one completion streamed to the
request's callback from a worker thread. When the process dies, the requests it was serving get a 503
(:class:`~tracetune.serve.engine.llamacpp_process.EngineCrashed`) and a new process with the same adapters is
started at once.

Adapters: llama.cpp's server takes its LoRA adapters when it starts and picks them per request by index. When a
request names an adapter that the running server lacks, a new server is started with it (the model file is
mmapped: ~1 s for SmolLM2), new requests go there, and the old server ends when its last request does. Up to
``max_adapters`` adapters, least recently used dropped first. A PEFT adapter is converted to GGUF once
(:mod:`tracetune.models.lora_gguf`; the job runner does it when a job succeeds).
"""

from __future__ import annotations

import logging
import random
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracetune.models.engines import LLAMACPP_INSTALL_HINT, llamacpp_available
from tracetune.serve.engine.llamacpp_process import EngineCrashed, EngineError, LlamaProcess, ProcessSettings
from tracetune.serve.engine.protocol import (
    EngineClosed,
    EventSink,
    FinishReason,
    GenerationRequest,
    SequenceEvent,
    check_request,
)

if TYPE_CHECKING:
    from tracetune.models.tokenizer import ModelTokenizer

log = logging.getLogger(__name__)

__all__ = ["EngineCrashed", "EngineError", "LlamaCppEngine"]


class _Server:
    """One llama.cpp server process with a fixed list of adapters, its slots, and the requests running on it.

    Every choice is pinned to a slot (``id_slot``) that this class hands out, and a slot's cached prompt is reused
    only by a choice of the same adapter: llama.cpp reuses a slot's prompt cache whatever adapter computed it
    (ggml-org/llama.cpp#26207), so a slot that changes adapter starts with ``cache_prompt`` off."""

    def __init__(self, process: LlamaProcess | None, adapters: tuple[str, ...], slots: int) -> None:
        self.process = process
        self.adapters = adapters
        self.running = 0
        self.retired = False
        self._owners: list[str | bool | None] = [False] * slots  # the adapter whose prompt each slot holds
        self._busy = [False] * slots
        self._prompts: list[list[int]] = [[] for _ in range(slots)]  # the prompt each slot computed last
        self._free = threading.Condition()

    def lora_for(self, gguf: str | None) -> list[dict[str, Any]] | None:
        if gguf is None:
            return None
        return [{"id": self.adapters.index(gguf), "scale": 1.0}]

    def take_slot(self, gguf: str | None, prompt: list[int]) -> tuple[int, bool]:
        """A free slot for a choice through ``gguf`` (waiting for one), and whether its cached prompt may be used:
        of the idle slots of the same adapter, the one whose last prompt shares the longest start with ``prompt``
        (the system prompt and tool schemas an app sends every time are then not computed again)."""
        with self._free:
            while True:
                idle = [i for i, busy in enumerate(self._busy) if not busy]
                if idle:
                    same = [i for i in idle if self._owners[i] == gguf]
                    if same:
                        slot = max(same, key=lambda i: _shared_start(self._prompts[i], prompt))
                    else:  # another adapter's slot: prefer one that holds nothing worth keeping
                        slot = min(idle, key=lambda i: len(self._prompts[i]))
                    self._busy[slot], self._owners[slot] = True, gguf
                    self._prompts[slot] = prompt
                    return slot, bool(same)
                self._free.wait()

    def give_slot(self, slot: int) -> None:
        with self._free:
            self._busy[slot] = False
            self._free.notify()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.alive

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.stop()


class LlamaCppEngine:
    """:class:`~tracetune.serve.engine.protocol.Engine` on llama.cpp over a GGUF base model."""

    def __init__(
        self,
        gguf_path: Path,
        tokenizer: ModelTokenizer,
        *,
        model_id: str,
        context_length: int,
        chat_template: str = "chatml",
        slots: int = 8,
        threads: int = 1,
        max_adapters: int = 8,
        prompt_cache: bool = True,
    ) -> None:
        if not llamacpp_available():
            raise EngineError(f"the llama.cpp engine is not installed: {LLAMACPP_INSTALL_HINT}")
        self.model_id = model_id
        self.context_length = context_length
        self.chat_template = chat_template
        self.tokenizer = tokenizer
        self.gguf_path = Path(gguf_path)
        self.slots = slots
        self.threads = threads
        self.max_adapters = max_adapters
        self.prompt_cache = prompt_cache  # reuse a slot's computed prompt start (off: every prompt computed whole)
        self.engine_name = "llama.cpp"
        self._lock = threading.Lock()
        self._swap = threading.Lock()  # one server start at a time
        self._recent: OrderedDict[str, None] = OrderedDict()  # adapter GGUFs, least recently used first
        self._aborted: set[str] = set()
        self._live: set[str] = set()
        self._closing = False
        self._workers: set[threading.Thread] = set()
        self._server = self._start(())

    @classmethod
    def load(cls, home: Path, model_id: str, weights: str = "q8_0", **options: Any) -> LlamaCppEngine:
        """The engine of base model ``model_id`` (a GGUF base: the built-in one or one registered by path);
        ``weights``: ``q8_0`` (a Q4_1 file re-quantized once, :mod:`tracetune.models.gguf_quant`) or
        ``as-shipped``."""
        from tracetune.models.gguf_quant import llamacpp_weights
        from tracetune.models.registry import resolve
        from tracetune.models.tokenizer import load_tokenizer

        spec = resolve(home, model_id)
        if spec.gguf_file is None:
            raise EngineError(f"{model_id} is a Hugging Face directory; llama.cpp serves GGUF files")
        return cls(
            llamacpp_weights(home, spec) if weights == "q8_0" else spec.weights_path,
            load_tokenizer(home, model_id),
            model_id=model_id,
            context_length=spec.context_length,
            chat_template=spec.chat_template,
            **options,
        )

    # -- the Engine interface ----------------------------------------------------------------------------------

    def submit(self, request: GenerationRequest, on_event: EventSink) -> None:
        check_request(request, self.context_length)
        with self._lock:
            if self._closing:
                raise EngineClosed(f"the engine of {self.model_id} is closed")
            self._live.add(request.request_id)
        self._spawn(self._serve, request, on_event)

    def abort(self, request_id: str) -> None:
        with self._lock:
            if request_id in self._live:
                self._aborted.add(request_id)

    def close(self) -> None:
        with self._lock:
            self._closing = True  # running streams stop at their next token
            workers = list(self._workers)
        for worker in workers:
            if worker is not threading.current_thread():
                worker.join(timeout=30)
        with self._lock:
            server, self._server = self._server, None  # type: ignore[assignment]
        if server is not None:
            server.stop()

    @property
    def loaded_adapters(self) -> list[str]:
        """The adapter GGUF files of the running server."""
        return list(self._server.adapters) if self._server is not None else []

    def _spawn(self, target: Any, *args: Any) -> threading.Thread:
        """A thread per running choice: the binding blocks while it streams (llama.cpp queues past its slots)."""

        def run() -> None:
            try:
                target(*args)
            finally:
                with self._lock:
                    self._workers.discard(worker)

        worker = threading.Thread(target=run, name=f"tracetune-llama-{self.model_id}", daemon=True)
        with self._lock:
            self._workers.add(worker)
        worker.start()
        return worker

    # -- one request -------------------------------------------------------------------------------------------

    def _serve(self, request: GenerationRequest, sink: EventSink) -> None:
        try:
            gguf = self._adapter_gguf(request.adapter_dir)
            server = self._acquire(gguf)
        except Exception as exc:  # the adapter cannot be converted or loaded: this request fails, others go on
            log.warning("request %s: %s", request.request_id, exc)
            error = exc if isinstance(exc, EngineError) else EngineError(f"cannot serve this model on llama.cpp: {exc}")
            for i in range(request.n):
                sink(SequenceEvent(i, "", (), error=error))
            return
        try:
            if request.n == 1:
                self._choice(server, gguf, request, 0, sink)
            else:  # the choices run side by side in llama.cpp's slots
                others = [self._spawn(self._choice, server, gguf, request, i, sink) for i in range(1, request.n)]
                self._choice(server, gguf, request, 0, sink)
                for other in others:
                    other.join()
        finally:
            self._release(server)
            with self._lock:
                self._live.discard(request.request_id)
                self._aborted.discard(request.request_id)

    def _choice(
        self, server: _Server, gguf: str | None, request: GenerationRequest, index: int, sink: EventSink
    ) -> None:
        slot, reuse = server.take_slot(gguf, request.prompt_ids)
        try:
            self._stream(server, gguf, request, index, sink, slot, reuse)
        finally:
            server.give_slot(slot)

    def _stream(
        self,
        server: _Server,
        gguf: str | None,
        request: GenerationRequest,
        index: int,
        sink: EventSink,
        slot: int,
        reuse: bool,
    ) -> None:
        if request.request_id in self._aborted or self._closing:
            return
        body = self._body(server, gguf, request, index)
        # a seeded choice computes its whole prompt: a cached prefix would change the floating-point sums of the
        # last prompt position (a batch of one token, not of the whole prompt), and so what the seed samples
        body["id_slot"] = slot
        body["cache_prompt"] = reuse and self.prompt_cache and request.params.seed is None
        finished = False

        def on_chunk(chunk: dict[str, Any]) -> bool:
            nonlocal finished
            if request.request_id in self._aborted or self._closing:
                finished = True
                return True  # stop streaming: llama.cpp cancels the task
            event = _event(index, chunk)
            if event.done:
                finished = True
            sink(event)
            return event.done

        try:
            if server.process is None:
                raise EngineClosed(f"the engine of {self.model_id} is closed")
            server.process.complete(body, on_chunk)
        except Exception as exc:
            if not isinstance(exc, EngineError | EngineClosed):
                log.exception("llama.cpp failed request %s", request.request_id)
                exc = EngineError(f"llama.cpp failed: {exc}")
            if not finished:
                finished = True
                sink(SequenceEvent(index, "", (), error=exc))
        if not finished and request.request_id not in self._aborted:
            sink(SequenceEvent(index, "", (), error=EngineClosed("llama.cpp ended the stream without a finish")))

    def _body(self, server: _Server, gguf: str | None, request: GenerationRequest, index: int) -> dict[str, Any]:
        params = request.params
        seed = params.seed + index if params.seed is not None else random.getrandbits(31)
        body: dict[str, Any] = {
            "prompt": list(request.prompt_ids),
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            # OpenAI's sampling, nothing of llama.cpp's defaults (top-k 40, min-p 0.05, penalties); top-p only
            # where it can change the draw: it sorts the whole vocabulary for each token of each sequence, which
            # costs a quarter of the throughput of 8 concurrent requests
            "samplers": ["top_p", "temperature"] if params.temperature > 0 and params.top_p < 1 else ["temperature"],
            "top_k": 0,
            "min_p": 0.0,
            "repeat_penalty": 1.0,
            "seed": seed,
            "stop": list(params.stop),
            "ignore_eos": params.ignore_eos,
            "return_tokens": True,  # the sampled token ids (logprobs would compute a softmax per token)
            "stream": True,
        }
        lora = server.lora_for(gguf)
        if lora is not None:
            body["lora"] = lora
        if request.constraint is not None:
            body["grammar"] = "%llguidance {}\n" + request.constraint.spec.grammar
        return body

    # -- servers and adapters ----------------------------------------------------------------------------------

    def _adapter_gguf(self, adapter_dir: str | None) -> str | None:
        if adapter_dir is None:
            return None
        from tracetune.models.lora_gguf import ensure_gguf_adapter

        return str(ensure_gguf_adapter(Path(adapter_dir), self.gguf_path).resolve())

    def _acquire(self, gguf: str | None) -> _Server:
        with self._lock:
            if self._closing:
                raise EngineClosed(f"the engine of {self.model_id} is closed")
            server = self._server
            if gguf is not None:
                self._recent[gguf] = None
                self._recent.move_to_end(gguf)
            if server.alive and (gguf is None or gguf in server.adapters):
                server.running += 1
                return server
        with self._swap:
            with self._lock:
                server = self._server
                if server.alive and (gguf is None or gguf in server.adapters):  # started meanwhile
                    server.running += 1
                    return server
                wanted = [a for a in self._recent if a in server.adapters or a == gguf][-self.max_adapters :]
            fresh = self._start(tuple(wanted))
            with self._lock:
                self._install(fresh)
                fresh.running += 1
                for stale in [a for a in self._recent if a not in fresh.adapters]:
                    del self._recent[stale]
            return fresh

    def _install(self, fresh: _Server) -> None:
        """Make ``fresh`` the server new requests go to (under ``_lock``); the old one ends with its last request."""
        old, self._server = self._server, fresh
        old.retired = True
        if old.running == 0:
            old.stop()

    def _release(self, server: _Server) -> None:
        with self._lock:
            server.running -= 1
            if server.retired and server.running == 0:
                server.stop()  # the last request on a replaced server: free it

    def _on_exit(self, process: LlamaProcess) -> None:
        self._spawn(self._restart, process)

    def _restart(self, process: LlamaProcess) -> None:
        """The process of the current server died: start another with the same adapters now, so that the next
        request does not wait for it (a failure to start is left to that request, which tries again)."""
        with self._swap:
            with self._lock:
                dead = self._server
                if self._closing or dead is None or dead.process is not process:
                    return
            try:
                fresh = self._start(dead.adapters)
            except EngineError:
                log.exception("could not restart llama.cpp for %s", self.model_id)
                return
            with self._lock:
                if self._closing:
                    fresh.stop()
                    return
                self._install(fresh)

    def _start(self, adapters: tuple[str, ...]) -> _Server:
        log.info(
            "starting llama.cpp on %s (%d slots, %d threads, %d adapters)",
            self.gguf_path.name,
            self.slots,
            self.threads,
            len(adapters),
        )
        settings: ProcessSettings = {
            "model": str(self.gguf_path),
            "adapters": list(adapters),
            "context_length": self.context_length,
            "slots": self.slots,
            "threads": self.threads,
        }
        try:
            process = LlamaProcess(settings, on_exit=self._on_exit)
        except EngineError as exc:
            names = ", ".join(Path(a).parent.name for a in adapters) or "none"
            raise EngineError(f"{exc} (model {self.gguf_path}, adapters [{names}])") from exc
        return _Server(process, adapters, self.slots)


def _shared_start(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


_FINISH: dict[str, FinishReason] = {"limit": "length", "eos": "stop", "word": "stop"}


def _event(index: int, chunk: dict[str, Any]) -> SequenceEvent:
    """One streamed chunk of llama.cpp's ``/completion`` (or an error object) as a :class:`SequenceEvent`: the text
    (held back while it may still become a stop string), the token ids, and on the last chunk the finish reason and
    the usage."""
    error = chunk.get("error")
    if error is not None or "content" not in chunk:
        message = error.get("message") if isinstance(error, dict) else chunk.get("message", chunk)
        return SequenceEvent(index, "", (), error=EngineError(f"llama.cpp: {message}"))
    done = bool(chunk.get("stop"))
    return SequenceEvent(
        index,
        chunk["content"],
        tuple(chunk.get("tokens") or ()),
        finish_reason=_FINISH.get(chunk.get("stop_type", ""), "stop") if done else None,
        prompt_tokens=int(chunk.get("tokens_evaluated", 0)),
        completion_tokens=int(chunk.get("tokens_predicted", 0)),
    )
