"""When to try a failed request again: backoff with full jitter, and Retry-After parsing."""

from __future__ import annotations

import email.utils
import math
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

import attrs

__all__ = ["MAX_RETRY_AFTER", "RetryPolicy", "parse_retry_after"]

MAX_RETRY_AFTER: Final = 86400.0
"""Retry-After values above one day are treated as garbage (None), not honoured."""

_DELTA_SECONDS = re.compile(r"[+-]?[0-9]{1,15}(?:\.[0-9]{1,9})?")


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
