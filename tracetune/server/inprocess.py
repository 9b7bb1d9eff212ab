"""tracetune's server in a background thread of this process, on a free loopback port (``eval``, ``demo``)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tracetune.config import Settings


class InProcessServer:
    """``with InProcessServer(settings) as server: … server.url …`` (start-up runs, so jobs run too)."""

    def __init__(self, settings: Settings, *, start_timeout_s: float = 60.0) -> None:
        import uvicorn

        from tracetune.server.app import create_app

        # IPPROTO_TCP so that asyncio sets TCP_NODELAY on accepted connections (no delayed-ACK stalls).
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        settings.port = self.port  # where this server's own /v1 is (graders, automations' evaluations call it)
        self.app = create_app(settings)
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._start_timeout_s = start_timeout_s

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> InProcessServer:
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the in-process tracetune server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self.app.state.tt.store.close()

    def __enter__(self) -> InProcessServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
