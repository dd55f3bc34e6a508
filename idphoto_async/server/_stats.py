"""Counters for tests and benchmarks: updated on the event loop, read from any thread."""

from __future__ import annotations

import collections
import threading
from typing import Any

__all__ = ["Stats"]

_WINDOW = 1.0
_KEPT_ARRIVALS = 100_000
"""Arrival times kept per endpoint for `steady_rate` (memory stays bounded)."""


def steady_rate(times: collections.deque[float]) -> float | None:
    """Arrivals per second between the 10th and the 90th percentile arrival (None if < 10).

    That leaves out how a run starts and ends: it is the rate a client kept up.
    """
    if len(times) < 10:
        return None
    lo, hi = len(times) // 10, len(times) * 9 // 10
    span = times[hi] - times[lo]
    return (hi - lo) / span if span > 0 else None


class Stats:
    """Requests, 429s, peak requests per 1 s window per key, creates, credits, faults."""

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._arrivals: dict[str, collections.deque[float]] = {}
        self._reset()

    def _reset(self) -> None:
        self._requests: collections.Counter[str] = collections.Counter()
        self._statuses: collections.Counter[int] = collections.Counter()
        self._peak: dict[str, int] = {}
        self._outcomes: collections.Counter[int] = collections.Counter()
        self._faults: collections.Counter[str] = collections.Counter()
        self._counts: collections.Counter[str] = collections.Counter()
        self._spans: dict[str, list[float]] = {}
        self._times: dict[str, collections.deque[float]] = {}
        self._arrivals.clear()

    def reset(self) -> None:
        """Zero every counter (tasks and results are kept)."""
        with self._lock:
            self._reset()

    def request(self, endpoint: str) -> None:
        """A request arrived at ``endpoint`` (create, query, download, admin, unknown)."""
        with self._lock:
            self._requests[endpoint] += 1

    def arrival(self, identity: str, now: float, endpoint: str = "api") -> None:
        """An API request to ``endpoint`` from ``identity`` (a key label or address) at ``now``."""
        with self._lock:
            span = self._spans.setdefault(endpoint, [now, now])
            span[1] = now
            times = self._times.get(endpoint)
            if times is None:
                times = self._times[endpoint] = collections.deque(maxlen=_KEPT_ARRIVALS)
            times.append(now)
            window = self._arrivals.setdefault(identity, collections.deque())
            window.append(now)
            while window and window[0] <= now - _WINDOW:
                window.popleft()
            self._peak[identity] = max(self._peak.get(identity, 0), len(window))

    def status(self, code: int) -> None:
        """A response with HTTP status ``code`` was sent."""
        with self._lock:
            self._statuses[code] += 1

    def count(self, name: str) -> None:
        """Bump a named counter: rate_limited, creates, successes, downloads..."""
        with self._lock:
            self._counts[name] += 1

    def outcome(self, state: int) -> None:
        """A task ended in ``state`` (1 is a charged credit)."""
        with self._lock:
            self._outcomes[state] += 1
            if state == 1:
                self._counts["successes"] += 1

    def fault(self, name: str) -> None:
        """A fault was injected."""
        with self._lock:
            self._faults[name] += 1

    def snapshot(self, tasks_by_state: dict[int, int], clock_offset: float) -> dict[str, Any]:
        """A JSON-ready copy of everything (keys of dicts are strings)."""
        with self._lock:
            return {
                "engine": self.engine,
                "requests": dict(self._requests),
                "requests_total": sum(self._requests.values()),
                "responses": {str(k): v for k, v in sorted(self._statuses.items())},
                "rate_limited": self._counts["rate_limited"],
                "responses_429": self._statuses[429],
                "peak_window": dict(self._peak),
                "peak_requests_per_second": max(self._peak.values(), default=0),
                "creates": self._counts["creates"],
                "successes": self._counts["successes"],
                "credits_charged": self._counts["successes"],
                "downloads": self._counts["downloads"],
                "outcomes": {str(k): v for k, v in sorted(self._outcomes.items())},
                "tasks_by_state": {str(k): v for k, v in sorted(tasks_by_state.items())},
                "faults": dict(self._faults),
                "faults_total": sum(self._faults.values()),
                "clock_offset": clock_offset,
                "arrival_span": {k: {"first": v[0], "last": v[1]} for k, v in self._spans.items()},
                "steady_arrival_rate": {k: steady_rate(v) for k, v in self._times.items()},
            }
