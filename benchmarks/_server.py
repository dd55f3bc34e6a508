"""The local server as a separate uvicorn process on loopback, with its CPU time."""

from __future__ import annotations

import psutil

from idphoto_async.testing import LocalServerProcess

__all__ = ["API_KEY", "ServerProcess"]

API_KEY = "benchmark-key"
"""The key every client sends (the local server accepts any key, but refuses none)."""


class ServerProcess(LocalServerProcess):
    """`idphoto_async.testing.LocalServerProcess` (basic engine) that also reports its CPU."""

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far."""
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)
