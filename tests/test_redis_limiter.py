"""RedisLimiter against a real redis-server: spacing, sharing, 429 pauses, failure modes."""

from __future__ import annotations

import itertools
import json
import logging
import math
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator

import anyio
import pytest
import redis
import redis.asyncio
from redis_server import free_port, running_redis_server

from idphoto_async._client import AsyncIDPhotoClient
from idphoto_async._errors import APIConnectionError, APIError, IDPhotoError, LimiterTimeoutError
from idphoto_async._limiter import Limiter, Reservation
from idphoto_async._redis_limiter import (
    REDIS_DEFAULT_MARGIN,
    LimiterUnavailableError,
    RedisLimiter,
    redact_url,
)
from idphoto_async.testing import LocalServer

pytestmark = pytest.mark.exclusive  # strict rate windows on the wall clock


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with running_redis_server() as url:
        yield url


@pytest.fixture
def key() -> str:
    return f"idphoto:limiter:test-{uuid.uuid4().hex}"


def max_in_window(stamps: list[float], width: float = 1.0) -> int:
    """The most stamps in any closed interval of ``width`` seconds."""
    stamps = sorted(stamps)
    best, j = 0, 0
    for i, start in enumerate(stamps):
        j = max(j, i)
        while j + 1 < len(stamps) and stamps[j + 1] <= start + width:
            j += 1
        best = max(best, j - i + 1)
    return best


def rate(stamps: list[float]) -> float:
    """Sustained grants per second from the first grant to the last."""
    stamps = sorted(stamps)
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


async def hammer(limiter: RedisLimiter, until: float, out: list[float]) -> None:
    while time.monotonic() < until:
        await limiter.acquire()
        out.append(time.monotonic())


# -- spacing and sharing ------------------------------------------------------------------


@pytest.mark.anyio
async def test_grants_are_spaced_under_the_strict_window(redis_url: str, key: str) -> None:
    qps = 10.0
    async with RedisLimiter(redis_url, key=key, qps=qps) as limiter:
        assert isinstance(limiter, Limiter)
        stamps: list[float] = []
        await hammer(limiter, time.monotonic() + 2.0, stamps)
    assert max_in_window(stamps) <= math.floor(qps)
    assert rate(stamps) >= 0.9 * qps
    assert limiter.acquired == len(stamps)


@pytest.mark.anyio
async def test_instances_on_separate_connections_share_one_budget(redis_url: str, key: str) -> None:
    qps = 5.0
    limiters = [RedisLimiter(redis_url, key=key, qps=qps) for _ in range(3)]
    stamps: list[float] = []
    until = time.monotonic() + 2.0
    async with anyio.create_task_group() as tg:
        for limiter in limiters:
            tg.start_soon(hammer, limiter, until, stamps)
    for limiter in limiters:
        await limiter.aclose()
    assert max_in_window(stamps) <= math.floor(qps)
    assert rate(stamps) >= 0.9 * qps
    counts = [limiter.acquired for limiter in limiters]
    assert max(counts) - min(counts) <= 2, counts  # FIFO between processes: nobody starves


_WORKER = textwrap.dedent(
    """
    import json, sys, time
    import anyio
    from idphoto_async._redis_limiter import RedisLimiter

    url, key, qps, duration, backend = sys.argv[1:]
    duration = float(duration)

    async def main() -> None:
        stamps = []
        async with RedisLimiter(url, key=key, qps=float(qps)) as limiter:
            await limiter.check()  # connected
            print("ready", flush=True)
            start = float(sys.stdin.readline())  # the same start for every worker
            await anyio.sleep(max(0.0, start - time.time()))
            with anyio.move_on_after(start + duration - time.time()):
                while True:
                    await limiter.acquire()
                    stamps.append(time.time())
        print(json.dumps(stamps), flush=True)

    anyio.run(main, backend=backend)
    """
)


def test_four_processes_share_the_key(redis_url: str, key: str) -> None:
    qps, duration = 2.0, 4.0
    backends = ["asyncio", "trio", "asyncio", "trio"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, redis_url, key, str(qps), str(duration), b],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for b in backends
    ]
    for proc in procs:  # imports take seconds on a loaded machine: start when all are ready
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    start = time.time() + 0.5
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f"{start}\n")
        proc.stdin.flush()
    stamps: list[float] = []
    per_worker = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        mine = json.loads(out)
        per_worker.append(len(mine))
        stamps.extend(mine)
    window_max = max_in_window(stamps)
    fraction = len(stamps) / (qps * duration)
    print(
        f"\n4 processes, qps={qps:g}, {duration:g} s: {len(stamps)} grants {per_worker}, "
        f"max {window_max} per 1 s window, {rate(stamps):.3f}/s sustained "
        f"({rate(stamps) / qps:.1%} of the bound), {fraction:.1%} of qps*duration"
    )
    assert window_max <= math.floor(qps)
    assert rate(stamps) >= 0.9 * qps
    assert len(stamps) >= 0.9 * qps * duration - 1
    assert min(per_worker) >= 1, per_worker


