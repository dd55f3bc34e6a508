"""RetryPolicy backoff bounds and Retry-After parsing."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from idphoto_async._retry import MAX_RETRY_AFTER, Retry, RetryPolicy, parse_retry_after

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_defaults() -> None:
    policy = RetryPolicy()
    assert (policy.max_retries, policy.initial, policy.maximum) == (3, 0.5, 20.0)
    assert attrs.evolve(policy, max_retries=0).max_retries == 0
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.max_retries = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"initial": 0},
        {"initial": -1},
        {"initial": math.inf},
        {"initial": math.nan},
        {"maximum": 0.1},  # below initial
        {"maximum": math.inf},
        {"initial": "x"},
    ],
)
def test_rejects_bad_fields(kwargs: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_delay_is_full_jitter_under_an_exponential_cap() -> None:
    policy = RetryPolicy(initial=0.5, maximum=20.0)
    assert [policy.delay(a, rand=lambda: 1.0) for a in range(8)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        20.0,
        20.0,
    ]
    assert policy.delay(3, rand=lambda: 0.0) == 0.0
    assert policy.delay(3, rand=lambda: 0.25) == 1.0
    assert policy.delay(3, rand=lambda: 7.0) == 4.0  # a bad rand is clamped
    assert policy.delay(3, rand=lambda: -1.0) == 0.0
    assert policy.delay(10**6, rand=lambda: 1.0) == 20.0  # no overflow
    assert 0.0 <= policy.delay(2) <= 2.0  # the default rand
    with pytest.raises(ValueError, match="attempt"):
        policy.delay(-1)


def test_delay_obeys_retry_after_exactly_within_maximum() -> None:
    policy = RetryPolicy(maximum=20.0)
    assert policy.delay(0, retry_after=7.5, rand=lambda: 0.0) == 7.5
    assert policy.delay(5, retry_after=0.0) == 0.0
    assert policy.delay(0, retry_after=-3.0) == 0.0
    assert policy.delay(0, retry_after=3600.0) == 20.0
    assert policy.delay(0, retry_after=math.inf) == 20.0
    assert policy.delay(1, retry_after=math.nan, rand=lambda: 1.0) == 1.0  # falls back


@given(
    max_retries=st.integers(0, 10),
    initial=st.floats(1e-3, 100),
    extra=st.floats(0, 1000),
    attempt=st.integers(0, 10_000),
    r=st.floats(0, 1),
    retry_after=st.none() | st.floats(allow_nan=True, allow_infinity=True),
)
def test_delay_bounds(
    max_retries: int,
    initial: float,
    extra: float,
    attempt: int,
    r: float,
    retry_after: float | None,
) -> None:
    policy = RetryPolicy(max_retries=max_retries, initial=initial, maximum=initial + extra)
    delay = policy.delay(attempt, retry_after=retry_after, rand=lambda: r)
    assert 0.0 <= delay <= policy.maximum
    if retry_after is None or math.isnan(retry_after):
        assert delay <= min(policy.maximum, initial * 2.0 ** min(attempt, 64))
    else:
        assert delay == min(policy.maximum, max(0.0, retry_after))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 2 ", 2.0),
        ("1.5", 1.5),
        ("+3", 3.0),
        ("-5", 0.0),
        ("0", 0.0),
        ("86400", 86400.0),
        ("86401", None),
        ("99999999999999", None),
        (None, None),
        ("", None),
        ("   ", None),
        ("soon", None),
        ("1e3", None),
        ("1_000", None),
        ("nan", None),
        ("inf", None),
        ("Mon, 99 Foo 2026 00:00:00 GMT", None),
    ],
)
def test_parse_retry_after_seconds_and_garbage(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_http_date() -> None:
    future = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(future, now=NOW) == 90.0
    past = format_datetime(NOW - timedelta(hours=1), usegmt=True)
    assert parse_retry_after(past, now=NOW) == 0.0
    far = format_datetime(NOW + timedelta(days=2), usegmt=True)
    assert parse_retry_after(far, now=NOW) is None
    # A date without a zone ("-0000") and a naive ``now`` are both taken as UTC.
    assert parse_retry_after("Fri, 02 Jan 2026 03:05:05 -0000", now=NOW) == 60.0
    assert parse_retry_after(future, now=NOW.replace(tzinfo=None)) == 90.0
    other_zone = NOW.astimezone(timezone(timedelta(hours=5)))
    assert parse_retry_after(future, now=other_zone) == 90.0
    # Without ``now`` the current time is used: a date in the past gives 0.
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT") == 0.0


@given(value=st.none() | st.text(max_size=60), now=st.none() | st.datetimes())
def test_parse_retry_after_never_raises(value: str | None, now: datetime | None) -> None:
    result = parse_retry_after(value, now=now)
    assert result is None or 0.0 <= result <= MAX_RETRY_AFTER


@given(
    when=st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(9000, 1, 1), timezones=st.just(UTC)
    )
)
def test_parse_retry_after_any_http_date(when: datetime) -> None:
    result = parse_retry_after(format_datetime(when, usegmt=True), now=NOW)
    assert result is None or 0.0 <= result <= MAX_RETRY_AFTER


# -- RetryPolicy.call: the one retry loop ------------------------------------------------------


class Flaky(Exception):
    def __init__(self, retry_after: float | None = None) -> None:
        self.retry_after = retry_after


class Fatal(Exception):
    pass


def retry_flaky(exc: Exception) -> Retry | None:
    return Retry("flaky", after=exc.retry_after) if isinstance(exc, Flaky) else None


class Script:
    """An operation failing with ``failures`` in turn, then returning its attempt number."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.attempts: list[int] = []

    async def __call__(self, attempt: int) -> int:
        self.attempts.append(attempt)
        if self.failures:
            raise self.failures.pop(0)
        return attempt


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.mark.anyio
async def test_call_retries_what_the_predicate_allows_with_backoff() -> None:
    policy = RetryPolicy(max_retries=3, initial=0.5, maximum=20.0)
    script, sleeps = Script(Flaky(), Flaky()), Sleeps()
    assert await policy.call(script, retry_on=retry_flaky, sleep=sleeps) == 3
    assert script.attempts == [1, 2, 3]
    assert len(sleeps.delays) == 2
    assert 0 <= sleeps.delays[0] <= 0.5 and 0 <= sleeps.delays[1] <= 1.0  # full jitter caps


