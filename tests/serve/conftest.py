"""Fixtures of the serving tests: SmolLM2's tokenizer, a tiny random engine, a live server on it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.models import shared_smollm2_tokenizer
from tests.serve.support import chat_server, tiny_engine
from tracetune.models import ModelTokenizer


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> ModelTokenizer:
    return shared_smollm2_tokenizer(tmp_path_factory)


@pytest.fixture(scope="session")
def engine(tokenizer: ModelTokenizer) -> Iterator[Any]:
    """A tiny random engine shared by the session (tests must not depend on what others ran on it)."""
    eng = tiny_engine(tokenizer)
    try:
        yield eng
    finally:
        eng.close()


@pytest.fixture(scope="session")
def tiny_server(tmp_path_factory: pytest.TempPathFactory, engine: Any) -> Iterator[LiveServer]:
    server = chat_server(tmp_path_factory.mktemp("chat-tiny-home"), engine, {"gpt-4o-mini": "smollm2-135m-instruct"})
    try:
        yield server
    finally:
        server.stop()
        server.store.close()


@pytest.fixture(scope="session")
def v1(tiny_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{tiny_server.url}/v1", timeout=60, verify=False) as client:
        yield client
