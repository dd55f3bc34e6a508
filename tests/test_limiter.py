"""TokenBucketLimiter on a virtual clock: window safety, throughput, order, cancellation."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Awaitable, Callable, Sequence

import anyio
import anyio.lowlevel
import pytest

from idphoto_async._errors import LimiterTimeoutError
from idphoto_async._limiter import DEFAULT_MARGIN, Limiter, Reservation, TokenBucketLimiter

pytestmark = pytest.mark.anyio

T0 = 1000.0


class FakeClock:
    """Virtual time: ``sleep`` lets the other ready tasks run, then jumps to its wake-up time.

    While held (:meth:`hold`), sleepers block until :meth:`release`, so a test can act while
    the limiter's head waiter is asleep.
    """

    def __init__(self, start: float = T0) -> None:
        self.now = start
        self.sleeps = 0
        self.sleeping = 0
        self._gate: anyio.Event | None = None

    def __call__(self) -> float:
        return self.now

    def hold(self) -> None:
        self._gate = anyio.Event()

    def release(self) -> None:
        assert self._gate is not None
        self._gate.set()
        self._gate = None

    async def sleep(self, delay: float) -> None:
        self.sleeps += 1
        target = self.now + delay
        if self._gate is not None:
            self.sleeping += 1
            try:
                await self._gate.wait()
            finally:
                self.sleeping -= 1
        for _ in range(5):  # time passes only when the rest of the program is idle
            await anyio.lowlevel.checkpoint()
        self.now = max(self.now, target)


def make(qps: float = 2.0, **kwargs: object) -> tuple[TokenBucketLimiter, FakeClock]:
    """A limiter on a fake clock; margin 4 % unless given (round slot times in the tests)."""
    kwargs.setdefault("margin", 0.04)
    clock = FakeClock()
    limiter = TokenBucketLimiter(qps, clock=clock, sleep=clock.sleep, **kwargs)  # type: ignore[arg-type]
    return limiter, clock


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(10_000):
        if condition():
            return
        await anyio.lowlevel.checkpoint()
    raise AssertionError("condition never became true")


def max_in_window(times: Sequence[float], width: float) -> int:
    """Most events in any closed window of ``width`` seconds."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(ordered):
        while t - ordered[start] > width:
            start += 1
        best = max(best, end - start + 1)
    return best


async def acquire_all(
    limiter: TokenBucketLimiter, clock: FakeClock, count: int, *, priority: bool = False
) -> list[float]:
    """Start ``count`` concurrent acquires; return the grant times in grant order."""
    grants: list[float] = []

    async def one() -> None:
        await limiter.acquire(priority=priority)
        grants.append(clock())

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(one)
    return grants


async def reserve_all(
    limiter: TokenBucketLimiter, clock: Callable[[], float], count: int
) -> list[float]:
    """Start ``count`` concurrent reserves, each sent at its grant; the grant times."""
    grants: list[float] = []

    async def one() -> None:
        reservation = await limiter.reserve()
        grants.append(clock())
        reservation.sent()

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(one)
    return grants


# -- construction ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"qps": 0},
        {"qps": -1.0},
        {"qps": math.nan},
        {"qps": math.inf},
        {"qps": True},
        {"qps": "2"},
        {"burst": 0},
        {"burst": 1.5},
        {"burst": True},
        {"margin": -0.01},
        {"margin": 1.0},
        {"margin": math.nan},
        {"margin": False},
    ],
)
def test_rejects_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        TokenBucketLimiter(**kwargs)  # type: ignore[arg-type]


def test_properties_and_protocol() -> None:
    limiter = TokenBucketLimiter(3, burst=2, margin=0.05)
    assert isinstance(limiter, Limiter)
    assert (limiter.qps, limiter.burst, limiter.margin, limiter.waiting) == (3.0, 2, 0.05, 0)
    assert TokenBucketLimiter().qps == 2.0
    assert TokenBucketLimiter().margin == DEFAULT_MARGIN
    assert "qps=3" in repr(limiter)
    assert "acquired=0" in repr(limiter)


