"""Run the local ID Photo API server inside a test suite (asyncio, trio or plain sync code).

::

    async with idphoto_async.testing.local_server(qps=None) as base_url:
        ...  # point your client at base_url

The server runs with uvicorn on a free loopback port, in a background thread with its own
event loop, so it serves callers on any event loop (or none). Testing defaults differ from
the real service in two ways only: ``processing_time="0"`` and ``engine="basic"``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any

import anyio
import attrs
import uvicorn

from .engine import Engine
from .server import ServerConfig, create_app
from .server._app import server_state
from .server._state import ServerState

__all__ = ["TESTING_DEFAULTS", "LocalServer", "local_server"]

TESTING_DEFAULTS: dict[str, Any] = {"processing_time": "0", "engine": "basic"}
"""What `LocalServer` changes from `ServerConfig`'s defaults (no config given)."""


class LocalServer:
    """The local server on ``127.0.0.1:<free port>``, as a sync or async context manager.

    Pass a `ServerConfig`, or its fields as keywords (on top of
    `TESTING_DEFAULTS`), or both (keywords override the config). ``engine`` injects an
    engine object (e.g. a fake that fails with a given state), or names one (``"local"``).
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        /,
        *,
        host: str = "127.0.0.1",
        engine: Engine | str | None = None,
        startup_timeout: float = 15.0,
        **overrides: Any,
    ) -> None:
        if isinstance(engine, str):  # a name ("local", "basic") is a config field
            overrides["engine"], engine = engine, None
        if config is None:
            config = ServerConfig(**{**TESTING_DEFAULTS, **overrides})
        elif overrides:
            config = attrs.evolve(config, **overrides)
        self.config = config
        self.host = host
        self._engine = engine
        self._startup_timeout = startup_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._state: ServerState | None = None
        self._port = 0

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("the server is not running: use it as a context manager")
        return f"http://{self.host}:{self._port}"

    @property
    def state(self) -> ServerState:
        if self._state is None:
            raise RuntimeError("the server is not running: use it as a context manager")
        return self._state

    def stats(self) -> dict[str, Any]:
        """A snapshot of the server's stats (same data as GET /_local/stats)."""
        return self.state.snapshot()

    def advance(self, seconds: float) -> float:
        """Move the server's clock forward (expires results and tasks); returns the offset."""
        return self.state.advance(seconds)

    def reset_stats(self) -> None:
        """Zero the server's counters."""
        self.state.reset_stats()

    def start(self) -> None:
        """Start serving; returns once the port accepts connections."""
        if self._server is not None:
            raise RuntimeError("the server is already running")
        app = create_app(self.config, engine=self._engine)
        self._state = server_state(app)
        # proto=IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections (no 40 ms
        # Nagle/delayed-ACK stalls per request).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self._port = sock.getsockname()[1]
        uv_config = uvicorn.Config(
            app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
        server = self._server = uvicorn.Server(uv_config)
        self._thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},
            name=f"idphoto-local-server:{self._port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the local server failed to start (see the log)")
            time.sleep(0.005)

    def stop(self) -> None:
        """Stop serving and join the server thread."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout=10)
        if thread.is_alive():  # pragma: no cover - a stuck request
            server.force_exit = True
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> LocalServer:
        await anyio.to_thread.run_sync(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.stop)


def local_server(
    config: ServerConfig | None = None, /, **config_kwargs: Any
) -> AbstractAsyncContextManager[str]:
    """``async with local_server(**knobs) as base_url:`` runs a `LocalServer`."""
    return _local_server(config, config_kwargs)


@asynccontextmanager
async def _local_server(
    config: ServerConfig | None, config_kwargs: dict[str, Any]
) -> AsyncIterator[str]:
    async with LocalServer(config, **config_kwargs) as server:
        yield server.base_url
