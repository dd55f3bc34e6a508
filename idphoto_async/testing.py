"""Run the local ID Photo API server inside a test suite (asyncio, trio or plain sync code).

::

    async with idphoto_async.testing.local_server(qps=None) as base_url:
        ...  # point your client at base_url

The server runs with uvicorn on a free loopback port, in a background thread with its own
event loop, so it serves callers on any event loop (or none). Testing defaults differ from
the real service in two ways only: ``processing_time="0"`` and ``engine="basic"``, except
that `local_server` runs the ``local`` engine (real ID photos) when its extra is installed
and logs which engine runs (also in ``GET /_local/stats``).
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import IO, Any

import anyio
import attrs
import httpx
import uvicorn

from .engine import Engine, default_engine_name
from .server import ServerConfig, create_app
from .server._app import server_state
from .server._state import ServerState

__all__ = ["TESTING_DEFAULTS", "LocalServer", "LocalServerProcess", "local_server"]

TESTING_DEFAULTS: dict[str, Any] = {"processing_time": "0", "engine": "basic"}
"""What `LocalServer` changes from `ServerConfig`'s defaults (no config given)."""

_ADMIN_KEY = "local-admin"
"""The key `LocalServerProcess` sends to /_local/* when the server accepts any key."""

log = logging.getLogger(__name__)


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
    """``async with local_server(**knobs) as base_url:`` runs a `LocalServer`.

    Without a config or an ``engine`` knob it runs the ``local`` engine when the ``local``
    extra is installed (real ID photos: an input needs a face), else ``basic``.
    """
    if config is None and "engine" not in config_kwargs:
        config_kwargs = {"engine": default_engine_name(), **config_kwargs}
    return _local_server(config, config_kwargs)


@asynccontextmanager
async def _local_server(
    config: ServerConfig | None, config_kwargs: dict[str, Any]
) -> AsyncIterator[str]:
    async with LocalServer(config, **config_kwargs) as server:
        engine = server.stats()["engine"]
        log.info("local server at %s runs the %s engine", server.base_url, engine)
        yield server.base_url


_FLAG_NAMES = {"count_refused": "count-refused", "send_retry_after": "retry-after"}
_NONE_FLAGS = {"qps": "--qps=0"}  # fields where None means something: qps=None is no limit


def _config_flags(config: dict[str, Any]) -> list[str]:
    """``idphoto serve`` flags for `ServerConfig` fields given as keywords."""
    flags: list[str] = []
    for name, value in config.items():
        if value is None:
            if name in _NONE_FLAGS:
                flags.append(_NONE_FLAGS[name])
            continue
        if name == "api_keys":
            flags += [f"--api-key={key}" for key in value]
            continue
        flag = _FLAG_NAMES.get(name, name.replace("_", "-"))
        if isinstance(value, bool):
            flags.append(f"--{flag}" if value else f"--no-{flag}")
        elif isinstance(value, tuple | list):
            flags.append(f"--{flag}={','.join(str(v) for v in value)}")
        else:
            flags.append(f"--{flag}={value}")
    return flags


class LocalServerProcess:
    """The local server in a process of its own (``python -m idphoto_async.server``).

    Unlike `LocalServer`, it shares no interpreter (no GIL) with the caller, so its clock
    sees requests arrive as a remote service would: use it where timing matters, e.g. to
    check a client against the strict rate-limit window under load. Takes the same
    `ServerConfig` fields as keywords (on top of `TESTING_DEFAULTS`).
    """

    def __init__(self, *, startup_timeout: float = 30.0, **config: Any) -> None:
        ServerConfig(**{**TESTING_DEFAULTS, **config})  # reject bad knobs here, clearly
        self._flags = _config_flags({**TESTING_DEFAULTS, **config})
        self._startup_timeout = startup_timeout
        keys = config.get("api_keys") or (_ADMIN_KEY,)
        self._admin_headers = {"X-API-KEY": str(next(iter(keys)))}
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._port = 0

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        if self._proc is None:
            raise RuntimeError("the server is not running")
        return f"http://127.0.0.1:{self._port}"

    @property
    def pid(self) -> int:
        """The server process's id (e.g. to measure its CPU time)."""
        if self._proc is None:
            raise RuntimeError("the server is not running")
        return self._proc.pid

    def start(self) -> None:
        """Start the process; returns once it answers."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            self._port = sock.getsockname()[1]
        cmd = [sys.executable, "-m", "idphoto_async.server", "--host", "127.0.0.1"]
        # Its log goes to a file, not a pipe: a pipe nobody reads would fill up and stall
        # the server in a long run that logs errors (fault injection).
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self._proc = subprocess.Popen(
            [*cmd, "--port", str(self._port), *self._flags],
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        deadline = time.monotonic() + self._startup_timeout
        while True:
            if self._proc.poll() is not None:
                self._stderr.seek(0)
                err = self._stderr.read().decode(errors="replace")
                self._proc = None
                self._close_log()
                raise RuntimeError(f"the local server process exited: {err.strip()[-500:]}")
            try:
                self.stats()
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the local server process did not start in time") from None
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 10 s)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server
            proc.kill()
            proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        log, self._stderr = self._stderr, None
        if log is not None:
            log.close()

    def _admin(self, method: str, path: str, **kwargs: Any) -> Any:
        with httpx.Client(trust_env=False, timeout=10.0) as http:
            url = f"{self.base_url}/_local/{path}"
            response = http.request(method, url, headers=self._admin_headers, **kwargs)
            response.raise_for_status()
            return response.json()["data"]

    def stats(self) -> dict[str, Any]:
        """The server's counters (``GET /_local/stats``)."""
        data: dict[str, Any] = self._admin("GET", "stats")
        return data

    def advance(self, seconds: float) -> None:
        """Move the server's clock forward (expire results and tasks without waiting)."""
        self._admin("POST", "advance", json={"seconds": seconds})

    def reset_stats(self) -> None:
        """Zero the server's counters."""
        self._admin("POST", "reset")

    def __enter__(self) -> LocalServerProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> LocalServerProcess:
        await anyio.to_thread.run_sync(self.start)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.stop)