async def test_default_clock_and_sleep_without_waiting() -> None:
    limiter = TokenBucketLimiter(2.0)
    await limiter.acquire()
    with pytest.raises(LimiterTimeoutError) as info:
        await limiter.acquire(timeout=0)  # the next slot is ~0.52 s away: fail fast
    assert info.value.retry_after == pytest.approx(0.52, abs=0.05)
    assert limiter.acquired == 1
    assert limiter.current_qps == 2.0


async def test_nan_timeout_is_rejected() -> None:
    limiter, _ = make()
    with pytest.raises(ValueError, match="timeout"):
        await limiter.acquire(timeout=math.nan)


# -- window safety and throughput --------------------------------------------------------


@pytest.mark.parametrize(
    ("qps", "burst"),
    [(2, 1), (2, 2), (1, 1), (0.5, 1), (0.5, 3), (2.5, 1), (3, 3), (10, 1), (10, 4)],
)
async def test_strict_window_and_throughput(qps: float, burst: int) -> None:
    limiter, clock = make(qps, burst=burst)
    allowed = max(1, math.floor(qps))
    width = 1.0 if qps >= 1 else 1.0 / qps
    # A long saturated run: many callers at once.
    grants = await acquire_all(limiter, clock, 300)
    # Then bursts of callers separated by random idle gaps (refills the bucket).
    rng = random.Random(qps * 100 + burst)
    for _ in range(40):
        clock.now += rng.choice([0.0, rng.uniform(0, 3 * width)])
        grants += await acquire_all(limiter, clock, rng.randint(1, 2 * allowed + 2))
    assert limiter.acquired == len(grants)
    assert grants == sorted(grants)
    # Closed windows, at the client and at a server seeing +-5 ms of jitter.
    assert max_in_window(grants, width) <= allowed
    arrivals = [t + rng.uniform(-0.005, 0.005) for t in grants]
    assert max_in_window(arrivals, width) <= allowed
    # Throughput of the saturated run, against what the strict window allows.
    saturated = grants[:300]
    achieved = (len(saturated) - burst) / (saturated[-1] - saturated[0])
    bound = qps if qps < 1 or qps == int(qps) else allowed
    assert 0.95 * bound <= achieved <= bound


async def test_spacing_is_exactly_margin_over_qps() -> None:
    limiter, clock = make(2.0, margin=0.04)
    grants = await acquire_all(limiter, clock, 5)
    gaps = [b - a for a, b in itertools.pairwise(grants)]
    assert gaps == pytest.approx([0.52] * 4)
    assert grants[0] == T0


class LateClock(FakeClock):
    """A clock whose sleeps all end ``late`` seconds after their target (the event loop's
    timer granularity: asyncio's epoll waits whole milliseconds)."""

    def __init__(self, late: float) -> None:
        super().__init__()
        self.late = late

    async def sleep(self, delay: float) -> None:
        await super().sleep(delay + self.late)


@pytest.mark.parametrize("late", [0.0005, 0.001, 0.004])
async def test_late_wake_ups_keep_the_schedule(late: float) -> None:
    """Measured before the fix: 2 000 waiters at QPS 200 got 165 slots/s on asyncio, each
    wake-up ~1 ms late restarting the schedule; a late grant keeps its place now."""
    qps, margin = 200.0, DEFAULT_MARGIN
    clock = LateClock(late)
    limiter = TokenBucketLimiter(qps, margin=margin, clock=clock, sleep=clock.sleep)
    grants = await reserve_all(limiter, clock, 1000)
    achieved = (len(grants) - 1) / (grants[-1] - grants[0])
    assert achieved >= 0.99 * qps / (1 + margin)
    assert max_in_window(grants, 1.0 + margin) <= qps


class StallingClock(FakeClock):
    """A clock on which every ``every``-th sleep ends ``stall`` seconds late: the event loop
    blocked (a garbage-collector pause) while callers queued."""

    def __init__(self, every: int, stall: float) -> None:
        super().__init__()
        self.every = every
        self.stall = stall

    async def sleep(self, delay: float) -> None:
        late = self.stall if (self.sleeps + 1) % self.every == 0 else 0.0
        await super().sleep(delay + late)


