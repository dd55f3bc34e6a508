"""Every knob of the local server, in one frozen value."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import attrs

from .._constants import (
    DEFAULT_QPS,
    MAX_PROCESSING_SECONDS,
    MAX_UPLOAD_BYTES,
    MAX_URL_IMAGE_BYTES,
    RESULT_TTL,
)
from ._latency import Latency

__all__ = ["DEFAULT_FAIL_STATES", "RateScope", "ServerConfig"]

RateScope = Literal["all", "create"]
DEFAULT_FAIL_STATES: tuple[int, ...] = (-1, -2, -8, -13)


def _keys(value: Iterable[str] | str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    return tuple(k for k in value if k)


def _qps(value: float | None) -> float | None:
    if value is None or value == 0:
        return None
    if not 0 < float(value) < float("inf"):
        raise ValueError(f"qps must be a positive number (0 or None: unlimited), got {value!r}")
    return float(value)


def _states(value: Iterable[int]) -> tuple[int, ...]:
    return tuple(int(s) for s in value)


def _check_spec(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    Latency.parse(value)


def _check_fail_states(
    _: object, attribute: attrs.Attribute[tuple[int, ...]], value: tuple[int, ...]
) -> None:
    if not value or any(s >= 0 for s in value):
        raise ValueError("fail_states must be a non-empty list of negative task states")


def _fault_rate() -> float:
    return attrs.field(
        default=0.0, converter=float, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)]
    )


@attrs.frozen(kw_only=True)
class ServerConfig:
    """Configuration of `create_app`; the defaults behave like the real service.

    Fault rates are probabilities in 0..1, all drawn from one ``random.Random(seed)``.
    """

    api_keys: tuple[str, ...] = attrs.field(default=(), converter=_keys, repr=False)
    """Accepted X-API-KEY values; empty accepts any request (with or without a key)."""
    qps: float | None = attrs.field(default=DEFAULT_QPS, converter=_qps)
    """Requests per second per key (per client address without keys); None or 0: unlimited."""
    rate_scope: RateScope = attrs.field(
        default="all", validator=attrs.validators.in_(("all", "create"))
    )
    """Which requests the limit counts: create and query (``all``) or ``create`` only."""
    count_refused: bool = True
    """Refused requests count in the window too (a client that hammers stays refused)."""
    send_retry_after: bool = True
    """Send a Retry-After header with 429 answers."""
    processing_time: str = attrs.field(default="lognormal:3,0.6", validator=_check_spec)
    """Simulated processing seconds per task (see `Latency`)."""
    result_ttl: float = attrs.field(
        default=RESULT_TTL, converter=float, validator=attrs.validators.gt(0.0)
    )
    """Seconds a finished task and its result URL are kept."""
    max_processing: float = attrs.field(
        default=MAX_PROCESSING_SECONDS, converter=float, validator=attrs.validators.gt(0.0)
    )
    """A task still processing after this many seconds fails with state -8."""
    workers: int = attrs.field(default=2, converter=int, validator=attrs.validators.ge(1))
    """Engine threads (tasks beyond them stay queued, state 0)."""
    engine: str | None = None
    """``basic`` or ``local``; None picks ``engine.default_engine_name()``."""
    seed: int | None = None
    """Seed of the random source for latency and faults (None: unpredictable)."""
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    """image_file limit (413 above it)."""
    max_url_bytes: int = MAX_URL_IMAGE_BYTES
    """image_url limit (state -5 above it)."""
    fetch_timeout: float = 30.0
    """Seconds to download an image_url (state -3 when it fails)."""

    error_rate: float = _fault_rate()
    """500 on create, before the task is made (nothing charged)."""
    create_error_after_rate: float = _fault_rate()
    """500 on create after the task is made: it runs and is charged; the client lacks its id."""
    query_error_rate: float = _fault_rate()
    """500 on query."""
    drop_rate: float = _fault_rate()
    """Create/query: send the response headers, then close the connection mid-body."""
    slow_rate: float = _fault_rate()
    """Create/query: answer ``slow_seconds`` late."""
    slow_seconds: float = attrs.field(
        default=2.0, converter=float, validator=attrs.validators.ge(0.0)
    )
    spurious_429_rate: float = _fault_rate()
    """Create/query: a 429 although the key is under its QPS."""
    fail_rate: float = _fault_rate()
    """Tasks that end in a random state of ``fail_states`` instead of succeeding."""
    fail_states: tuple[int, ...] = attrs.field(
        default=DEFAULT_FAIL_STATES, converter=_states, validator=_check_fail_states
    )
    truncate_rate: float = _fault_rate()
    """Result downloads whose body is cut short (Content-Length stays the full size)."""

    @property
    def latency(self) -> Latency:
        """The parsed ``processing_time``."""
        return Latency.parse(self.processing_time)

    @property
    def any_abort_faults(self) -> bool:
        """Whether connections may be cut on purpose (drop or truncate)."""
        return self.drop_rate > 0 or self.truncate_rate > 0
