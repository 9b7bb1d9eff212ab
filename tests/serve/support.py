"""Engines and live chat servers for the serving tests: a tiny random Llama (mechanics) and the real SmolLM2
(behaviour), each built once per session and shared by every module that asks (``tests/acceptance`` too)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer
from tracetune.models import DEFAULT_MODEL_ID, ModelTokenizer

_shared: dict[str, Any] = {}


def tiny_engine(tokenizer: ModelTokenizer, seed: int = 0, **options: Any) -> Any:
    """An :class:`HFEngine` over a 2-layer random Llama with SmolLM2's tokenizer, posing as the built-in model
    (so the registry resolves its id)."""
    from tests.train import tiny_llama
    from tracetune.serve.engine.hf import HFEngine

    return HFEngine(
        tiny_llama(tokenizer.vocab_size, seed=seed),
        tokenizer,
        model_id=DEFAULT_MODEL_ID,
        context_length=1024,
        **options,
    )


def chat_server(home: Path, engine: Any, aliases: Mapping[str, str] | None = None) -> LiveServer:
    """A live server (SQLite, no job runner) whose chat completions run on ``engine``."""
    from tracetune.config import Settings
    from tracetune.serve.chat import ChatService
    from tracetune.serve.engine.manager import EngineManager
    from tracetune.server.openai.chat import install_chat_service
    from tracetune.store import open_store
    from tracetune.store.blobs import Blobs

    url = f"sqlite:///{home / 'tracetune.db'}"
    settings = Settings(home=home, database_url=url, run_jobs=False, model_aliases=dict(aliases or {}))
    server = LiveServer(settings, open_store(url, sqlite_synchronous="NORMAL"))
    service = ChatService(
        blobs=Blobs(home),
        store=server.store,
        engines=EngineManager(lambda _base: engine),
        aliases=settings.model_aliases,
    )
    install_chat_service(server.app, service)
    return server


def smollm2_engine(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The engine over the real SmolLM2 (one per session; the GGUF is de-quantized once per session and shared
    with the training tests)."""
    if "smollm2_engine" not in _shared:
        from tests.train import first_smollm2_load
        from tracetune.serve.engine.hf import HFEngine

        _, _, _, home = first_smollm2_load(tmp_path_factory)
        _shared["smollm2_engine"] = HFEngine.load(home, DEFAULT_MODEL_ID)
    return _shared["smollm2_engine"]


def smollm2_llama_engine(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The default CPU engine (llama.cpp) over the real SmolLM2 GGUF as it ships (one per session)."""
    if "smollm2_llama_engine" not in _shared:
        from tracetune.serve.engine.llamacpp import LlamaCppEngine

        home = tmp_path_factory.mktemp("llamacpp-smollm2-home")
        _shared["smollm2_llama_engine"] = LlamaCppEngine.load(home, DEFAULT_MODEL_ID, slots=4, threads=1)
    return _shared["smollm2_llama_engine"]


def smollm2_server(tmp_path_factory: pytest.TempPathFactory) -> LiveServer:
    """One live server on the real SmolLM2 for the session (``gpt-4o-mini`` is an alias of it), on the default
    CPU engine (llama.cpp), as ``tracetune serve`` runs it."""
    if "smollm2_server" not in _shared:
        home = tmp_path_factory.mktemp("chat-smollm2-home")
        engine = smollm2_llama_engine(tmp_path_factory)
        _shared["smollm2_server"] = chat_server(home, engine, {"gpt-4o-mini": DEFAULT_MODEL_ID})
    return _shared["smollm2_server"]  # type: ignore[no-any-return]


def stop_shared() -> None:
    server = _shared.pop("smollm2_server", None)
    if server is not None:
        server.stop()
        server.store.close()
    for name in ("smollm2_engine", "smollm2_llama_engine"):
        engine = _shared.pop(name, None)
        if engine is not None:
            engine.close()


# A weather question as the tool-calling tests ask it (with WEATHER_TOOL offered).
WEATHER = [
    {"role": "system", "content": "You are a helpful weather bot."},
    {"role": "user", "content": "What is the weather in Paris?"},
]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}
WEATHER_FUNCTION = WEATHER_TOOL["function"]