async def test_slots_missed_in_a_stall_are_caught_up_at_a_bounded_pace() -> None:
    """Found in sync mode at QPS 200: 10-90 ms pauses of the client's event loop each cost
    their length in slots (grants 200 apart took 1.06-1.08 s, not 1.03): 0.92-0.94 of the
    bound. The limiter now catches up, never faster than ``CATCH_UP`` times the rate and
    never beyond the window."""
    qps, margin = 200.0, DEFAULT_MARGIN
    clock = StallingClock(every=100, stall=0.05)
    limiter = TokenBucketLimiter(qps, margin=margin, clock=clock, sleep=clock.sleep)
    grants = await reserve_all(limiter, clock, 1000)
    achieved = (len(grants) - 1) / (grants[-1] - grants[0])
    assert achieved >= 0.975 * qps / (1 + margin)  # 0.985 now; restarting after each stall: 0.92
    assert max_in_window(grants, 1.0 + margin) <= qps
    spacing = (1 + margin) / qps
    # No burst: over any 10 slots' time, at most CATCH_UP times as many grants (and the
    # edges). Catching up back to back gave 20.
    assert max_in_window(grants, 10 * spacing) <= 10 * TokenBucketLimiter.CATCH_UP + 2


def stamped_after_stall(departures: Sequence[float], start: float, stall: float) -> list[float]:
    """A server's arrival stamps when its event loop stalls from ``start`` for ``stall`` s:
    what arrives meanwhile is stamped when the loop runs again, all at once."""
    end = start + stall
    return [end if start <= t < end else t for t in departures]


@pytest.mark.parametrize("stall", [0.010, 0.025])
async def test_the_default_margin_absorbs_a_server_stall(stall: float) -> None:
    """Found in the 2b benchmark (QPS 200, hundreds of connections): a 27-48 ms pause of the
    local server's garbage collector bunched the requests behind it into one window and
    earned a 429 with the 1 % margin of then; the default margin covers such a stall."""
    qps = 200.0
    limiter, clock = make(qps, margin=DEFAULT_MARGIN)
    departures = await reserve_all(limiter, clock, 600)
    for start in (departures[300] + k * 0.001 for k in range(10)):
        arrivals = stamped_after_stall(departures, start, stall)
        assert max_in_window(arrivals, 1.0) <= qps
    # The old 1 % margin did not (the check above has teeth).
    old, old_clock = make(qps, margin=0.01)
    grants = await acquire_all(old, old_clock, 600)
    worst = max(
        max_in_window(stamped_after_stall(grants, grants[300] + k * 0.001, 0.025), 1.0)
        for k in range(10)
    )
    assert worst > qps


async def test_an_idle_gap_restarts_the_schedule() -> None:
    """A slot left unused for a whole interval is not handed out later as a burst."""
    limiter, clock = make(2.0, margin=0.04)
    await limiter.acquire()
    clock.now += 10.0  # idle
    first = clock()
    await limiter.acquire()
    await limiter.acquire()
    assert clock() - first == pytest.approx(0.52)


# -- departures (reserve) ----------------------------------------------------------------


async def test_reserved_slots_sent_at_once_keep_the_spacing() -> None:
    limiter, clock = make(2.0)
    times = []
    for _ in range(5):
        reservation = await limiter.reserve()
        times.append(clock())
        reservation.sent()
    assert [b - a for a, b in itertools.pairwise(times)] == pytest.approx([0.52] * 4)
    assert limiter.unsent == 0


async def test_publish_sends_then_pushes_once_and_is_a_no_op_in_process() -> None:
    limiter, _ = make(2.0)
    local = await limiter.reserve()
    assert not local.shared and not local.unpublished
    await local.publish()  # an in-process limiter has nothing to push: it only records
    assert local.is_sent and limiter.unsent == 0
    stamps: list[float | None] = []
    pushed: list[str] = []

    async def push() -> None:
        pushed.append("stamp")

    shared = Reservation(stamps.append, push)
    assert shared.shared and shared.unpublished
    await shared.publish()
    await shared.publish()
    assert (stamps, pushed, shared.unpublished) == ([None], ["stamp"], False)


