"""A strict sliding-window rate limit per identity (API key or client address)."""

from __future__ import annotations

import collections
import math

__all__ = ["SlidingWindowLimiter"]


class SlidingWindowLimiter:
    """At most ``qps`` requests in any 1 s window (for qps < 1: one per 1/qps seconds).

    With ``count_refused`` a refused request takes a place in the window too, so a client
    that keeps hammering stays refused, as strict gateways do.
    """

    def __init__(self, qps: float, *, count_refused: bool = True) -> None:
        if qps <= 0:
            raise ValueError("qps must be > 0")
        self.window = max(1.0, 1.0 / qps)
        self.limit = max(1, math.floor(qps * self.window + 1e-9))
        self.count_refused = count_refused
        self._hits: dict[str, collections.deque[float]] = {}

    def check(self, identity: str, now: float) -> float | None:
        """Admit a request at ``now``: None if allowed, else seconds until a place frees."""
        hits = self._hits.get(identity)
        if hits is None:
            hits = self._hits[identity] = collections.deque()
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) < self.limit:
            hits.append(now)
            return None
        if self.count_refused:
            hits.append(now)
        # The wait after which fewer than `limit` hits remain in the window.
        return max(hits[-self.limit] + self.window - now, 0.0)

    def forget_idle(self, now: float) -> None:
        """Drop identities with no request in the window (keeps memory bounded)."""
        for identity in [i for i, h in self._hits.items() if not h or h[-1] <= now - self.window]:
            del self._hits[identity]
