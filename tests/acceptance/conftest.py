"""Acceptance fixtures: the unmodified official clients, run as a user runs them, against the live server.

Every traced app is a script in ``apps/`` run in a subprocess with ``sys.executable`` and a clean environment
(no LANGSMITH_*/LANGCHAIN_*/OPENAI_* variables but the ones a test sets), so the SDK reads its configuration
exactly as a user's app does and its process-wide caches never leak between tests. All the apps of one
server are started at once (one fixture, session-scoped per dialect) to keep the suite fast; each writes to
its own project, and each test waits only for the app it reads.

The only stand-in is ``openai_standin`` for the hosted OpenAI service (see that module).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .openai_standin import OpenAIStandin, running_standin

APPS = Path(__file__).parent / "apps"
APP_TIMEOUT_S = 90
_CLIENT_PREFIXES = ("LANGSMITH_", "LANGCHAIN_", "OPENAI_")

# Transport modes of the LangChain app (traced_chains.py): env for the SDK, client kind for the app.
MODES: dict[str, tuple[dict[str, str], str]] = {
    # (a) only the LANGSMITH_* names; our /info enables zstd, so multipart + zstd
    "sdk_default": (
        {"LANGSMITH_ENDPOINT": "{url}", "LANGSMITH_TRACING": "true", "LANGSMITH_PROJECT": "{project}"},
        "env",
    ),
    # (b) the same, with compression switched off by the user: plain multipart
    "plain_multipart": (
        {
            "LANGSMITH_ENDPOINT": "{url}",
            "LANGSMITH_TRACING": "true",
            "LANGSMITH_PROJECT": "{project}",
            "LANGSMITH_DISABLE_RUN_COMPRESSION": "true",
        },
        "env",
    ),
    # (c) a Client told by its `info` that the server wants JSON batches: POST /runs/batch
    "batch": ({"LANGSMITH_ENDPOINT": "{url}", "LANGSMITH_TRACING": "true", "LANGSMITH_PROJECT": "{project}"}, "batch"),
    # (d) Client(auto_batch_tracing=False): POST /runs + PATCH /runs/{id}
    "single_runs": (
        {"LANGSMITH_ENDPOINT": "{url}", "LANGSMITH_TRACING": "true", "LANGSMITH_PROJECT": "{project}"},
        "nobatch",
    ),
    # only the legacy LANGCHAIN_* names
    "langchain_env_names": (
        {"LANGCHAIN_ENDPOINT": "{url}", "LANGCHAIN_TRACING_V2": "true", "LANGCHAIN_PROJECT": "{project}"},
        "env",
    ),
}
LANGSMITH_ENV = MODES["sdk_default"][0]


def app_env(overrides: dict[str, str]) -> dict[str, str]:
    """This process's environment without any LangSmith/LangChain/OpenAI setting, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLIENT_PREFIXES)}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(overrides)
    return env


@dataclass
class AppRun:
    """One app subprocess; ``result()`` waits for it and returns the JSON object it printed."""

    name: str
    project: str
    proc: subprocess.Popen[str]
    _result: dict[str, Any] | None = field(default=None, init=False)

    def result(self) -> dict[str, Any]:
        if self._result is None:
            try:
                out, err = self.proc.communicate(timeout=APP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, err = self.proc.communicate()
                pytest.fail(f"app {self.name} did not finish in {APP_TIMEOUT_S}s (a flush that never ends?)\n{err}")
            if self.proc.returncode != 0:
                pytest.fail(f"app {self.name} exited {self.proc.returncode}\nstdout:\n{out}\nstderr:\n{err}")
            # The SDK only logs failed sends; a rejected batch must fail the test, not vanish.
            for marker in ("Failed to", "Error creating feedback", "Traceback", "LangSmithError"):
                assert marker not in err, f"app {self.name} logged a tracing problem:\n{err}"
            self._result = json.loads(out.strip().splitlines()[-1])
        return self._result


def start_app(script: str, args: list[str], env: dict[str, str], cwd: Path, name: str, project: str) -> AppRun:
    proc = subprocess.Popen(
        [sys.executable, str(APPS / script), *args],
        env=app_env(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return AppRun(name, project, proc)


def _fill(env: dict[str, str], url: str, project: str) -> dict[str, str]:
    return {k: v.format(url=url, project=project) for k, v in env.items()}


@dataclass
class TracedApps:
    """The apps run against one live server, by name (the transport modes, ``many_runs``, ``wrap_openai``)."""

    apps: dict[str, AppRun]
    server: Any
    _runs: dict[str, list[Any]] = field(default_factory=dict)

    def project(self, name: str) -> str:
        return self.apps[name].project

    def result(self, name: str) -> dict[str, Any]:
        return self.apps[name].result()

    def runs(self, name: str) -> list[Any]:
        """Every run of the app's project, read once through ``Client.list_runs`` (as ``langsmith.schemas.Run``)."""
        if name not in self._runs:
            self.result(name)
            self._runs[name] = list(sdk_client(self.server).list_runs(project_name=self.project(name)))
        return self._runs[name]


def sdk_client(server: Any, **kwargs: Any) -> Any:
    """A ``langsmith.Client`` for reading (and giving feedback) in the test process."""
    from langsmith import Client

    # The SDK's v2 resources refuse to send a request without a key; an open server takes any.
    kwargs.setdefault("api_key", "open-server")
    return Client(api_url=server.langsmith_url, **kwargs)


@pytest.fixture(scope="session")
def openai_standin() -> Iterator[OpenAIStandin]:
    """The stand-in for the hosted OpenAI service (see ``openai_standin.py``)."""
    with running_standin() as server:
        yield server


@pytest.fixture(scope="session")
def traced(live_server, openai_standin, tmp_path_factory) -> Iterator[TracedApps]:
    """Starts every traced app against ``live_server`` at once, each into a fresh project."""
    cwd = tmp_path_factory.mktemp("apps")
    url = live_server.langsmith_url
    openai_env = {"OPENAI_BASE_URL": openai_standin.base_url, "OPENAI_API_KEY": "sk-standin"}
    apps: dict[str, AppRun] = {}

    def launch(name: str, script: str, args: list[str], env: dict[str, str]) -> None:
        project = f"acc-{name}-{uuid.uuid4().hex[:8]}"
        apps[name] = start_app(script, args, {**_fill(env, url, project), **openai_env}, cwd, name, project)

    for mode, (env, client_kind) in MODES.items():
        launch(mode, "traced_chains.py", [client_kind], env)
    launch("many_runs", "many_runs.py", ["3", "50"], LANGSMITH_ENV)
    launch("wrap_openai", "wrapped_openai.py", [], LANGSMITH_ENV)
    launch("threaded", "threaded.py", ["3", "4"], LANGSMITH_ENV)
    launch(
        "otel_chain", "otel_chain.py", [], {**LANGSMITH_ENV, "LANGSMITH_TRACING_MODE": "otel", "LANGSMITH_API_KEY": "x"}
    )
    try:
        yield TracedApps(apps, live_server)
    finally:
        for app in apps.values():
            if app.proc.poll() is None:
                app.proc.kill()
                app.proc.communicate()


@pytest.fixture
def client(live_server):
    return sdk_client(live_server)
