"""When to query a task's status: few requests per task, learned from recent tasks."""

from __future__ import annotations

import bisect
import math
from collections import deque
from statistics import NormalDist

from ._constants import MAX_PROCESSING_SECONDS

__all__ = ["PollSchedule"]

PRIOR_LOG_SPREAD = 0.5
"""Prior standard deviation of log durations for the busy fit (a lognormal's sigma)."""
PRIOR_WEIGHT = 4
"""How many observations the prior spread counts as."""
_SHORTEST = 0.05  # durations below this are taken as this in the log fit (0 s answers)


class PollSchedule:
    """Poll timing learned from the processing durations of recent tasks.

    The API's QPS bound counts every request, so in batch work each status query takes the
    place of a create: ``photos/s <= qps / requests per photo``. Polling every 1-2 s (the
    vendor's advice) costs about ``duration + 1`` queries per task. Instead the first query
    goes out at the ``quantile`` (default 80 %) of recently observed durations, so most tasks
    need exactly one query; the rest are aimed at higher quantiles (each step cuts the share
    still left by 4: 95 %, 98.75 %, ... up to the slowest observed), then the gaps grow
    geometrically (by ``backoff``) within ``[min_delay, max_delay]``.

    The trade-off: a first query late in the distribution adds latency to each task (up to
    the gap between its real end and the quantile), but with many tasks in flight it costs
    no throughput, since the limiter is then the bottleneck, and it saves requests, which
    are what the QPS bound counts. About 1.3 queries per task instead of 3-4. When the
    caller says requests are the bottleneck (``busy``: the rate limiter has a queue, as in a
    batch at the QPS bound), the first query aims at `busy_quantile` (97 %) instead, and
    not at the observed quantile alone: a quantile read off a few dozen durations is too
    low about half the time (the 97 % of 64 observations is their third largest, which 4.6 %
    of tasks exceed on average). It takes the larger of that and the predictive quantile of
    a lognormal fit to the window (log mean and spread, the spread shrunk towards
    `PRIOR_LOG_SPREAD` while observations are few): about 1.03 queries per task.

    Every method is O(window) at most. An instance is meant for one event loop (it does no
    locking; no method awaits).
    """

    def __init__(
        self,
        *,
        initial_guess: float = 3.0,
        quantile: float = 0.8,
        busy_quantile: float = 0.97,
        busy_prior: float = 3.0,
        window: int = 64,
        min_delay: float = 0.25,
        max_delay: float = 10.0,
        backoff: float = 1.6,
    ) -> None:
        if not 0 < initial_guess < math.inf:
            raise ValueError(f"initial_guess must be a positive number, got {initial_guess!r}")
        if not 0 < quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")
        if not 0 < busy_quantile < 1:
            raise ValueError(f"busy_quantile must be in (0, 1), got {busy_quantile!r}")
        if not 1 <= busy_prior < math.inf:
            raise ValueError(f"busy_prior must be >= 1, got {busy_prior!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an integer >= 1, got {window!r}")
        if not 0 < min_delay <= max_delay < math.inf:
            raise ValueError(
                f"need 0 < min_delay <= max_delay < inf, got {min_delay!r}, {max_delay!r}"
            )
        if not 1 <= backoff < math.inf:
            raise ValueError(f"backoff must be >= 1, got {backoff!r}")
        self.initial_guess = float(initial_guess)
        self.quantile = float(quantile)
        self.busy_quantile = float(busy_quantile)
        self.busy_prior = float(busy_prior)
        self.window = window
        self.min_delay = float(min_delay)
        self.max_delay = float(max_delay)
        self.backoff = float(backoff)
        self._recent: deque[float] = deque()
        self._sorted: list[float] = []
        self._log_sum = 0.0  # of log(max(duration, _SHORTEST)) over the window
        self._log_sq_sum = 0.0

    def __repr__(self) -> str:
        return (
            f"PollSchedule(quantile={self.quantile:g}, observations={len(self._recent)}, "
            f"first_delay={self.first_delay():.3g})"
        )

    @property
    def observations(self) -> int:
        """Durations currently in the window."""
        return len(self._recent)

    def first_delay(self, *, busy: bool = False) -> float:
        """Seconds after create before the first query.

        ``busy``: requests are the bottleneck (the limiter has a queue), so latency is free
        and requests are not: aim at `busy_quantile` and, before anything is learned, at
        `busy_prior` times `initial_guess`.
        """
        if self._sorted:
            if busy:
                guess = max(self._at(self.busy_quantile), self._predicted(self.busy_quantile))
            else:
                guess = self._at(self.quantile)
        else:
            guess = self.initial_guess * (self.busy_prior if busy else 1.0)
        return min(MAX_PROCESSING_SECONDS, max(self.min_delay, guess))

    def next_delay(self, elapsed: float, polls: int, *, busy: bool = False) -> float:
        """Seconds until the next query of a task still processing ``elapsed`` s after create.

        ``polls`` is the number of queries made for it so far; ``busy`` as in `first_delay`.
        """
        target = self._next_target(elapsed, self.busy_quantile if busy else self.quantile)
        if target is not None:
            delay = target - elapsed
        else:
            delay = max(
                (self.backoff - 1.0) * elapsed,
                self.min_delay * self.backoff ** min(max(polls - 1, 0), 64),
            )
        delay = min(self.max_delay, max(self.min_delay, delay))
        left = MAX_PROCESSING_SECONDS - elapsed
        if left > 0:
            # The service fails a task after 180 s: look again then, not later.
            delay = min(delay, max(self.min_delay, left))
        return delay

    def record(self, duration: float) -> None:
        """Add a finished task's processing duration in seconds (others are ignored)."""
        if not 0 <= duration < math.inf:
            return
        duration = min(duration, MAX_PROCESSING_SECONDS)
        if len(self._recent) == self.window:
            oldest = self._recent.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, oldest)]
            log = math.log(max(oldest, _SHORTEST))
            self._log_sum -= log
            self._log_sq_sum -= log * log
        self._recent.append(duration)
        bisect.insort(self._sorted, duration)
        log = math.log(max(duration, _SHORTEST))
        self._log_sum += log
        self._log_sq_sum += log * log

    def _predicted(self, level: float) -> float:
        """The ``level`` quantile of the next duration under a lognormal fit to the window.

        Predictive: the spread includes the uncertainty of the fitted mean (``1 + 1/n``),
        and with few observations it leans on `PRIOR_LOG_SPREAD`.
        """
        n = len(self._recent)
        mean = self._log_sum / n
        squares = max(0.0, self._log_sq_sum - n * mean * mean)  # (n - 1) * sample variance
        variance = (PRIOR_WEIGHT * PRIOR_LOG_SPREAD**2 + squares) / (PRIOR_WEIGHT + n - 1)
        spread = math.sqrt(variance * (1.0 + 1.0 / n))
        return math.exp(min(mean + NormalDist().inv_cdf(level) * spread, 700.0))

    def _index(self, level: float) -> int:
        return min(len(self._sorted) - 1, max(0, math.ceil(level * len(self._sorted)) - 1))

    def _at(self, level: float) -> float:
        return self._sorted[self._index(level)]

    def _next_target(self, elapsed: float, level: float) -> float | None:
        """The first quantile of the ladder (from ``level``) above ``elapsed``, or None."""
        if not self._sorted:
            return None
        while True:
            index = self._index(level)
            if self._sorted[index] > elapsed:
                return self._sorted[index]
            if index == len(self._sorted) - 1:
                return None
            level = 1.0 - (1.0 - level) / 4.0
