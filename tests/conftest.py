"""Shared fixtures: real databases (SQLite and PostgreSQL), a fresh store per test.

PostgreSQL tests use the server named by ``TRACETUNE_TEST_POSTGRES_URL`` (``.ci/run`` starts one with
``scripts/start-postgres.sh``); each test gets its own database, dropped afterwards. Without that variable
they are skipped locally, and fail in CI (``CI`` set), so a CI run can never silently skip them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.postgres import drop_postgres_database, make_postgres_database

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LANGSMITH_TRACING", "false")
# One torch (OpenMP) thread per process — the test workers and the training processes they start inherit it. Two
# workers each running torch's default two threads on CI's 2 cores made 4 spinning threads: a training step then
# ran ~5x slower than alone (the demo's 10 steps took 11 CPU-minutes), and the suite 19+ minutes.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

PG_URL = os.environ.get("TRACETUNE_TEST_POSTGRES_URL")
IN_CI = bool(os.environ.get("CI"))

# The files that take longest (they train or serve the real model: minutes each; CI's --durations on 2 cores), in
# that order. They run first: scripts/test.sh hands files to the two workers in collection order
# (--dist loadfile --no-loadscope-reorder), so that the short files fill in at the end and both workers finish
# together, instead of one worker running a slow file alone at the end.
LONGEST_FIRST = (
    "tests/demo/test_demo.py",
    "tests/train/test_recipe.py",
    "tests/acceptance/test_fine_tuning_openai.py",
    "tests/acceptance/test_closed_loop.py",
    "tests/test_cli_jobs.py",
    "tests/server/test_fine_tuning_api.py",
    "tests/acceptance/test_routing_decision.py",
    "tests/serve/test_constrain.py",
    "tests/loop/test_automations.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))  # stable: the rest as collected


def _need_postgres() -> str:
    if PG_URL:
        return PG_URL
    if IN_CI:
        pytest.fail("CI must provide PostgreSQL: TRACETUNE_TEST_POSTGRES_URL is not set")
    pytest.skip("no PostgreSQL server: set TRACETUNE_TEST_POSTGRES_URL (scripts/start-postgres.sh prints one)")


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    return _need_postgres()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A blank database URL, once per dialect."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tracetune.db'}"
        return
    admin_url = _need_postgres()
    url, name = make_postgres_database(admin_url)
    try:
        yield url
    finally:
        drop_postgres_database(admin_url, name)


@pytest.fixture
def store(db_url: str):
    """A freshly opened (migrated) store on each dialect."""
    from tracetune.store import open_store

    s = open_store(db_url, sqlite_synchronous="NORMAL")
    try:
        yield s
    finally:
        s.close()


# -- a real server on 127.0.0.1 ------------------------------------------------------------------------------


class LiveServer:
    """A uvicorn server in a background thread of this process, on a free loopback port."""

    def __init__(self, settings, store, *, lifespan: str = "off") -> None:
        """``lifespan="on"`` runs the app's start-up (the fine-tuning job runner when ``settings.run_jobs``)."""
        import socket
        import threading

        import uvicorn

        from tracetune.server.app import create_app

        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only for such sockets; with
        # socket.socket()'s proto 0 every response waits ~40 ms for a delayed ACK (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        settings.port = self.port  # where this server's own /v1 is (graders, automations' evaluations call it)
        self.settings = settings
        self.store = store
        self.app = create_app(settings, store)
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan=lifespan)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        import time

        deadline = time.time() + 10
        while not self._server.started:
            if time.time() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def langsmith_url(self) -> str:
        return f"{self.url}/api/v1"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def _start_server(dialect: str, tmp_path_factory):
    from tracetune.config import Settings
    from tracetune.store import open_store

    home = tmp_path_factory.mktemp(f"home-{dialect}")
    cleanup = None
    if dialect == "sqlite":
        url = f"sqlite:///{home / 'tracetune.db'}"
    else:
        admin_url = _need_postgres()
        url, name = make_postgres_database(admin_url)
        cleanup = (admin_url, name)
    settings = Settings(home=home, database_url=url)
    store = open_store(url, sqlite_synchronous="NORMAL")
    return LiveServer(settings, store), cleanup


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def live_server(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[LiveServer]:
    """A real tracetune server (one per dialect, shared by the session). Tests isolate by project name."""
    server, cleanup = _start_server(request.param, tmp_path_factory)
    try:
        yield server
    finally:
        server.stop()
        server.store.close()
        if cleanup:
            drop_postgres_database(*cleanup)


@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory) -> Iterator[LiveServer]:
    """A real tracetune server on SQLite only, for tests whose subject is not the database."""
    server, _ = _start_server("sqlite", tmp_path_factory)
    try:
        yield server
    finally:
        server.stop()
        server.store.close()


@pytest.fixture
def project_name() -> str:
    return f"proj-{uuid.uuid4().hex[:10]}"