async def test_a_late_departure_pushes_the_window_back() -> None:
    limiter, clock = make(2.0)
    first = await limiter.reserve()  # granted at T0 ...
    second = await limiter.reserve()  # ... and T0 + 0.52, which leaves at once
    second.sent()
    first.sent(at=T0 + 0.6)  # e.g. a TLS handshake held the first one back
    assert (first.is_sent, limiter.unsent) == (True, 0)
    await limiter.acquire()
    # Counted from the grants, the third slot would be T0 + 1.04: three arrivals within
    # [T0 + 0.52, T0 + 1.04]. Counted from departures it waits a window after T0 + 0.52.
    assert clock() == pytest.approx(T0 + 0.52 + 1.04)
    assert max_in_window([T0 + 0.6, T0 + 0.52, clock()], 1.0) <= 2


async def test_unsent_reservations_hold_their_places_until_they_leave() -> None:
    limiter, clock = make(2.0)
    first = await limiter.reserve()
    second = await limiter.reserve()
    assert limiter.unsent == 2
    granted: list[float] = []

    async def third() -> None:
        await limiter.acquire()
        granted.append(clock())

    async with anyio.create_task_group() as tg:
        tg.start_soon(third)
        await until(lambda: limiter.waiting == 1)
        clock.now = T0 + 30.0  # however long they take to leave: nothing is granted
        for _ in range(50):
            await anyio.lowlevel.checkpoint()
        assert granted == []
        with pytest.raises(LimiterTimeoutError) as info:  # the estimate is finite, though
            await limiter.acquire(timeout=0)
        assert info.value.retry_after is not None and info.value.retry_after < 5
        first.sent()  # at T0 + 30; the second may still leave at any moment
    assert granted == [pytest.approx(T0 + 31.04)]
    second.sent()
    second.sent()  # idempotent
    assert limiter.unsent == 0


async def test_departures_never_crowd_a_window_whatever_the_delays() -> None:
    limiter, clock = make(2.0, margin=0.01)
    rng = random.Random(11)
    departures: list[float] = []
    unsent: list[tuple[float, Reservation]] = []
    finished = anyio.Event()

    async def requests() -> None:
        for _ in range(200):
            reservation = await limiter.reserve()
            delay = rng.choice([0.0, 0.0, 0.002, rng.uniform(0.0, 0.9)])
            unsent.append((clock() + delay, reservation))
        finished.set()

    async def network() -> None:
        while not finished.is_set() or unsent:
            for _ in range(20):
                await anyio.lowlevel.checkpoint()
            unsent.sort(key=lambda item: item[0])
            if unsent and unsent[0][0] > clock() and limiter.unsent >= 2:
                clock.now = unsent[0][0]  # everybody waits for a departure: time passes
            while unsent and unsent[0][0] <= clock():
                due, reservation = unsent.pop(0)
                reservation.sent(at=due)
                departures.append(due)

    async with anyio.create_task_group() as tg:
        tg.start_soon(requests)
        tg.start_soon(network)
    assert len(departures) == 200
    assert max_in_window(departures, 1.0) <= 2
    assert limiter.unsent == 0


# -- order -------------------------------------------------------------------------------


async def test_thousands_of_waiters_fifo_without_herd() -> None:
    limiter, clock = make(10.0)
    calls: list[int] = []
    grants: list[int] = []

    async def one(i: int) -> None:
        calls.append(i)
        await limiter.acquire()
        grants.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(3000):
            tg.start_soon(one, i)
    assert grants == calls
    assert limiter.acquired == 3000
    # One sleeping head at a time: about one timer per slot, not one per waiter.
    assert clock.sleeps <= 3000
    assert clock.now - T0 == pytest.approx(2999 * 0.104)


async def grant_order(
    limiter: TokenBucketLimiter,
    clock: FakeClock,
    names: list[tuple[str, bool]],
    while_queued: Callable[[], Awaitable[None]] | None = None,
) -> list[str]:
    """Queue ``(name, priority)`` waiters while the clock is held; their order of grants."""
    await limiter.acquire()
    clock.hold()
    order: list[str] = []

    async def one(name: str, priority: bool) -> None:
        await limiter.acquire(priority=priority)
        order.append(name)

    async with anyio.create_task_group() as tg:
        for count, (name, priority) in enumerate(names, 1):
            tg.start_soon(one, name, priority)
            await until(lambda count=count: limiter.waiting == count)  # type: ignore[misc]
        if while_queued is not None:
            await while_queued()
        clock.release()
    return order


