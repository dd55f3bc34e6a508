"""The local server as a separate uvicorn process on loopback, with its stats and CPU time."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from types import TracebackType
from typing import Any, Self

import httpx
import psutil

__all__ = ["ServerProcess", "free_port"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``python -m idphoto_async.server --engine basic ...`` for the life of a ``with`` block.

    ``args`` are extra CLI flags (``--qps``, ``--processing-time``, ``--seed``...).
    """

    def __init__(self, args: list[str], *, startup_timeout: float = 30.0) -> None:
        self.args = args
        self.port = free_port()
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._ps: psutil.Process | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        cmd = [sys.executable, "-m", "idphoto_async.server", "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--engine", "basic", *self.args]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._ps = psutil.Process(self._proc.pid)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self._proc.returncode}: {cmd}")
            try:
                self.stats()
                return self
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    self.stop()
                    limit = self.startup_timeout
                    raise RuntimeError(f"the server did not listen within {limit} s") from None
                time.sleep(0.05)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        """``GET /_local/stats``'s data object."""
        with httpx.Client(trust_env=False, timeout=5.0) as http:
            response = http.get(self.base_url + "/_local/stats")
            response.raise_for_status()
            data: dict[str, Any] = response.json()["data"]
            return data

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far."""
        assert self._ps is not None
        times = self._ps.cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s)."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