@pytest.mark.anyio
async def test_call_obeys_the_servers_wait_over_the_backoff() -> None:
    policy = RetryPolicy(max_retries=3, initial=0.5, maximum=5.0)
    script, sleeps = Script(Flaky(retry_after=3.0), Flaky(retry_after=0.0), Flaky(60.0)), Sleeps()
    assert await policy.call(script, retry_on=retry_flaky, sleep=sleeps) == 4
    assert sleeps.delays == [3.0, 0.0, 5.0]  # capped at maximum


@pytest.mark.anyio
async def test_call_raises_what_the_predicate_refuses_at_once() -> None:
    script, sleeps = Script(Flaky(), Fatal()), Sleeps()
    with pytest.raises(Fatal):
        await RetryPolicy().call(script, retry_on=retry_flaky, sleep=sleeps)
    assert script.attempts == [1, 2] and len(sleeps.delays) == 1


@pytest.mark.anyio
async def test_call_gives_up_after_max_retries_with_the_last_error() -> None:
    last = Flaky()
    script, sleeps = Script(Flaky(), Flaky(), last), Sleeps()
    with pytest.raises(Flaky) as caught:
        await RetryPolicy(max_retries=5).call(
            script, retry_on=retry_flaky, max_retries=2, sleep=sleeps
        )
    assert caught.value is last and script.attempts == [1, 2, 3]
    script = Script(Flaky())
    with pytest.raises(Flaky):
        await RetryPolicy(max_retries=0).call(script, retry_on=retry_flaky, sleep=sleeps)
    assert script.attempts == [1]


@pytest.mark.anyio
async def test_call_logs_each_retry_and_never_catches_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    import anyio

    caplog.set_level(logging.INFO, logger="idphoto_async")
    script = Script(Flaky(retry_after=0.0))
    await RetryPolicy().call(script, retry_on=retry_flaky, what="the thing")
    (record,) = caplog.records
    assert record.name == "idphoto_async" and record.levelno == logging.INFO
    assert record.getMessage() == "Retrying the thing (retry 1 of 3) in 0.00 s: flaky"

    seen: list[Exception] = []

    def record_all(exc: Exception) -> Retry | None:
        seen.append(exc)
        return Retry("any")

    async def forever(attempt: int) -> None:
        await anyio.sleep_forever()

    with anyio.move_on_after(0.05) as scope:
        await RetryPolicy().call(forever, retry_on=record_all)
    assert scope.cancelled_caught and seen == []
