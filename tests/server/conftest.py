"""Fixtures of the API tests: an HTTP client on the shared live server."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest


@pytest.fixture(scope="session")
def api(live_server) -> Iterator[httpx.Client]:
    """A client of the LangSmith surface (``/api/v1``) of the shared server, once per dialect.
    ``verify=False``: plain http on loopback, and no CA bundle to load (~30 ms per client)."""
    with httpx.Client(base_url=live_server.langsmith_url, timeout=20, verify=False) as client:
        yield client