# -- 429s ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_on_rate_limited_pauses_every_instance_and_slows_down(
    redis_url: str, key: str
) -> None:
    qps = 10.0
    spacing = (1 + REDIS_DEFAULT_MARGIN) / qps
    a = RedisLimiter(redis_url, key=key, qps=qps)
    b = RedisLimiter(redis_url, key=key, qps=qps)
    try:
        await a.acquire()
        await a.on_rate_limited(retry_after=1.0)
        await b.on_rate_limited(retry_after=0.5)  # during the pause: no second slowdown
        t0 = time.monotonic()
        await b.acquire()
        t1 = time.monotonic()
        await a.acquire()
        t2 = time.monotonic()
    finally:
        await a.aclose()
        await b.aclose()
    assert 0.95 <= t1 - t0 < 1.5
    assert t2 - t1 >= 2 * spacing * 0.9  # half the rate after the 429
    assert t2 - t1 < 4 * spacing  # ... but only halved once
    state = redis.Redis.from_url(redis_url).hgetall(key)
    assert float(state[b"floor"]) == pytest.approx(0.5)


@pytest.mark.anyio
async def test_state_lives_in_redis_server_time(redis_url: str, key: str) -> None:
    async with RedisLimiter(redis_url, key=key, qps=2) as limiter:
        await limiter.acquire()
    sync = redis.Redis.from_url(redis_url)
    seconds, micros = sync.time()
    tat = float(sync.hgetall(key)[b"tat"]) / 1e6
    assert 0 < tat - (seconds + micros / 1e6) <= (1 + REDIS_DEFAULT_MARGIN) / 2
    assert 0 < sync.pttl(key) <= 62_000


# -- timeouts and priority ----------------------------------------------------------------


@pytest.mark.anyio
async def test_timeout_is_decided_before_sleeping(redis_url: str, key: str) -> None:
    async with RedisLimiter(redis_url, key=key, qps=2) as limiter:
        await limiter.acquire()
        t0 = time.monotonic()
        with pytest.raises(LimiterTimeoutError) as info:
            await limiter.acquire(timeout=0.2)
        assert time.monotonic() - t0 < 0.15
        assert info.value.retry_after is not None
        assert 0.3 < info.value.retry_after <= 0.53
        with pytest.raises(LimiterTimeoutError):
            await limiter.acquire(timeout=0)
        await limiter.acquire(timeout=1.0)  # the slot ~0.52 s later


@pytest.mark.anyio
async def test_queued_waiter_fails_fast_when_the_queue_is_too_long(
    redis_url: str, key: str
) -> None:
    async with RedisLimiter(redis_url, key=key, qps=2) as limiter:
        await limiter.acquire()
        async with anyio.create_task_group() as tg:
            tg.start_soon(limiter.acquire)
            tg.start_soon(limiter.acquire)
            await anyio.sleep(0.05)
            t0 = time.monotonic()
            with pytest.raises(LimiterTimeoutError) as info:
                await limiter.acquire(timeout=0.6)
            assert time.monotonic() - t0 < 0.05
            assert info.value.retry_after is not None
            assert info.value.retry_after > 0.6
            # a deadline reached while queued behind others
            with pytest.raises(LimiterTimeoutError):
                await limiter.acquire(timeout=1.1, priority=False)
        assert limiter.waiting == 0


@pytest.mark.anyio
async def test_priority_callers_of_this_process_go_first(redis_url: str, key: str) -> None:
    order: list[str] = []

    async def take(name: str, priority: bool) -> None:
        await limiter.acquire(priority=priority)
        order.append(name)

    async with RedisLimiter(redis_url, key=key, qps=10) as limiter:
        await limiter.acquire()
        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(take, f"n{i}", False)
                await anyio.sleep(0.005)
            tg.start_soon(take, "p", True)
    assert order == ["p", "n0", "n1", "n2"]


@pytest.mark.anyio
async def test_cancelled_waiter_hands_on(redis_url: str, key: str) -> None:
    async with RedisLimiter(redis_url, key=key, qps=5) as limiter:
        await limiter.acquire()
        with anyio.move_on_after(0.05):
            await limiter.acquire()  # the head, cancelled while sleeping
        with anyio.fail_after(1.0):
            await limiter.acquire()
        assert limiter.waiting == 0


# -- clients and backends -----------------------------------------------------------------