async def test_priority_waiters_go_first_then_take_turns_fifo_within_class() -> None:
    limiter, clock = make(2.0)

    async def only_the_new_head_sleeps() -> None:
        await until(lambda: clock.sleeping == 1)  # p1, which displaced n1

    names = [("n1", False), ("n2", False), ("p1", True), ("n3", False), ("p2", True)]
    order = await grant_order(limiter, clock, names, only_the_new_head_sleeps)
    # Priority first, then turns while both classes wait (no run of queries starves creates).
    assert order == ["p1", "n1", "p2", "n2", "n3"]
    assert clock.now == pytest.approx(T0 + 5 * 0.52)


async def test_queries_and_creates_take_turns_at_the_bound() -> None:
    """A block of due queries must not starve creates: turns while both wait, then the rest."""
    limiter, clock = make(2.0)

    async def estimate_counts_the_turns() -> None:
        # A query waits for the 5 queries ahead and the 3 creates that take turns with them.
        with pytest.raises(LimiterTimeoutError) as info:
            await limiter.acquire(priority=True, timeout=0)
        assert info.value.retry_after == pytest.approx(0.52 + 8 * 0.52)

    names = [(f"c{i}", False) for i in range(3)] + [(f"q{i}", True) for i in range(5)]
    order = await grant_order(limiter, clock, names, estimate_counts_the_turns)
    assert order == ["q0", "c0", "q1", "c1", "q2", "c2", "q3", "q4"]


# -- cancellation ------------------------------------------------------------------------


async def test_cancelled_while_queued_consumes_no_slot() -> None:
    limiter, clock = make(2.0)
    await limiter.acquire()
    clock.hold()
    grants: dict[str, float] = {}
    scopes: dict[str, anyio.CancelScope] = {}

    async def one(name: str, limit: float | None = None) -> None:
        with anyio.CancelScope() as scope:
            scopes[name] = scope
            await limiter.acquire(timeout=limit)
            grants[name] = clock()

    async with anyio.create_task_group() as tg:
        for count, (name, limit) in enumerate([("b", None), ("c", 5.0), ("d", None)], 1):
            tg.start_soon(one, name, limit)
            await until(lambda count=count: limiter.waiting == count)  # type: ignore[misc]
        scopes["c"].cancel()
        await until(lambda: limiter.waiting == 2)
        clock.release()
    assert grants == pytest.approx({"b": T0 + 0.52, "d": T0 + 1.04})
    assert limiter.acquired == 3


async def test_cancelled_head_while_sleeping_hands_over_its_slot() -> None:
    limiter, clock = make(2.0)
    await limiter.acquire()
    clock.hold()
    grants: dict[str, float] = {}
    scopes: dict[str, anyio.CancelScope] = {}

    async def one(name: str) -> None:
        with anyio.CancelScope() as scope:
            scopes[name] = scope
            await limiter.acquire()
            grants[name] = clock()

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, "b")
        await until(lambda: clock.sleeping == 1)
        tg.start_soon(one, "c")
        await until(lambda: limiter.waiting == 2)
        scopes["b"].cancel()
        await until(lambda: limiter.waiting == 1 and clock.sleeping == 1)  # c sleeps now
        clock.release()
    assert grants == pytest.approx({"c": T0 + 0.52})
    assert limiter.acquired == 2


async def test_cancelled_before_acquire_takes_nothing() -> None:
    limiter, _ = make(2.0)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await limiter.acquire()
    assert limiter.acquired == 0


async def test_mass_cancellation_does_not_stall() -> None:
    limiter, clock = make(2.0)
    await limiter.acquire()
    clock.hold()
    async with anyio.create_task_group() as tg:
        for _ in range(500):
            tg.start_soon(limiter.acquire)
        await until(lambda: limiter.waiting == 500)
        tg.cancel_scope.cancel()
    clock.release()
    assert (limiter.waiting, limiter.acquired) == (0, 1)
    await limiter.acquire()
    assert clock.now == pytest.approx(T0 + 0.52)
    assert limiter.acquired == 2


# -- timeouts ----------------------------------------------------------------------------


