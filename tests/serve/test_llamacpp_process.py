"""llama.cpp runs in a child process: when it dies mid-request, the requests it was serving get a clear 503 through
the OpenAI surface (never a hung connection), a new process is started at once, and the next request is answered;
when tracetune's process dies, its llama.cpp process does not outlive it. Real SmolLM2 GGUF, real server."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serve.support import chat_server
from tracetune.models import DEFAULT_MODEL_ID

pytest.importorskip("xllamacpp")

COUNT = [{"role": "user", "content": "Count from 1 to 500, one number per line."}]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llamacpp-process-home")


@pytest.fixture()
def engine(home: Path) -> Iterator[Any]:
    from tracetune.serve.engine.llamacpp import LlamaCppEngine

    with contextlib.closing(LlamaCppEngine.load(home, DEFAULT_MODEL_ID, slots=2, threads=1)) as eng:
        yield eng  # a fresh process for each test: they kill it


def engine_pid(engine: Any) -> int:
    process = engine._server.process
    assert process is not None and process.alive
    return int(process.pid)


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its reaper counts as exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def wait_for(condition: Any, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_a_killed_engine_process_fails_its_requests_with_503_and_is_restarted(
    engine: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    server = chat_server(tmp_path_factory.mktemp("crash-home"), engine)
    url = f"{server.url}/v1/chat/completions"
    body = {"model": DEFAULT_MODEL_ID, "messages": COUNT, "max_tokens": 1500, "temperature": 0}
    try:
        with httpx.Client(timeout=120) as client:
            plain: dict[str, httpx.Response] = {}
            waiting = threading.Thread(target=lambda: plain.update(r=client.post(url, json=body)))
            waiting.start()
            with client.stream("POST", url, json={**body, "stream": True}) as stream:
                lines = stream.iter_lines()
                first = next(line for line in lines if line.startswith("data: "))
                assert json.loads(first[6:])["choices"], first
                assert wait_for(lambda: len(engine._live) == 2), "both requests should be running"
                pid = engine_pid(engine)
                started = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                rest = [line for line in lines if line.startswith("data: ")]
            waiting.join(timeout=60)
            assert time.monotonic() - started < 30, "the requests hung after the engine died"

            # the stream ends with the error object the openai client raises as APIError, then [DONE]
            error = json.loads(rest[-2][6:])["error"]
            assert "llama.cpp engine process was killed by SIGKILL" in error["message"]
            assert "retry" in error["message"] and rest[-1] == "data: [DONE]"
            answer = plain["r"]
            assert answer.status_code == 503, answer.text
            assert "was killed by SIGKILL" in answer.json()["error"]["message"]

            # a new process is started without waiting for a request, and it answers
            assert wait_for(lambda: engine._server.alive and engine._server.process.pid != pid)
            again = client.post(url, json={**body, "max_tokens": 8})
            assert again.status_code == 200, again.text
            assert again.json()["usage"]["completion_tokens"] >= 1
            assert gone(pid)
    finally:
        server.stop()
        server.store.close()


def test_the_engine_process_ends_when_tracetune_dies(home: Path, engine: Any) -> None:
    """SIGKILL of the process that started llama.cpp (no clean-up runs): its child sees stdin close and exits."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from tracetune.serve.engine.llamacpp import LlamaCppEngine
        engine = LlamaCppEngine.load({str(home)!r}, {DEFAULT_MODEL_ID!r}, slots=1)
        print(engine._server.process.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    parent = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert parent.returncode == -signal.SIGKILL, parent.stderr
    child = int(parent.stdout.split()[0])
    assert wait_for(lambda: gone(child), timeout=15), f"llama.cpp process {child} outlived tracetune"


def test_close_stops_the_process_and_a_start_failure_names_the_reason(home: Path, tmp_path: Path) -> None:
    from tracetune.serve.engine.llamacpp import EngineError, LlamaCppEngine

    engine = LlamaCppEngine.load(home, DEFAULT_MODEL_ID, slots=1)
    pid = engine_pid(engine)
    engine.close()
    assert wait_for(lambda: gone(pid), timeout=15)

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(EngineError, match=r"llama\.cpp could not start") as raised:
        LlamaCppEngine(broken, engine.tokenizer, model_id="broken", context_length=512, slots=1)
    assert str(broken) in str(raised.value)
