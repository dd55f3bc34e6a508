"""Completion times and RSS samples of one client run (shared by every client)."""

from __future__ import annotations

import threading
import time

import psutil

__all__ = ["Progress", "RssSampler"]


class Progress:
    """Counts finished photos; keeps each completion time (seconds since start)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.ok = 0
        self.failed = 0
        self.times: list[float] = []

    def done(self, ok: bool = True) -> None:
        """One photo finished (thread-safe enough: list.append is atomic in CPython)."""
        self.times.append(time.perf_counter() - self.start)
        if ok:
            self.ok += 1
        else:
            self.failed += 1


class RssSampler(threading.Thread):
    """Samples this process's RSS every ``interval`` s as ``(photos done, rss bytes)``."""

    def __init__(self, progress: Progress, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.progress = progress
        self.interval = interval
        self.samples: list[tuple[int, int]] = []
        self._halt = threading.Event()
        self._proc = psutil.Process()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def sample(self) -> None:
        done = self.progress.ok + self.progress.failed
        self.samples.append((done, int(self._proc.memory_info().rss)))

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.sample()