async def test_timeout_fails_fast_and_consumes_no_slot() -> None:
    limiter, clock = make(2.0)
    await limiter.acquire()
    with pytest.raises(LimiterTimeoutError) as info:
        await limiter.acquire(timeout=0.1)
    assert info.value.timeout == 0.1
    assert info.value.retry_after == pytest.approx(0.52)
    assert clock.now == T0  # no waiting at all
    assert (limiter.acquired, limiter.waiting) == (1, 0)
    grants: list[float] = []

    async def one(limit: float | None) -> None:
        await limiter.acquire(timeout=limit)
        grants.append(clock())

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, 0.52)  # exactly the wait: met
        await until(lambda: limiter.waiting == 1)
        tg.start_soon(one, None)
    assert grants == pytest.approx([T0 + 0.52, T0 + 1.04])
    assert limiter.acquired == 3


async def test_timeout_estimate_counts_the_queue_ahead() -> None:
    limiter, clock = make(2.0)
    await limiter.acquire()
    clock.hold()
    async with anyio.create_task_group() as tg:
        for count in (1, 2):
            tg.start_soon(limiter.acquire)
            await until(lambda count=count: limiter.waiting == count)  # type: ignore[misc]
        with pytest.raises(LimiterTimeoutError) as info:
            await limiter.acquire(timeout=1.0)
        assert info.value.retry_after == pytest.approx(3 * 0.52)
        with pytest.raises(LimiterTimeoutError) as info:
            await limiter.acquire(timeout=0.1, priority=True)  # ahead of the normal ones
        assert info.value.retry_after == pytest.approx(0.52)
        clock.release()
    assert limiter.acquired == 3


async def test_head_times_out_when_priority_callers_get_ahead() -> None:
    limiter, clock = make(2.0)
    await limiter.acquire()
    clock.hold()
    results: dict[str, object] = {}

    async def one(name: str, limit: float | None = None, priority: bool = False) -> None:
        try:
            await limiter.acquire(timeout=limit, priority=priority)
            results[name] = clock()
        except LimiterTimeoutError as exc:
            results[name] = ("timeout", clock(), exc.timeout)

    async with anyio.create_task_group() as tg:
        calls = [("b", None, False), ("c", 1.2, False), ("d", None, False), ("p", None, True)]
        for count, call in enumerate(calls, 1):
            tg.start_soon(one, *call)
            await until(lambda count=count: limiter.waiting == count)  # type: ignore[misc]
        clock.release()
    assert results == {
        "p": pytest.approx(T0 + 0.52),
        "b": pytest.approx(T0 + 1.04),
        "c": ("timeout", pytest.approx(T0 + 1.2), 1.2),  # expired as head, at its deadline
        "d": pytest.approx(T0 + 1.56),  # c consumed no slot
    }
    assert limiter.acquired == 4


async def test_queued_waiter_times_out_while_another_is_head() -> None:
    limiter, clock = make(1.0)
    await limiter.acquire()
    clock.hold()
    results: dict[str, object] = {}

    async def one(name: str, limit: float | None = None, priority: bool = False) -> None:
        try:
            await limiter.acquire(timeout=limit, priority=priority)
            results[name] = clock()
        except LimiterTimeoutError:
            results[name] = ("timeout", clock())

    async with anyio.create_task_group() as tg:
        calls = [("b", None, False), ("c", 2.5, False), ("p1", None, True), ("p2", None, True)]
        for count, call in enumerate(calls, 1):
            tg.start_soon(one, *call)
            await until(lambda count=count: limiter.waiting == count)  # type: ignore[misc]
        clock.release()
    assert results == {
        "p1": pytest.approx(T0 + 1.04),
        "b": pytest.approx(T0 + 2.08),  # takes its turn after one priority grant
        "c": ("timeout", pytest.approx(T0 + 2.5)),  # while p2 was the head, asleep
        "p2": pytest.approx(T0 + 3.12),
    }


async def test_deadline_heap_is_compacted() -> None:
    limiter, clock = make(10.0)
    await limiter.acquire()

    calls = iter(range(100))

    async def one() -> None:
        await limiter.acquire(timeout=1000.0 - next(calls))  # later callers: earlier deadlines

    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(one)
    assert len(limiter._deadlines) > 64
    await limiter.acquire(timeout=1.0)
    assert len(limiter._deadlines) <= 2
    assert limiter.acquired == 102
    assert clock.now == pytest.approx(T0 + 101 * 0.104)


