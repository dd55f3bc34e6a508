"""The server's clock: real time plus an offset that tests can move forward."""

from __future__ import annotations

import threading
import time

__all__ = ["Clock"]


class Clock:
    """Wall and monotonic time shifted by `advance` (thread-safe)."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    @property
    def offset(self) -> float:
        """Seconds the clock has been moved forward."""
        return self._offset

    def advance(self, seconds: float) -> float:
        """Move time forward (never back); returns the total offset."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds
            return self._offset

    def time(self) -> float:
        """Epoch seconds, as the server sees them."""
        return time.time() + self._offset

    def monotonic(self) -> float:
        """Monotonic seconds, as the server sees them (for windows and deadlines)."""
        return time.monotonic() + self._offset