@pytest.mark.anyio
async def test_injected_sync_client_works_on_any_backend(redis_url: str, key: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        limiter = RedisLimiter(client=client, key=key, qps=10)
        await limiter.acquire()
        await limiter.acquire()
        await limiter.aclose()  # leaves the injected client open
        assert client.ping()
    finally:
        client.close()


@pytest.mark.anyio
async def test_injected_asyncio_client(redis_url: str, key: str, anyio_backend: str) -> None:
    if anyio_backend == "trio":
        client = redis.asyncio.Redis.from_url(redis_url)  # never used: no I/O
        limiter = RedisLimiter(client=client, key=key)
        with pytest.raises(RuntimeError, match="asyncio only"):
            await limiter.acquire()
        return
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        limiter = RedisLimiter(client=client, key=key, qps=10)
        await limiter.acquire()
        await limiter.acquire()
        await limiter.aclose()
        assert await client.ping()
    finally:
        await client.aclose()


# -- Redis unreachable --------------------------------------------------------------------


@pytest.mark.anyio
async def test_unreachable_redis_fails_closed_fast_without_the_password(key: str) -> None:
    port = free_port()
    url = f"redis://:s3cret-pw@127.0.0.1:{port}/0"
    limiter = RedisLimiter(url, key=key)
    assert "s3cret" not in repr(limiter)
    assert limiter.url == f"redis://:***@127.0.0.1:{port}/0"
    t0 = time.monotonic()
    with pytest.raises(LimiterUnavailableError) as info:
        await limiter.acquire()
    assert time.monotonic() - t0 < 1.0
    err = info.value
    assert isinstance(err, IDPhotoError)
    assert err.retryable
    assert f"127.0.0.1:{port}" in str(err)
    assert "fail_mode='local'" in str(err)
    assert "s3cret" not in str(err) + repr(err)
    assert limiter.waiting == 0
    with pytest.raises(LimiterUnavailableError):
        await limiter.on_rate_limited(1.0)
    await limiter.aclose()


@pytest.mark.anyio
async def test_fail_mode_local_falls_back_to_qps_per_worker(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    limiter = RedisLimiter(url, key=key, qps=10, fail_mode="local", expected_workers=2)
    stamps: list[float] = []
    with caplog.at_level(logging.WARNING, logger="idphoto_async.limiter"):
        for _ in range(4):
            await limiter.acquire()
            stamps.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= (1 + REDIS_DEFAULT_MARGIN) / 5 * 0.95  # 10 qps / 2 workers
    assert max(gaps) < 0.5
    warnings = [r for r in caplog.records if "in-process limiter" in r.getMessage()]
    assert len(warnings) == 1
    assert f"127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}" in warnings[0].getMessage()
    await limiter.aclose()


def test_fail_mode_local_needs_expected_workers() -> None:
    with pytest.raises(ValueError, match="expected_workers"):
        RedisLimiter(fail_mode="local")
    with pytest.raises(ValueError, match="fail_mode"):
        RedisLimiter(fail_mode="open")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="qps"):
        RedisLimiter(qps=0)


def test_invalid_url_is_rejected_without_the_password() -> None:
    with pytest.raises(ValueError, match="redis_url") as info:
        RedisLimiter("http://:hunter2@example.com/")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
        ("rediss://user:pw@h:1/2", "rediss://user:***@h:1/2"),
        ("redis://user@h:1", "redis://user@h:1"),
        ("redis://h:1/0?password=pw&db=3", "redis://h:1/0?password=***&db=3"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_injected_client_url_hides_the_password() -> None:
    client = redis.Redis(host="10.0.0.7", port=6380, db=2, password="topsecret")
    limiter = RedisLimiter(client=client)
    assert limiter.url == "redis://:***@10.0.0.7:6380/2"
    assert "topsecret" not in repr(limiter)


def test_one_limiter_across_successive_event_loops(redis_url: str, key: str) -> None:
    limiter = RedisLimiter(redis_url, key=key, qps=10)

    async def once() -> None:
        async with limiter:  # closes its connections, which belong to this loop
            await limiter.acquire()

    for backend in ("asyncio", "asyncio", "trio", "asyncio"):
        anyio.run(once, backend=backend)
    assert limiter.acquired == 4


# -- the Limiter protocol ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_reserve_gives_a_shared_reservation_and_waiting_counts_the_queue(
    redis_url: str, key: str
) -> None:
    limiter = RedisLimiter(redis_url, key=key, qps=5.0)
    try:
        assert isinstance(limiter, Limiter)
        reservation = await limiter.reserve()
        assert isinstance(reservation, Reservation) and not reservation.is_sent
        assert reservation.shared and reservation.unpublished
        await reservation.publish()
        assert reservation.is_sent and not reservation.unpublished
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(limiter.acquire)
            await anyio.wait_all_tasks_blocked()
            assert limiter.waiting == 2  # one sleeping for its slot, one queued behind it
        assert limiter.waiting == 0 and limiter.acquired == 3
    finally:
        await limiter.aclose()


# -- departures: the window counts when requests really left ------------------------------


def slot_fields(redis_url: str, key: str) -> dict[bytes, bytes]:
    state = redis.Redis.from_url(redis_url).hgetall(key)
    return {field: value for field, value in state.items() if field.startswith(b"s:")}


@pytest.mark.anyio
async def test_a_late_departure_keeps_its_place_for_the_other_processes(
    redis_url: str, key: str
) -> None:
    qps = 2.0
    late = RedisLimiter(redis_url, key=key, qps=qps)
    other = RedisLimiter(redis_url, key=key, qps=qps)
    departures: list[float] = []

    async def leave_late() -> None:
        reservation = await late.reserve()
        await anyio.sleep(0.2)  # e.g. a new connection, a starved event loop
        reservation.sent()
        departures.append(time.time())
        await reservation.publish()

    async def punctual(until: float) -> None:
        while time.time() < until:
            reservation = await other.reserve()
            reservation.sent()
            departures.append(time.time())
            await reservation.publish()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(leave_late)
            await anyio.sleep(0.02)  # the late one is granted first
            tg.start_soon(punctual, time.time() + 2.5)
    finally:
        await late.aclose()
        await other.aclose()
    assert len(departures) >= 4
    assert max_in_window(departures) <= math.floor(qps), sorted(departures)
    assert len(slot_fields(redis_url, key)) <= math.floor(qps)  # trimmed to the window


@pytest.mark.anyio
async def test_pending_slots_hold_their_place_until_they_expire(redis_url: str, key: str) -> None:
    qps, ttl = 2.0, 1.5
    async with RedisLimiter(redis_url, key=key, qps=qps, pending_ttl=ttl) as dead:
        await dead.reserve()  # never sent: the process died before its request left
        first = time.monotonic()
        await dead.reserve()
    assert sorted(v[:1] for v in slot_fields(redis_url, key).values()) == [b"p", b"p"]
    async with RedisLimiter(redis_url, key=key, qps=qps) as limiter:
        await limiter.acquire()  # both places pending: only their expiry frees one
        waited = time.monotonic() - first
    assert ttl - 0.05 <= waited < ttl + 0.5
    assert len(slot_fields(redis_url, key)) == 2  # the expired one is gone, one pending left


@pytest.mark.anyio
async def test_the_client_stamps_each_departure_in_redis(redis_url: str, key: str) -> None:
    """Right after the headers left, not once the (here 0.3 s late) answer is in."""
    spans: list[tuple[float, float]] = []
    async with (
        LocalServer(qps=None, slow_rate=1.0, slow_seconds=0.3) as server,
        RedisLimiter(redis_url, key=key, qps=20) as limiter,
        AsyncIDPhotoClient("k", server.base_url, limiter=limiter, max_retries=0) as client,
    ):
        for _ in range(3):
            before = time.time()
            with pytest.raises(APIError):
                await client.get("no-such-task")  # answered (404): the headers left
            spans.append((before, time.time()))
    stamps = sorted(float(v) / 1e6 for v in slot_fields(redis_url, key).values())
    assert len(stamps) == 3
    for at, (before, answered) in zip(stamps, spans, strict=True):
        assert before <= at <= answered - 0.25, (at, before, answered)


@pytest.mark.anyio
async def test_a_request_that_never_left_is_stamped_too(redis_url: str, key: str) -> None:
    base_url = f"http://127.0.0.1:{free_port()}"  # nothing listens: the connection fails
    async with (
        RedisLimiter(redis_url, key=key, qps=20) as limiter,
        AsyncIDPhotoClient("k", base_url, limiter=limiter, max_retries=0) as client,
    ):
        with pytest.raises(APIConnectionError):
            await client.get("t1")
    values = list(slot_fields(redis_url, key).values())
    assert len(values) == 1 and not values[0].startswith(b"p")  # not left pending


def test_pending_ttl_is_bounded() -> None:
    for bad in (0, -1.0, 31.0, math.nan, True):
        with pytest.raises(ValueError, match="pending_ttl"):
            RedisLimiter(pending_ttl=bad)


@pytest.mark.anyio
async def test_late_wake_ups_cost_no_throughput_at_a_high_qps(redis_url: str, key: str) -> None:
    """Every wait ends a millisecond or two late (Redis round trips, timer granularity): at
    QPS 100 (10.4 ms slots) a schedule restarted from each late grant lost ~15 % of the key."""
    qps = 100.0
    async with RedisLimiter(redis_url, key=key, qps=qps) as limiter:
        stamps: list[float] = []
        await hammer(limiter, time.monotonic() + 2.0, stamps)
    assert max_in_window(stamps) <= math.floor(qps)
    assert rate(stamps) >= 0.95 * qps / (1 + limiter.margin)