# -- 429 handling ------------------------------------------------------------------------


async def test_rate_limited_pauses_a_full_window_and_slows_down() -> None:
    limiter, clock = make(2.0)
    await limiter.acquire()
    await limiter.on_rate_limited()
    assert limiter.rate_limited == 1
    assert limiter.current_qps == pytest.approx(1.0)
    grants = await acquire_all(limiter, clock, 3)
    assert grants[0] == pytest.approx(T0 + 1.04)  # one full window (plus margin)
    gaps = [b - a for a, b in itertools.pairwise(grants)]
    assert gaps == pytest.approx([1.04, 1.04])  # half the rate


async def test_rate_limited_obeys_retry_after() -> None:
    limiter, clock = make(2.0, burst=2)
    await limiter.acquire()
    await limiter.on_rate_limited(3.0)
    grants = await acquire_all(limiter, clock, 2)
    assert grants[0] == pytest.approx(T0 + 3.0)
    assert grants[1] == pytest.approx(T0 + 3.0 + 1.04)  # no burst right after the pause


@pytest.mark.parametrize("retry_after", [-5.0, 0.0])
async def test_rate_limited_with_zero_retry_after_still_slows_down(retry_after: float) -> None:
    limiter, clock = make(2.0)
    await limiter.acquire()
    clock.now += 1.0
    await limiter.on_rate_limited(retry_after)
    grants = await acquire_all(limiter, clock, 2)
    assert grants == pytest.approx([T0 + 1.0, T0 + 2.04])


@pytest.mark.parametrize("retry_after", [math.nan, math.inf])
async def test_rate_limited_with_nonsense_retry_after_pauses_a_window(retry_after: float) -> None:
    limiter, clock = make(2.0)
    await limiter.on_rate_limited(retry_after)
    await limiter.acquire()
    assert clock.now == pytest.approx(T0 + 1.04)


async def test_429s_during_a_pause_extend_it_without_slowing_again() -> None:
    limiter, clock = make(4.0)
    await limiter.on_rate_limited(1.0)
    clock.now += 0.1
    await limiter.on_rate_limited(2.0)
    clock.now += 0.1
    await limiter.on_rate_limited(None)
    assert limiter.rate_limited == 3
    assert limiter.current_qps == pytest.approx(2.0)  # halved once, not three times
    await limiter.acquire()
    assert clock.now == pytest.approx(T0 + 2.1)
    # A new episode after the pause halves again, down to MIN_FACTOR at most.
    for _ in range(10):
        await limiter.on_rate_limited(0.0)
        clock.now += 0.01
    assert limiter.current_qps == pytest.approx(4.0 * TokenBucketLimiter.MIN_FACTOR)


async def test_rate_recovers_gradually_after_a_quiet_period() -> None:
    limiter, clock = make(2.0)
    await limiter.on_rate_limited(1.0)
    assert limiter.current_qps == pytest.approx(1.0)
    clock.now = T0 + 1.0 + TokenBucketLimiter.QUIET_PERIOD
    assert limiter.current_qps == pytest.approx(1.0)
    clock.now += 2.5
    assert limiter.current_qps == pytest.approx(1.5)
    clock.now += 2.5
    assert limiter.current_qps == pytest.approx(2.0)
    clock.now += 100
    assert limiter.current_qps == pytest.approx(2.0)
    grants = await acquire_all(limiter, clock, 3)
    assert grants[2] - grants[1] == pytest.approx(0.52)


async def test_shared_pause_ends_starvation_on_a_strict_server() -> None:
    """A strict server counts refused requests too: only a limiter-wide pause gets through."""
    limiter, clock = make(2.0)
    arrivals: list[float] = [T0, T0]  # another program used the whole window at T0
    accepted = refused = 0

    async def request() -> None:
        nonlocal accepted, refused
        while True:
            await limiter.acquire()
            now = clock()
            in_window = sum(1 for t in arrivals if now - 1.0 <= t <= now)
            arrivals.append(now)
            if in_window < 2:
                accepted += 1
                return
            refused += 1
            await limiter.on_rate_limited(None)

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(request)
    assert (accepted, refused) == (20, 1)
    assert limiter.rate_limited == 1
    assert max_in_window(arrivals[3:], 1.0) <= 2
