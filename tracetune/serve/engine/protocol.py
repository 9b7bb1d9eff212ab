"""The engine interface: token ids in, token/text events out, many requests batched behind one model.

Layering as in vLLM's OpenAI server: route (``tracetune.server.openai.chat``) → serving class
(:class:`tracetune.serve.chat.ChatService`: OpenAI request ↔ prompt, constraint, choices) → engine (this
interface). The engine knows nothing of OpenAI, chat messages or tools: it decodes token ids under
:class:`SamplingParams`, optionally through a LoRA adapter and a decoding constraint, and reports each step of each
choice to a callback from its own worker thread. :class:`~tracetune.serve.engine.hf.HFEngine` (transformers, KV
cache, continuous batching) implements it; a llama.cpp or vLLM engine would implement the same four members.

Two adaptors turn the callback into what callers want: :func:`stream_events` (an async iterator, for the event
loop: inference never runs on it) and :func:`generate` (blocking, for the CLI, benchmarks and tests).

Importing this module does not import torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from tracetune.errors import InvalidInput

if TYPE_CHECKING:
    from tracetune.models.tokenizer import ModelTokenizer
    from tracetune.serve.engine.grammar import Constraint

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """How one choice is decoded. ``temperature`` 0 is greedy; ``seed`` makes sampling repeatable (choice ``i``
    of a request uses ``seed + i``); ``stop`` strings end the text before them (they are not returned);
    ``ignore_eos`` decodes through end-of-turn tokens up to ``max_tokens`` (benchmarks)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False


@dataclass
class GenerationRequest:
    """``n`` choices continuing ``prompt_ids`` (the prompt is computed once and shared by the choices).

    ``adapter_dir``: a PEFT LoRA adapter directory to decode through (None: the base model). ``constraint``:
    each choice starts its own state of it (:meth:`Constraint.start`) and only tokens it allows are sampled."""

    prompt_ids: list[int]
    params: SamplingParams
    n: int = 1
    adapter_dir: str | None = None
    constraint: Constraint | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True)
class SequenceEvent:
    """One step of one choice: the text it added (stop strings and what may still become one held back), its
    new token ids, and on the last event the ``finish_reason``. ``error`` ends the choice abnormally."""

    index: int
    text: str
    token_ids: tuple[int, ...]
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None or self.error is not None


EventSink = Callable[[SequenceEvent], None]


class Engine(Protocol):
    """What the serving class needs of an inference engine (one base model; adapters over it)."""

    model_id: str  # the base model id
    context_length: int
    chat_template: str  # the chat.format template name prompts are rendered with
    tokenizer: ModelTokenizer

    def submit(self, request: GenerationRequest, on_event: EventSink) -> None:
        """Queue ``request``; ``on_event`` is called from the engine's thread for every step of every choice,
        and exactly once per choice with ``done`` true. Never blocks on inference."""
        ...

    def abort(self, request_id: str) -> None:
        """Stop decoding the request's choices (a client went away); no further events are sent for them."""
        ...

    def close(self) -> None:
        """Stop the worker; queued and running requests end with an error event."""
        ...


class EngineClosed(RuntimeError):
    """The engine was closed before the request finished."""


def check_request(request: GenerationRequest, context_length: int) -> None:
    """What every engine refuses before queueing: an empty prompt, one that fills the context, no tokens asked."""
    size = len(request.prompt_ids)
    if size == 0:
        raise InvalidInput("the prompt is empty", field="messages")
    if size >= context_length:
        raise InvalidInput(
            f"the prompt has {size} tokens; this model's context length is {context_length}",
            field="messages",
            code="context_length_exceeded",
        )
    if request.n < 1 or request.params.max_tokens < 1:
        raise InvalidInput("n and max_tokens must be at least 1", field="max_tokens")


# -- adaptors --------------------------------------------------------------------------------------------------


async def stream_events(engine: Engine, request: GenerationRequest) -> AsyncIterator[SequenceEvent]:
    """The request's events as an async iterator (in order per choice); aborts the request if the consumer
    stops early (client disconnect, cancellation). The events are produced by the engine's thread."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[SequenceEvent] = asyncio.Queue()

    def deliver(event: SequenceEvent) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening any more
            loop.call_soon_threadsafe(events.put_nowait, event)

    engine.submit(request, deliver)
    remaining = request.n
    try:
        while remaining:
            event = await events.get()
            if event.done:
                remaining -= 1
            yield event
    finally:
        if remaining:
            engine.abort(request.request_id)


@dataclass
class Completion:
    """A finished choice (what :func:`generate` returns)."""

    index: int
    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


def generate(engine: Engine, requests: Sequence[GenerationRequest], timeout: float | None = None) -> list[list[Any]]:
    """Submit every request at once (so the engine batches them), wait, and return per request its choices as
    :class:`Completion` objects, by index. An ``error`` event is raised."""
    inbox: queue.SimpleQueue[tuple[int, SequenceEvent]] = queue.SimpleQueue()
    results: list[list[Any]] = [[None] * r.n for r in requests]
    texts: list[list[list[str]]] = [[[] for _ in range(r.n)] for r in requests]
    ids: list[list[list[int]]] = [[[] for _ in range(r.n)] for r in requests]
    for k, request in enumerate(requests):
        engine.submit(request, functools.partial(_put, inbox, k))
    remaining = sum(r.n for r in requests)
    while remaining:
        k, event = inbox.get(timeout=timeout)
        if event.error is not None:
            for other in requests:
                engine.abort(other.request_id)
            raise event.error
        texts[k][event.index].append(event.text)
        ids[k][event.index].extend(event.token_ids)
        if event.finish_reason is not None:
            remaining -= 1
            results[k][event.index] = Completion(
                event.index,
                "".join(texts[k][event.index]),
                ids[k][event.index],
                event.finish_reason,
                event.prompt_tokens,
                event.completion_tokens,
            )
    return results


def _put(inbox: queue.SimpleQueue[tuple[int, SequenceEvent]], k: int, event: SequenceEvent) -> None:
    inbox.put((k, event))
