"""The SDK's one way to try again: `RetryPolicy.call`, a predicate, backoff, Retry-After.

Modelled on stamina, on anyio (so it runs on asyncio and trio): an operation is called;
when it raises, one predicate (``retry_on``) looks at the exception and answers `Retry`
(try again, with a reason and optionally the server's own wait, which overrides the
backoff) or None (raise it). The policy decides how many times and how long to wait
(exponential backoff with full jitter). Every retry is logged at INFO.

The transport (API requests), the downloads and the batch runner all retry through it.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Final, TypeVar

import anyio
import attrs

from ._logging import logger

__all__ = ["MAX_RETRY_AFTER", "Retry", "RetryPolicy", "RetryPredicate", "parse_retry_after"]

T = TypeVar("T")

MAX_RETRY_AFTER: Final = 86400.0
"""Retry-After values above one day are treated as garbage (None), not honoured."""

_DELTA_SECONDS = re.compile(r"[+-]?[0-9]{1,15}(?:\.[0-9]{1,9})?")


@attrs.frozen
class Retry:
    """A predicate's "yes, try again": why, and the server's wait if it named one."""

    reason: str
    """Why the attempt failed, for the log (e.g. ``"HTTP 503"``); never holds the key."""
    after: float | None = None
    """Seconds to wait instead of the backoff (a Retry-After; 0 to retry at once)."""


RetryPredicate = Callable[[Exception], Retry | None]
"""Looks at an attempt's exception: `Retry` to try again, None to raise it."""


def _positive_finite(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0 < value < math.inf:
        raise ValueError(f"{attribute.name} must be a positive finite number, got {value!r}")


def _at_least_initial(
    instance: RetryPolicy, attribute: attrs.Attribute[float], value: float
) -> None:
    if value < instance.initial:
        raise ValueError(f"maximum ({value!r}) must be >= initial ({instance.initial!r})")


@attrs.frozen
class RetryPolicy:
    """How often and how long to wait before retrying a retryable failure.

    ``delay(attempt)`` is exponential backoff with full jitter (uniform in
    ``[0, min(maximum, initial * 2**attempt)]``), so clients that failed together do not
    retry together; a server's Retry-After is obeyed exactly (capped at ``maximum``).
    """

    max_retries: int = attrs.field(
        default=3, validator=[attrs.validators.instance_of(int), attrs.validators.ge(0)]
    )
    """Retries after the first try (0 disables retrying)."""
    initial: float = attrs.field(default=0.5, converter=float, validator=_positive_finite)
    """Upper bound of the first retry's delay, in seconds."""
    maximum: float = attrs.field(
        default=20.0, converter=float, validator=[_positive_finite, _at_least_initial]
    )
    """Cap on any delay, Retry-After included, in seconds."""

    def delay(
        self,
        attempt: int,
        *,
        retry_after: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first retry)."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt!r}")
        if retry_after is not None and not math.isnan(retry_after):
            return min(self.maximum, max(0.0, retry_after))
        cap = min(self.maximum, self.initial * 2.0 ** min(attempt, 64))
        return cap * min(1.0, max(0.0, rand()))

    async def call(
        self,
        operation: Callable[[int], Awaitable[T]],
        *,
        retry_on: RetryPredicate,
        max_retries: int | None = None,
        what: str = "request",
        sleep: Callable[[float], Awaitable[object]] = anyio.sleep,
    ) -> T:
        """Await ``operation(attempt)`` (1, 2, ...) until it returns; retry per ``retry_on``.

        ``retry_on`` is called with every exception the operation raises (``Exception``
        only: cancellation always goes through at once) and decides alone whether it is
        worth another attempt; ``max_retries`` (default `max_retries`) bounds how many. The
        wait before retry ``n`` is `delay`, or the `Retry`'s ``after`` when it has one. The
        last exception is raised as it is. ``what`` names the operation in the INFO line
        logged for each retry (e.g. ``"POST /api/tasks/visual/idphoto"``).
        """
        retries = self.max_retries if max_retries is None else max_retries
        attempt = 1
        while True:
            try:
                return await operation(attempt)
            except Exception as exc:
                verdict = retry_on(exc)
                if verdict is None or attempt > retries:
                    raise
                delay = self.delay(attempt - 1, retry_after=verdict.after)
                logger.info(
                    "Retrying %s (retry %d of %d) in %.2f s: %s",
                    what,
                    attempt,
                    retries,
                    delay,
                    verdict.reason,
                )
            await sleep(delay)
            attempt += 1


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date.

    Returns None when the header is missing, unparsable, not finite, or asks for more than
    `MAX_RETRY_AFTER` (one day): such a value is no rate-limit hint, so the caller
    falls back to its own backoff. Negative values and dates in the past give 0.
    Fractional seconds are accepted. Never raises.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if now is None:
            now = datetime.now(UTC)
        elif now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    if seconds > MAX_RETRY_AFTER:
        return None
    return max(0.0, seconds)
