"""The transformers engine: one base model (float32 on CPU, bfloat16 on CUDA), LoRA adapters over it, continuous
batching in a worker thread.

The worker loops: admit queued requests (up to ``max_batch_size`` rows and ``prefill_budget`` prompt tokens per
turn), prefill each one alone (its choices share that prefill and fork the cache; the part of the prompt that starts
like a recent prompt is taken from :class:`~.prefix_cache.PrefixCache`), sample their first tokens, merge
them into the running batch; then decode one token for every running row in a single forward pass over the
batch's KV cache (:class:`~tracetune.serve.engine.kv.BatchCache`), each row through its own adapter
(:class:`~tracetune.serve.engine.adapters.AdapterSet`), each row masked by its own constraint state, then sampled
(:mod:`~.sampling`). A row that finishes leaves the batch at once, and a request that arrives while
others decode joins at the next step: requests are batched as they come, not queued behind each other. A
constrained row decoding alone jumps forward: the tokens its grammar forces are run together in one pass. Inference
never runs on the caller's thread (the server's event loop); results go to each request's callback.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import DynamicCache

from tracetune.models.tokenizer import stop_token_ids
from tracetune.serve.engine.adapters import AdapterSet
from tracetune.serve.engine.kv import BatchCache, cache_layers
from tracetune.serve.engine.prefix_cache import PrefixCache
from tracetune.serve.engine.protocol import (
    EngineClosed,
    EventSink,
    FinishReason,
    GenerationRequest,
    SequenceEvent,
    check_request,
)
from tracetune.serve.engine.sampling import make_generator, sample_next
from tracetune.serve.engine.sequence import Choice
from tracetune.serve.text import TextTracker

if TYPE_CHECKING:
    from tracetune.models.tokenizer import ModelTokenizer

log = logging.getLogger(__name__)

# llguidance (the constraint library) computes token masks on a rayon thread pool, whose idle workers spin and take
# the cores from torch's decode step: measured +40% per constrained token on 2 cores, against -9% (noise) with one
# rayon thread; one mask per row and step takes ~0.3 ms on one thread. The pool reads this when it starts, which is
# after an engine exists (constraints are compiled for an engine's tokenizer).
os.environ.setdefault("RAYON_NUM_THREADS", "1")


class HFEngine:
    """:class:`~tracetune.serve.engine.protocol.Engine` over a ``transformers`` causal LM."""

    def __init__(
        self,
        model: Any,
        tokenizer: ModelTokenizer,
        *,
        model_id: str,
        context_length: int,
        chat_template: str = "chatml",
        max_batch_size: int = 16,
        max_adapters: int = 8,
        prefill_budget: int = 2048,
        prefix_cache_entries: int = 8,
        jump_forward: bool = True,
    ) -> None:
        self.model_id = model_id
        self.context_length = context_length
        self.chat_template = chat_template
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.prefill_budget = prefill_budget
        self.device = next(model.parameters()).device
        self.prefix_cache = PrefixCache(max_entries=prefix_cache_entries)
        self.adapters = AdapterSet(model, capacity=max_adapters, on_evict=self.prefix_cache.drop_adapter)
        self.stop_token_ids = stop_token_ids(tokenizer, chat_template)
        self.jump_forward = jump_forward
        self.steps = 0  # decode steps run (tests and benchmarks read it)
        self.forced_tokens = 0  # tokens taken by jump-forward, without a step of their own
        self._vocab = int(model.get_output_embeddings().weight.shape[0])
        self._probe: torch.Tensor | None = None
        self.max_rows_seen = 0
        self._batch = BatchCache()
        self._rows: list[Choice] = []
        self._pending: deque[tuple[GenerationRequest, EventSink]] = deque()
        self._live: dict[str, int] = {}  # request id → choices not finished yet
        self._aborted: set[str] = set()
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"tracetune-engine-{model_id}", daemon=True)
        self._thread.start()

    @classmethod
    def load(cls, home: Path, model_id: str, threads: int | None = None, **options: Any) -> HFEngine:
        """The engine of base model ``model_id`` (weights and tokenizer from the data home's caches). ``threads``:
        torch's intra-op threads (a process-wide setting; :func:`tracetune.threads.engine_threads`)."""
        from tracetune.models.registry import resolve
        from tracetune.models.weights import load_base_model

        if threads is not None:
            torch.set_num_threads(threads)
        spec = resolve(home, model_id)
        model, tokenizer = load_base_model(home, model_id)
        return cls(
            model,
            tokenizer,
            model_id=model_id,
            context_length=spec.context_length,
            chat_template=spec.chat_template,
            **options,
        )

    # -- the Engine interface (any thread) ---------------------------------------------------------------------

    def submit(self, request: GenerationRequest, on_event: EventSink) -> None:
        check_request(request, self.context_length)
        with self._cond:
            if self._closing:
                raise EngineClosed(f"the engine of {self.model_id} is closed")
            self._live[request.request_id] = request.n
            self._pending.append((request, on_event))
            self._cond.notify()

    def abort(self, request_id: str) -> None:
        with self._cond:
            if request_id in self._live:
                self._aborted.add(request_id)
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)

    @property
    def running(self) -> int:
        """Rows decoding now."""
        return len(self._rows)

    # -- the worker --------------------------------------------------------------------------------------------

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not self._pending and not self._rows and not self._closing:
                        self._cond.wait()
                    if self._closing:
                        break
                    admitted = self._admit()
                    aborted, self._aborted = self._aborted, set()
                if aborted:
                    self._drop(aborted)
                for request, sink in admitted:
                    if request.request_id in aborted:
                        continue
                    try:
                        self._prefill(request, sink)
                    except Exception as exc:  # one bad request (adapter that fails to load …) ends only itself
                        log.exception("prefill failed for request %s", request.request_id)
                        for i in range(request.n):
                            self._send(sink, SequenceEvent(i, "", (), error=exc))
                        self._live.pop(request.request_id, None)
                if self._rows:
                    try:
                        self._step()
                    except Exception as exc:
                        log.exception("decode step failed; ending the %d running sequences", len(self._rows))
                        self._fail_rows(exc)
        self._shutdown()

    def _admit(self) -> list[tuple[GenerationRequest, EventSink]]:
        """Queued requests to prefill now (called holding the lock)."""
        admitted: list[tuple[GenerationRequest, EventSink]] = []
        rows, tokens = len(self._rows), 0
        while self._pending:
            request, _ = self._pending[0]
            if admitted and (
                rows + request.n > self.max_batch_size or tokens + len(request.prompt_ids) > self.prefill_budget
            ):
                break
            if not admitted and self._rows and rows + request.n > self.max_batch_size:
                break  # the batch is full: wait for rows to finish
            admitted.append(self._pending.popleft())
            rows += request.n
            tokens += len(request.prompt_ids)
        return admitted

    def _prefill(self, request: GenerationRequest, sink: EventSink) -> None:
        n, size = request.n, len(request.prompt_ids)
        adapter = self.adapters.acquire(request.adapter_dir)
        try:
            for _ in range(n - 1):
                self.adapters.acquire(request.adapter_dir)  # one hold per choice, released as each finishes
            choices = [
                Choice(
                    request=request,
                    index=i,
                    sink=sink,
                    adapter=adapter,
                    text=TextTracker(self.tokenizer, request.params.stop),
                    generator=make_generator(
                        None if request.params.seed is None else request.params.seed + i, self.device
                    )
                    if request.params.temperature > 0
                    else None,
                    state=request.constraint.start() if request.constraint is not None else None,
                    prompt_tokens=size,
                )
                for i in range(n)
            ]
            cache, logits = self._run_prompt(request, adapter)
        except BaseException:
            for _ in range(n):
                self.adapters.release(adapter)
            raise
        tokens = self._choose(logits, choices)
        keep = [i for i, (c, t) in enumerate(zip(choices, tokens, strict=True)) if self._accept_or_fail(c, t)]
        if keep:
            joined = BatchCache()
            joined.merge(cache, [size] * n)
            joined.keep(keep)
            assert joined.cache is not None
            self._batch.merge(joined.cache, joined.lens)
            self._rows += [choices[i] for i in keep]
            self.max_rows_seen = max(self.max_rows_seen, len(self._rows))

    def _run_prompt(self, request: GenerationRequest, adapter: str) -> tuple[DynamicCache, torch.Tensor]:
        """Prefill: the prompt's KV cache (one row per choice) and the logits of the first token."""
        n, size = request.n, len(request.prompt_ids)
        reused, past = self.prefix_cache.lookup(adapter, request.prompt_ids)
        cache = DynamicCache(past) if past is not None else DynamicCache()
        ids = torch.tensor([request.prompt_ids[reused:]], dtype=torch.long, device=self.device)
        out = self.adapters.model(
            input_ids=ids,
            position_ids=torch.arange(reused, size, device=self.device)[None, :],
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
            **self.adapters.forward_kwargs([adapter]),
        )
        self.prefix_cache.store(
            adapter, request.prompt_ids, [(layer.keys, layer.values) for layer in cache_layers(cache)]
        )
        logits = out.logits[:, -1, :].float()
        if n > 1:
            cache.batch_repeat_interleave(n)
            logits = logits.expand(n, -1).clone()
        return cache, logits

    def _step(self) -> None:
        rows = self._rows
        if len(rows) == 1 and rows[0].state is not None and self.jump_forward:
            self._step_alone_forced(rows[0])
            return
        input_ids = torch.tensor([[c.last] for c in rows], dtype=torch.long, device=self.device)
        positions, mask = self._batch.step_inputs(self.device)
        out = self.adapters.model(
            input_ids=input_ids,
            position_ids=positions,
            attention_mask=mask,
            cache=self._batch.cache,
            use_cache=True,
            **self.adapters.forward_kwargs([c.adapter for c in rows]),
        )
        self._batch.advanced()
        self.steps += 1
        tokens = self._choose(out.logits[:, -1, :].float(), rows)
        keep = [i for i, (c, t) in enumerate(zip(rows, tokens, strict=True)) if self._accept_or_fail(c, t)]
        self._rows = [rows[i] for i in keep]
        self._batch.keep(keep)

    def _step_alone_forced(self, choice: Choice) -> None:
        """Jump-forward for a constrained row decoding alone: the tokens its constraint forces (the only one
        allowed, e.g. ``{"name": "get_weather", "arguments": {"`` of a forced call) are taken without sampling and
        run through the model together with the last sampled token, in one forward pass instead of one each."""
        tokens = [choice.last]
        alive = True
        while alive and choice.generated < choice.request.params.max_tokens:
            only = self._forced_token(choice)
            if only is None:
                break
            alive = self._accept_or_fail(choice, only)
            tokens.append(only)
            self.forced_tokens += 1
        if not alive:
            self._rows = []
            self._batch.keep([])
            return
        base = self._batch.lens[0]
        out = self.adapters.model(
            input_ids=torch.tensor([tokens], dtype=torch.long, device=self.device),
            position_ids=torch.arange(base, base + len(tokens), device=self.device)[None, :],
            cache=self._batch.cache,
            use_cache=True,
            logits_to_keep=1,
            **self.adapters.forward_kwargs([choice.adapter]),
        )
        self._batch.advanced(len(tokens))
        self.steps += 1
        (token,) = self._choose(out.logits[:, -1, :].float(), [choice])
        if not self._accept_or_fail(choice, token):
            self._rows = []
            self._batch.keep([])

    def _forced_token(self, choice: Choice) -> int | None:
        """The one token ``choice``'s constraint allows next, if it allows exactly one (else None)."""
        assert choice.state is not None
        if self._probe is None:
            self._probe = torch.zeros(self._vocab, device=self.device)
        probe = self._probe.zero_()
        choice.state.mask_logits(probe)
        allowed = torch.isfinite(probe).nonzero()
        return int(allowed[0, 0]) if allowed.shape[0] == 1 else None

    def _choose(self, logits: torch.Tensor, choices: list[Choice]) -> list[int]:
        temperatures = [c.request.params.temperature for c in choices]
        for i, choice in enumerate(choices):
            if choice.state is not None:
                choice.state.mask_logits(logits[i])
                if temperatures[i] > 0 and int(torch.isfinite(logits[i]).sum()) == 1:
                    temperatures[i] = 0.0  # forced: no random draw, as with jump-forward, so seeds stay in step
        return sample_next(
            logits,
            temperatures,
            [c.request.params.top_p for c in choices],
            [c.generator for c in choices],
        )

    def _accept_or_fail(self, choice: Choice, token: int) -> bool:
        try:
            return self._accept(choice, token)
        except Exception as exc:  # e.g. a constraint refusing the token: this choice ends, the batch goes on
            log.exception("sequence %s/%d failed", choice.request.request_id, choice.index)
            self._send(choice.sink, SequenceEvent(choice.index, "", (), error=exc))
            self._finished(choice)
            return False

    def _accept(self, choice: Choice, token: int) -> bool:
        """Record ``token`` for ``choice`` and report it; False when the choice is finished."""
        choice.generated += 1
        choice.pending_ids.append(token)
        if choice.state is not None:
            choice.state.advance(token)
        params = choice.request.params
        reason: FinishReason | None = None
        if token in self.stop_token_ids and not params.ignore_eos:
            text, reason = choice.text.flush(), "stop"
        else:
            text = choice.text.push(token)
            if choice.text.stopped or (choice.state is not None and choice.state.is_finished()):
                reason = "stop"
            elif (
                choice.generated >= params.max_tokens or choice.prompt_tokens + choice.generated >= self.context_length
            ):
                reason = "length"
            if reason is not None:
                text += choice.text.flush()
        if reason is None and not text:
            choice.last = token
            return True  # held back (a partial character or a possible stop string): nothing to report yet
        ids, choice.pending_ids = tuple(choice.pending_ids), []
        event = SequenceEvent(choice.index, text, ids, reason, choice.prompt_tokens, choice.generated)
        self._send(choice.sink, event)
        if reason is None:
            choice.last = token
            return True
        self._finished(choice)
        return False

    def _finished(self, choice: Choice) -> None:
        self.adapters.release(choice.adapter)
        rid = choice.request.request_id
        with self._cond:
            left = self._live.get(rid, 1) - 1
            if left <= 0:
                self._live.pop(rid, None)
            else:
                self._live[rid] = left

    def _drop(self, request_ids: set[str]) -> None:
        """Abort: forget these requests' rows (their consumers are gone: no events)."""
        keep = [i for i, c in enumerate(self._rows) if c.request.request_id not in request_ids]
        for i, choice in enumerate(self._rows):
            if i not in keep:
                self.adapters.release(choice.adapter)
        self._rows = [self._rows[i] for i in keep]
        self._batch.keep(keep)
        with self._cond:
            for rid in request_ids:
                self._live.pop(rid, None)
            self._pending = deque(p for p in self._pending if p[0].request_id not in request_ids)

    def _fail_rows(self, exc: BaseException) -> None:
        for choice in self._rows:
            self.adapters.release(choice.adapter)
            self._send(choice.sink, SequenceEvent(choice.index, "", (), error=exc))
            with self._cond:
                self._live.pop(choice.request.request_id, None)
        self._rows = []
        self._batch.keep([])

    def _shutdown(self) -> None:
        closed = EngineClosed(f"the engine of {self.model_id} was closed")
        self._fail_rows(closed)
        with self._cond:
            pending, self._pending = list(self._pending), deque()
        for request, sink in pending:
            for i in range(request.n):
                self._send(sink, SequenceEvent(i, "", (), error=closed))

    @staticmethod
    def _send(sink: EventSink, event: SequenceEvent) -> None:
        try:
            sink(event)
        except Exception:  # a consumer's failure never stops the engine
            log.exception("event callback failed")
