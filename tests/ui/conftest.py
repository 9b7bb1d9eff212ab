"""Fixtures of the UI tests: the app over a fresh store (SQLite and PostgreSQL) and an in-process client."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tracetune.store import Store
from tracetune.store.workspaces import DEFAULT_WORKSPACE, Workspace


@dataclass
class UI:
    client: TestClient
    store: Store
    app: Any
    ws: Workspace

    def ingest(self, runs: list[dict[str, Any]]) -> None:
        self.app.state.tt.ingest.batch(self.ws.id, {"post": runs})

    def page(self, url: str, status: int = 200) -> str:
        response = self.client.get(url)
        assert response.status_code == status, response.text[:2000]
        assert response.headers["content-type"].startswith("text/html")
        return response.text

    def project_id(self, name: str) -> str:
        return str(self.store.projects.list(self.ws.id, name=name, limit=1)[0]["id"])


def _ui(store: Store, db_url: str, home: Path) -> Iterator[UI]:
    from tracetune.config import Settings
    from tracetune.server.app import create_app

    settings = Settings(home=home, database_url=db_url, run_jobs=False)
    app = create_app(settings, store)
    with TestClient(app, follow_redirects=False) as client:
        yield UI(client, store, app, store.workspaces.ensure(DEFAULT_WORKSPACE))


@pytest.fixture
def ui(store: Store, db_url: str, tmp_path: Path) -> Iterator[UI]:
    """The app over a fresh store whose data home has no registered model (no job runner)."""
    yield from _ui(store, db_url, tmp_path / "home")


@pytest.fixture(scope="session")
def tiny_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data home (shared by the session) where model "tiny" is a tiny random Llama with SmolLM2's tokenizer."""
    from tests.models import shared_smollm2_tokenizer
    from tests.train import make_tiny_home

    return make_tiny_home(tmp_path_factory.mktemp("ui-tiny"), shared_smollm2_tokenizer(tmp_path_factory))


@pytest.fixture
def tiny_ui(store: Store, db_url: str, tiny_home: Path) -> Iterator[UI]:
    """The app over a fresh store and the "tiny" data home (datasets are checked against "tiny")."""
    yield from _ui(store, db_url, tiny_home)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """Where the browser tests put their screenshots: ``$TRACETUNE_TEST_ARTIFACTS/ui`` (default ``artifacts/ui``)."""
    base = Path(os.environ.get("TRACETUNE_TEST_ARTIFACTS") or Path(__file__).resolve().parents[2] / "artifacts")
    out = base / "ui"
    out.mkdir(parents=True, exist_ok=True)
    return out
