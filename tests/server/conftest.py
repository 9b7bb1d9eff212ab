"""Fixtures of the API tests: an HTTP client on the shared live server."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import LiveServer


@pytest.fixture(scope="session")
def api(live_server) -> Iterator[httpx.Client]:
    """A client of the LangSmith surface (``/api/v1``) of the shared server, once per dialect.
    ``verify=False``: plain http on loopback, and no CA bundle to load (~30 ms per client)."""
    with httpx.Client(base_url=live_server.langsmith_url, timeout=20, verify=False) as client:
        yield client


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server of its own whose bodies may be 4 KiB at most (after decompression too)."""
    from tracetune.config import Settings
    from tracetune.store import open_store

    home = tmp_path_factory.mktemp("small-home")
    url = f"sqlite:///{home / 'tracetune.db'}"
    server = LiveServer(Settings(home=home, database_url=url, max_body_bytes=4096), open_store(url))
    try:
        yield server
    finally:
        server.stop()
        server.store.close()
