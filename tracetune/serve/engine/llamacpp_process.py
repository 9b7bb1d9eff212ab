"""llama.cpp's server in a child process of its own, so that a crash in it (a failed assertion in a kernel, a
segfault, an out-of-memory kill) ends that process and not tracetune's: the requests it was serving fail with a
503 and the engine (:mod:`tracetune.serve.engine.llamacpp`) starts another.

The child, ``python -m tracetune.serve.engine.llamacpp_process``, reads its settings as one JSON line on stdin,
starts llama.cpp's server (``xllamacpp``) on a random loopback port behind a random API key, answers one JSON line
(``{"address": …}`` or ``{"error": …}``) on stdout, and then waits for stdin to close: the parent closing it, or
the parent dying, ends the child. It runs in a session of its own, so a Ctrl-C at the terminal reaches the API
server (which drains its requests and then stops its engines) and not the engine first. The parent talks to it
with llama.cpp's own ``/completion`` (server-sent events; closing the stream cancels the task)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any, TypedDict

import httpx

from tracetune.errors import Unavailable

log = logging.getLogger(__name__)

Chunk = dict[str, Any]


class EngineError(Unavailable):
    """llama.cpp refused or failed a request, or cannot load an adapter (503; its message is kept)."""


class EngineCrashed(EngineError):
    """The llama.cpp process ended while serving a request (503: the engine restarts it; the request may be
    retried)."""


class ProcessSettings(TypedDict):
    model: str  # the GGUF file
    adapters: list[str]  # GGUF LoRA adapters, picked per request by index (scale 0 unless a request names one)
    context_length: int
    slots: int
    threads: int


class LlamaProcess:
    """One running llama.cpp server process and an HTTP client to it. ``on_exit`` is called (from a watcher
    thread) when the process ends without :meth:`stop` having been asked for."""

    def __init__(
        self, settings: ProcessSettings, on_exit: Callable[[LlamaProcess], None], start_timeout: float = 300
    ) -> None:
        self.settings = settings
        self._stopping = False
        key = secrets.token_urlsafe(32)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write((json.dumps({**settings, "api_key": key}) + "\n").encode())
        self._proc.stdin.flush()
        answer = _first_line(self._proc.stdout, start_timeout)
        if answer is None or "address" not in answer:
            self.stop()
            reason = answer["error"] if answer else f"it {self.exit_reason() or 'did not answer in time'}"
            raise EngineError(f"llama.cpp could not start: {reason}")
        self.address: str = answer["address"]
        self._client = httpx.Client(
            base_url=self.address,
            headers={"Authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(30.0, read=None),  # a long prompt on one thread takes as long as it takes
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=2 * settings["slots"]),
            trust_env=False,  # loopback: no proxy
        )
        self._on_exit = on_exit
        threading.Thread(target=self._watch, name=f"tracetune-llama-watch-{self.pid}", daemon=True).start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def exit_reason(self) -> str | None:
        """How the process ended (``exited with code 1``, ``was killed by SIGSEGV``), or None while it runs."""
        code = self._proc.poll()
        if code is None:
            return None
        if code < 0:
            with_name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            return f"was killed by {with_name}"
        return f"exited with code {code}"

    def complete(self, body: Chunk, on_chunk: Callable[[Chunk], bool]) -> None:
        """Stream one completion: each chunk (or ``{"error": …}``) to ``on_chunk`` until it returns True (the
        stream is then closed, which cancels the task in llama.cpp) or the stream ends. Raises
        :class:`EngineCrashed` when the process ends meanwhile, :class:`EngineError` when the connection fails."""
        try:
            with self._client.stream("POST", "/completion", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    on_chunk({"error": _error_message(response)})
                    return
                for line in response.iter_lines():
                    kind, _, data = line.partition(": ")
                    if kind == "data" and data != "[DONE]":
                        if on_chunk(json.loads(data)):
                            return
                    elif kind == "error":
                        on_chunk({"error": json.loads(data)})
                        return
        except httpx.TransportError as exc:
            self._raise_gone(exc)

    def stop(self) -> None:
        """End the process (it exits when its stdin closes; killed if it has not within 10 s)."""
        self._stopping = True
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            with contextlib.suppress(OSError):  # the child already gone
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def _raise_gone(self, exc: Exception) -> None:
        try:
            self._proc.wait(timeout=2)  # a crash closes the socket a moment before the process is reaped
        except subprocess.TimeoutExpired:
            raise EngineError(f"lost the connection to llama.cpp (process {self.pid}): {exc}") from exc
        raise EngineCrashed(
            f"the llama.cpp engine process {self.exit_reason()} while serving this request; "
            "tracetune is restarting it: retry the request"
        ) from exc

    def _watch(self) -> None:
        self._proc.wait()
        if not self._stopping:
            log.error("the llama.cpp process %d %s; restarting it", self.pid, self.exit_reason())
            self._on_exit(self)


def _first_line(stream: Any, timeout: float) -> dict[str, Any] | None:
    """The child's JSON answer, or None when it ends (or says nothing) within ``timeout`` seconds."""
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not got or not got[0].strip():
        return None
    try:
        answer = json.loads(got[0])
    except ValueError:
        return {"error": got[0].decode(errors="replace").strip()}
    return answer if isinstance(answer, dict) else None


def _error_message(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return {"message": f"HTTP {response.status_code}: {response.text[:500]}"}
    return body.get("error", body) if isinstance(body, dict) else body


# -- the child ------------------------------------------------------------------------------------------------


def main() -> None:
    settings = json.loads(sys.stdin.readline())
    try:
        server = _start(settings)
    except RuntimeError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        sys.exit(1)
    # llama.cpp installed its own SIGINT/SIGTERM handlers (a graceful stop of its HTTP loop that would leave this
    # process waiting on stdin with nothing serving): a SIGTERM ends the process, the parent restarts it
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print(json.dumps({"address": server.listening_address}), flush=True)
    sys.stdin.buffer.read()  # until the parent closes it or dies
    os._exit(0)  # nothing to flush; llama.cpp's teardown would only wait for its threads


def _start(settings: dict[str, Any]) -> Any:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = settings["model"]
    params.n_ctx = settings["context_length"]
    params.n_parallel = settings["slots"]
    params.n_threads_http = settings["slots"] + 2  # a streaming request holds an HTTP thread
    params.kv_unified = True  # any one request may use the whole context; the slots share the cache
    params.cpuparams.n_threads = settings["threads"]
    params.cpuparams_batch.n_threads = settings["threads"]
    params.warmup = False
    params.verbosity = -1
    params.api_keys = [settings["api_key"]]
    params.cache_ram_mib = 0  # no prompt cache across slots: it would cross adapters (see llamacpp._Server)
    params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(path, 0.0) for path in settings["adapters"]]
    return xllamacpp.Server(params)


if __name__ == "__main__":
    main()
