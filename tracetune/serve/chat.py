"""The serving class of ``POST /v1/chat/completions``: an OpenAI request → prompt + constraint → engine → an OpenAI
response (or its stream of chunks), as plain dicts in OpenAI's shapes. No FastAPI here: the route is thin.

* the prompt is rendered by :func:`tracetune.chat.format.render_prompt` and calls are parsed back by
  :func:`~tracetune.chat.format.parse_assistant` — the very functions training uses (no train/serve skew);
* a forced call (``tool_choice`` named / ``required``, ``function_call`` named) or a JSON ``response_format``
  is decoded under a constraint (:mod:`tracetune.serve.constrain`), so the output parses and matches the schema;
  with ``auto`` the model decides;
* legacy ``functions`` are answered with ``function_call`` (one call), ``tools`` with ``tool_calls``
  (``parallel_tool_calls: false``: at most one).

:meth:`ChatService.prepare` (blocking: model lookup, first load of an engine, tokenizing, compiling a constraint)
runs off the event loop; :meth:`complete` and :meth:`stream` await the engine's events.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from tracetune.chat.format import parse_assistant, render_prompt
from tracetune.errors import InvalidInput
from tracetune.serve.chat_stream import DeltaBuilder
from tracetune.serve.engine.manager import EngineManager
from tracetune.serve.engine.protocol import Engine, GenerationRequest, SamplingParams, SequenceEvent, stream_events
from tracetune.serve.lookup import ServedModel, lookup_model
from tracetune.serve.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Usage,
)
from tracetune.store.blobs import Blobs

SYSTEM_FINGERPRINT = "fp_tracetune"


@dataclass
class PreparedChat:
    """A checked request, ready for the engine."""

    id: str
    created: int
    options: ChatCompletionRequest
    model: ServedModel
    engine: Engine
    request: GenerationRequest
    constraint_kind: str | None  # "tool_call", "json_schema", "json_object" or None

    @property
    def progressive_calls(self) -> bool:
        return self.constraint_kind == "tool_call"


class ChatService:
    def __init__(self, *, blobs: Blobs, store: Any, engines: EngineManager, aliases: Mapping[str, str] | None = None):
        self.blobs = blobs
        self.store = store
        self.engines = engines
        self.aliases = dict(aliases or {})

    def prepare(self, options: ChatCompletionRequest, workspace_id: Any) -> PreparedChat:
        """Find the model, render and tokenize the prompt, check it fits, compile the constraint (blocking)."""
        from tracetune.serve.constrain import constraint_for_request
        from tracetune.serve.engine.grammar import compile_constraint

        model = lookup_model(
            options.model, blobs=self.blobs, store=self.store, workspace_id=workspace_id, aliases=self.aliases
        )
        spec = constraint_for_request(
            tools=options.tools,
            functions=options.functions,
            tool_choice=options.tool_choice,
            function_call=options.function_call,
            parallel_tool_calls=options.parallel_tool_calls,
            response_format=options.response_format,
        )
        engine = self.engines.get(model.base_id)
        prompt = render_prompt(
            options.messages, tools=options.tools, functions=options.functions, template=engine.chat_template
        )
        prompt_ids = engine.tokenizer.encode(prompt)
        limit = engine.context_length
        room = limit - len(prompt_ids)
        asked_tokens = options.completion_limit
        max_tokens = asked_tokens if asked_tokens is not None else room
        if len(prompt_ids) + max(max_tokens, 1) > limit:
            asked = f"{len(prompt_ids)} in the messages, {asked_tokens} in the completion"
            raise InvalidInput(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{len(prompt_ids) + (asked_tokens or 1)} tokens ({asked}). "
                "Please reduce the length of the messages or completion.",
                field="messages",
                code="context_length_exceeded",
            )
        params = SamplingParams(
            max_tokens=max_tokens,
            temperature=1.0 if options.temperature is None else options.temperature,
            top_p=1.0 if options.top_p is None else options.top_p,
            seed=options.seed,
            stop=tuple(options.stop or ()),
        )
        constraint = compile_constraint(engine.tokenizer, spec) if spec is not None else None
        adapter = str(model.adapter_dir) if model.adapter_dir is not None else None
        request = GenerationRequest(prompt_ids, params, n=options.choices, adapter_dir=adapter, constraint=constraint)
        return PreparedChat(
            id=f"chatcmpl-{uuid.uuid4().hex[:24]}",
            created=int(time.time()),
            options=options,
            model=model,
            engine=engine,
            request=request,
            constraint_kind=spec.kind if spec is not None else None,
        )

    async def complete(self, chat: PreparedChat) -> ChatCompletion:
        """The ``chat.completion`` object."""
        n = chat.options.choices
        texts: list[list[str]] = [[] for _ in range(n)]
        reasons: list[str] = ["stop"] * n
        used = [0] * n
        async for event in stream_events(chat.engine, chat.request):
            _raise_error(event)
            texts[event.index].append(event.text)
            used[event.index] = event.completion_tokens
            if event.finish_reason is not None:
                reasons[event.index] = event.finish_reason
        choices = [self._choice(chat, i, "".join(texts[i]), reasons[i]) for i in range(n)]
        prompt_tokens = len(chat.request.prompt_ids)
        return {
            "id": chat.id,
            "object": "chat.completion",
            "created": chat.created,
            "model": chat.model.requested,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
            "usage": _usage(prompt_tokens, sum(used)),
        }

    async def stream(self, chat: PreparedChat) -> AsyncIterator[ChatCompletionChunk | dict[str, Any]]:
        """The ``chat.completion.chunk`` objects (then a usage chunk when asked); an engine failure midway is
        one last ``{"error": …}`` object, which the openai client raises as ``APIError``."""
        opts = chat.options
        builders = [
            DeltaBuilder(
                parse_calls=opts.parse_calls and chat.constraint_kind not in ("json_schema", "json_object"),
                legacy=opts.legacy,
                parallel=opts.parallel,
                progressive=chat.progressive_calls,
            )
            for _ in range(opts.choices)
        ]
        for i in range(opts.choices):
            yield self._chunk(chat, i, {"role": "assistant", "content": ""})
        used = [0] * opts.choices
        async for event in stream_events(chat.engine, chat.request):
            if event.error is not None:
                yield {"error": _error_body(event.error)}
                return
            builder = builders[event.index]
            used[event.index] = event.completion_tokens
            for delta in builder.feed(event.text):
                yield self._chunk(chat, event.index, delta)
            if event.finish_reason is not None:
                for delta in builder.finish():
                    yield self._chunk(chat, event.index, delta)
                yield self._chunk(chat, event.index, {}, builder.finish_reason(event.finish_reason))
        if opts.include_usage:
            yield self._chunk_of(chat, [], usage=_usage(len(chat.request.prompt_ids), sum(used)))

    # -- shapes ------------------------------------------------------------------------------------------------

    def _choice(self, chat: PreparedChat, index: int, text: str, reason: str) -> Choice:
        opts = chat.options
        message: AssistantMessage = {"role": "assistant", "content": text, "refusal": None}
        if opts.parse_calls and chat.constraint_kind not in ("json_schema", "json_object"):
            parsed = parse_assistant(text)
            calls = parsed["tool_calls"] if opts.parallel else parsed["tool_calls"][:1]
            message["content"] = parsed["content"]
            if calls and opts.legacy:
                message["function_call"] = {**calls[0]["function"]}
                reason = "function_call" if reason == "stop" else reason
            elif calls:
                message["tool_calls"] = calls
                reason = "tool_calls" if reason == "stop" else reason
        return {"index": index, "message": message, "logprobs": None, "finish_reason": reason}

    def _chunk(
        self, chat: PreparedChat, index: int, delta: dict[str, Any], reason: str | None = None
    ) -> ChatCompletionChunk:
        return self._chunk_of(chat, [{"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}])

    def _chunk_of(
        self, chat: PreparedChat, choices: list[ChunkChoice], usage: Usage | None = None
    ) -> ChatCompletionChunk:
        chunk: ChatCompletionChunk = {
            "id": chat.id,
            "object": "chat.completion.chunk",
            "created": chat.created,
            "model": chat.model.requested,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
        }
        if usage is not None:
            chunk["usage"] = usage
        return chunk


def _usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _raise_error(event: SequenceEvent) -> None:
    if event.error is not None:
        raise event.error


def _error_body(exc: BaseException) -> dict[str, Any]:
    field = getattr(exc, "field", None)
    return {"message": str(exc), "type": "server_error", "param": field, "code": getattr(exc, "code", None)}
