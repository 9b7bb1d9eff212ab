"""The engines of a server process: one per base model, created on first use and kept (the base model is loaded
once; its fine-tuned models are adapters inside that engine). Thread-safe; importing it does not import torch."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from tracetune.serve.engine.protocol import Engine

EngineFactory = Callable[[str], Engine]


def hf_engine_factory(home: Path, **options: object) -> EngineFactory:
    """Engines on ``transformers`` (:class:`~tracetune.serve.engine.hf.HFEngine`) over the data home's models."""

    def make(base_id: str) -> Engine:
        from tracetune.serve.engine.hf import HFEngine

        return HFEngine.load(home, base_id, **options)

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

    def close(self) -> None:
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.close()
