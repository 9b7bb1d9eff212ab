"""The engines of a server process: one per base model, created on first use and kept (the base model is loaded
once; its fine-tuned models are adapters inside that engine). Which engine serves a base model is decided by
:func:`tracetune.models.engines.choose_engine` and said by :meth:`EngineManager.describe`. Thread-safe; importing
it imports neither torch nor llama.cpp."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracetune.models.engines import EngineChoice
from tracetune.serve.engine.protocol import Engine

log = logging.getLogger(__name__)

EngineFactory = Callable[[str], Engine]


def engine_factory(
    home: Path, wanted: str = "auto", threads: int | None = None, llamacpp_weights: str = "q8_0", **options: Any
) -> EngineFactory:
    """Engines over the data home's models, each the one ``choose_engine`` picks (``threads``: per engine)."""
    from tracetune.models.engines import choose_engine
    from tracetune.threads import engine_threads

    def make(base_id: str) -> Engine:
        choice = choose_engine(home, base_id, wanted)
        count = engine_threads(threads)
        log.info("serving %s on %s (%s), %d thread(s)", base_id, choice.engine, choice.reason, count)
        engine: Any
        if choice.engine == "llamacpp":
            from tracetune.serve.engine.llamacpp import LlamaCppEngine

            engine = LlamaCppEngine.load(home, base_id, weights=llamacpp_weights, threads=count, **options)
        elif choice.engine == "vllm":
            from tracetune.serve.engine.vllm import VLLMEngine

            engine = VLLMEngine.load(home, base_id, **options)
        else:
            from tracetune.serve.engine.hf import HFEngine

            engine = HFEngine.load(home, base_id, threads=count, **options)
        engine.choice = choice
        return engine

    return make


class EngineManager:
    def __init__(self, factory: EngineFactory) -> None:
        self._factory = factory
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, base_id: str) -> Engine:
        """The engine of ``base_id``, loading it on first use (blocking: call it off the event loop). Loading
        one base model does not hold up requests for another that is already loaded."""
        engine = self._engines.get(base_id)
        if engine is not None:
            return engine
        with self._lock:
            gate = self._loading.setdefault(base_id, threading.Lock())
        with gate:
            engine = self._engines.get(base_id)
            if engine is None:
                engine = self._factory(base_id)
                self._engines[base_id] = engine
        return engine

    def loaded(self) -> list[str]:
        return list(self._engines)

    def describe(self) -> dict[str, EngineChoice]:
        """The loaded base models and the engine that serves each (with the reason)."""
        out: dict[str, EngineChoice] = {}
        for base_id, engine in list(self._engines.items()):
            choice = getattr(engine, "choice", None)
            out[base_id] = choice if isinstance(choice, EngineChoice) else EngineChoice(type(engine).__name__, "")
        return out

    def close(self) -> None:
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.close()
