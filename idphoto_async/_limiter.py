"""Client-side rate limiting of API requests (creates and queries) to the key's QPS.

The API refuses (429) requests beyond the key's QPS, and a strict server counts every
request that *arrives* in a sliding 1-second window, refused ones included. So the
limiter must never send ``floor(qps) + 1`` requests within any closed 1 s interval, even
after a few milliseconds of network jitter, and after a 429 the whole limiter (not each
request on its own) must back off, or retries keep the window full and starve the client.

`TokenBucketLimiter` is per event loop: share one instance between any number of
clients and tasks of one loop (one key, many clients). Several processes sharing one key
need a shared store: `idphoto_async.RedisLimiter`.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections.abc import Awaitable, Callable
from typing import ClassVar, Protocol, runtime_checkable

import anyio
import anyio.lowlevel

from ._constants import DEFAULT_QPS
from ._errors import LimiterTimeoutError
from ._waiters import FairQueue, Waiter

__all__ = ["DEFAULT_MARGIN", "Limiter", "Reservation", "TokenBucketLimiter"]

DEFAULT_MARGIN = 0.03
"""Extra spacing (3 %) between requests: 30 ms per second of window.

It absorbs the jitter of the way from this client to the server's clock (network transit,
the server's own event loop): a server that stalls for up to 30 ms and then stamps the
requests queued behind the stall all at once still sees no window over its limit. Delays on
the client's side (a TLS handshake for a new connection, a wait for a free connection,
event-loop lag) need no margin: the client's `TokenBucketLimiter.reserve` counts each
request from the moment its headers really left. 1/1.03 = 97 % of the QPS stays usable.
(It was 1 % until 2026-12: the local server's garbage-collector pauses of 27-48 ms with
hundreds of connections open earned a 429 in 3 of 5 benchmark runs at QPS 200.)
"""

_EPS = 1e-9  # float slack when comparing a clock reading with a computed slot time


@runtime_checkable
class Limiter(Protocol):
    """What the client needs from a rate limiter (one per API key)."""

    @property
    def qps(self) -> float:
        """The configured requests per second."""
        ...

    @property
    def waiting(self) -> int:
        """Callers of this process queued for a slot right now (the client reads it to pace
        its polling when requests are scarce)."""
        ...

    async def reserve(
        self,
        *,
        timeout: float | None = None,
        priority: bool = False,
    ) -> Reservation:
        """Like `acquire`, but return a `Reservation`: call its ``sent()`` when the request
        really leaves (and await its ``publish()`` when it is ``shared``). A limiter that
        counts requests from the grant returns ``Reservation()`` (whose ``sent`` does
        nothing); `TokenBucketLimiter` re-stamps the slot with the real departure time, a
        shared limiter (`idphoto_async.RedisLimiter`) pushes it to its store in ``publish``."""
        ...

    async def acquire(
        self,
        *,
        timeout: float | None = None,
        priority: bool = False,
    ) -> None:
        """Take one request slot, waiting in FIFO order.

        ``priority=True`` (status queries of tasks that are due) is served ahead of normal
        waiters (new creates), FIFO within each class; a limiter may let normal waiters take
        turns with a long run of priority ones (`TokenBucketLimiter` does). Raises
        `idphoto_async.LimiterTimeoutError` (with ``retry_after``, the estimated
        wait) when no slot is free within ``timeout`` seconds; no slot is consumed then.
        """
        ...

    async def on_rate_limited(self, retry_after: float | None = None) -> None:
        """Report a 429: pause every request for ``retry_after`` (or a full window), slow down."""
        ...


class Reservation:
    """A slot taken with `Limiter.reserve`: call `sent` when the request leaves.

    ``Reservation()`` is the plain one of a limiter that counts requests from the grant:
    `sent` only records that it was called. `TokenBucketLimiter.reserve` passes ``depart``:
    until `sent` the request counts as about to arrive at any moment, so the limiter hands
    out no slot that could share a window with it; `sent` pins it to its real departure
    time. Idempotent; a reservation dropped without `sent` may keep blocking its window
    place, so call it in a ``finally`` (with no argument it stamps the current time).

    A limiter shared between processes also passes ``publish``: the departure only counts
    for the other processes once `publish` (async: a call to the shared store) has run, so
    await it right after `sent` when `shared` (until then the slot keeps its place).
    """

    __slots__ = ("_depart", "_done", "_publish", "_published")

    def __init__(
        self,
        depart: Callable[[float | None], None] | None = None,
        publish: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._depart = depart
        self._done = False
        self._publish = publish
        self._published = publish is None

    @property
    def shared(self) -> bool:
        """Whether the departure must also be pushed to a shared store (`publish`)."""
        return self._publish is not None

    @property
    def unpublished(self) -> bool:
        """Whether `publish` still has a departure to push."""
        return not self._published

    @property
    def is_sent(self) -> bool:
        """Whether `sent` was called."""
        return self._done

    def sent(self, at: float | None = None) -> None:
        """Record the request's departure (default: now, on the limiter's clock)."""
        if self._done:
            return
        self._done = True
        if self._depart is not None:
            self._depart(at)

    async def publish(self) -> None:
        """Record the departure (`sent`, now, unless done) and push it to the shared store.

        Returns at once for an in-process limiter; idempotent once it has completed (a
        cancelled call may be repeated). Never raises for a store that is unreachable: the
        limiter logs it, and the slot keeps its place until its pending time runs out.
        """
        self.sent()
        if self._publish is None or self._published:
            return
        await self._publish()
        self._published = True


class _Waiter(Waiter):
    """One queued `TokenBucketLimiter.acquire` call."""

    __slots__ = ("deadline", "reserve", "timeout")

    def __init__(self, priority: bool, timeout: float, deadline: float, reserve: bool) -> None:
        super().__init__(priority)
        self.reserve = reserve
        self.timeout = timeout
        self.deadline = deadline


class TokenBucketLimiter:
    """A fair token bucket (GCRA) that is safe against a strict sliding-window server.

    Guarantees, measured at the moments `acquire` returns:

    * once ``burst`` is used up, slots follow a schedule ``(1 + margin) / qps`` seconds
      apart (throughput ``qps / (1 + margin)``). A grant that wakes late (timer granularity,
      a busy event loop) keeps its place on the schedule, so lateness costs no throughput
      (restarting from each late grant gave 165 of 198 slots/s at QPS 200 on asyncio). So
      does one held back longer, by a stall of the event loop (a garbage-collector pause)
      while callers queued: the slots it missed are owed, and the callers behind it catch
      up at ``CATCH_UP`` times the rate until the schedule is met, as far as the window
      below allows (each stall cost its length before: 3-5 % of the slots in sync mode at
      QPS 200). Only an idle gap of a whole slot, no caller queued, restarts the schedule;
    * at most ``max(1, floor(qps))`` slots in any window of ``(1 + margin)`` seconds
      (``(1 + margin) / qps`` when ``qps < 1``), whatever ``burst`` is. So a server that
      allows ``floor(qps)`` arrivals in any closed 1 s window never sees too many, with
      ``margin`` seconds per window to spare for jitter. (A non-integer ``qps`` above 1 is
      therefore served at about ``floor(qps)`` per second.)

    Slots taken with `reserve` count from their request's real departure (`Reservation.sent`)
    instead of the grant, so a request that leaves late (new connection, TLS handshake, a
    wait for a pooled connection) cannot end up in one window with the requests granted
    after it: the window guarantee then holds for departures, and ``margin`` only has to
    cover the transit to the server.

    Waiters are served FIFO, ``priority`` ones first, but at most ``PRIORITY_RUN`` (1) of
    them in a row while normal waiters wait: at the QPS bound status queries and creates
    then take turns, so a batch's pipeline stays even instead of running in waves (a block
    of due queries starving creates, whose queries come due as a block in turn).

    Only the waiter at the head of the queue sleeps (until its slot); it wakes the next one
    when it leaves, so thousands of waiters cost one timer and no thundering herd. A waiter
    cancelled while queued or while sleeping consumes no slot and hands the head role on.

    After `on_rate_limited` the limiter hands out nothing until the pause is over, then
    runs at ``DECREASE`` times its rate (at least ``MIN_FACTOR``), and after
    ``QUIET_PERIOD`` seconds without another 429 regains ``RECOVERY_RATE`` of its full rate
    per second.

    One instance serves one event loop (any number of clients and tasks in it); it is not
    thread-safe and not shared between processes.

    Args:
        qps: requests per second allowed for the key (default 2).
        burst: slots that may be taken back to back after an idle period (capped by the
            window guarantee above).
        margin: relative safety margin, default `DEFAULT_MARGIN` (3 %).
        clock: seconds as a float; default `anyio.current_time`.
        sleep: default `anyio.sleep`; inject both to test without real time.
    """

    PRIORITY_RUN: ClassVar[int] = 1
    CATCH_UP: ClassVar[float] = 1.5
    DECREASE: ClassVar[float] = 0.5
    MIN_FACTOR: ClassVar[float] = 0.125
    QUIET_PERIOD: ClassVar[float] = 5.0
    RECOVERY_RATE: ClassVar[float] = 0.1

    def __init__(
        self,
        qps: float = DEFAULT_QPS,
        *,
        burst: int = 1,
        margin: float = DEFAULT_MARGIN,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        if isinstance(qps, bool) or not isinstance(qps, int | float) or not 0 < qps < math.inf:
            raise ValueError(f"qps must be a positive number, got {qps!r}")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be an integer >= 1, got {burst!r}")
        if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 <= margin < 1:
            raise ValueError(f"margin must be in [0, 1), got {margin!r}")
        self._qps = float(qps)
        self._burst = burst
        self._margin = float(margin)
        self._clock: Callable[[], float] = clock or anyio.current_time
        self._sleep: Callable[[float], Awaitable[None]] = sleep or anyio.sleep
        self._interval = (1.0 + margin) / qps
        self._limit = max(1, math.floor(qps + 1e-9))
        self._window = (1.0 + margin) * max(1.0, 1.0 / qps)
        self._recent: list[float] = []  # last `_limit` departure times, ascending
        self._pending = 0  # reserved slots whose request has not left yet
        self._tat = -math.inf  # GCRA theoretical arrival time
        self._catch_up_slot = -math.inf  # while behind the schedule: the next slot's floor
        self._paused_until = -math.inf
        self._factor_floor = 1.0  # rate factor right after the last slowdown
        self._recover_from = -math.inf
        self._queue: FairQueue[_Waiter] = FairQueue(priority_run=self.PRIORITY_RUN)
        self._deadlines: list[tuple[float, int, _Waiter]] = []
        self._seq = itertools.count()
        self._sleep_scope: anyio.CancelScope | None = None
        self.acquired = 0
        """Slots handed out so far."""
        self.rate_limited = 0
        """Calls of `on_rate_limited` so far."""

    def __repr__(self) -> str:
        return (
            f"TokenBucketLimiter(qps={self._qps:g}, burst={self._burst}, "
            f"margin={self._margin:g}, acquired={self.acquired}, rate_limited={self.rate_limited})"
        )

    @property
    def qps(self) -> float:
        """The configured requests per second."""
        return self._qps

    @property
    def burst(self) -> int:
        """Slots that may be taken back to back after an idle period."""
        return self._burst

    @property
    def margin(self) -> float:
        """The relative safety margin."""
        return self._margin

    @property
    def waiting(self) -> int:
        """Callers queued for a slot right now."""
        return self._queue.waiting

    @property
    def unsent(self) -> int:
        """Reserved slots whose request has not left yet (see `reserve`)."""
        return self._pending

    @property
    def current_qps(self) -> float:
        """The rate in force now, after any slowdown (read it inside the event loop)."""
        return self._qps * self._factor(self._clock())

    async def acquire(
        self,
        *,
        timeout: float | None = None,
        priority: bool = False,
    ) -> None:
        """Take one request slot; see `Limiter.acquire`.

        The request counts as sent at the grant. A call that must queue fails at once when
        the wait estimated from the queue ahead already exceeds ``timeout`` (``timeout=0``:
        take a slot only if one is free now), and otherwise when ``timeout`` passes (e.g.
        after priority callers or a 429 got ahead).
        """
        await self._grant(timeout, priority, reserve=False)

    async def reserve(
        self,
        *,
        timeout: float | None = None,
        priority: bool = False,
    ) -> Reservation:
        """Like `acquire`, but the request counts from `Reservation.sent`, its departure.

        Use it when something may hold the request back after the grant (the client calls
        `sent` when httpx has written the request's headers).
        """
        await self._grant(timeout, priority, reserve=True)
        return Reservation(self._depart)

    async def on_rate_limited(self, retry_after: float | None = None) -> None:
        """Pause all slots for ``retry_after`` seconds (default one full window) and slow down.

        429s that arrive during a pause (from requests sent before it) extend the pause but do
        not slow down again.
        """
        now = self._clock()
        self.rate_limited += 1
        if retry_after is not None and math.isfinite(retry_after):
            pause = max(0.0, retry_after)
        else:
            pause = self._window
        if now >= self._paused_until:
            self._factor_floor = max(self.MIN_FACTOR, self._factor(now) * self.DECREASE)
        self._paused_until = max(self._paused_until, now + pause)
        self._recover_from = self._paused_until + self.QUIET_PERIOD
        # Empty the bucket: the first slot after the pause is not followed by a burst.
        spacing = self._spacing(self._paused_until)
        self._tat = max(self._tat, self._paused_until + (self._burst - 1) * spacing)
        await anyio.lowlevel.checkpoint()

    # -- internals -------------------------------------------------------------------------

    async def _grant(self, timeout: float | None, priority: bool, *, reserve: bool) -> None:
        """Wait for and take a slot (FIFO, priority first), sent now unless ``reserve``."""
        if timeout is not None and math.isnan(timeout):
            raise ValueError("timeout must be a number or None")
        await anyio.lowlevel.checkpoint_if_cancelled()
        now = self._clock()
        if not self.waiting and self._next_slot(now) <= now + _EPS:
            self._take(now, reserve, queued=False)
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return
        deadline = math.inf
        if timeout is not None:
            wait = self._estimate(now, priority)
            if wait > timeout + _EPS:
                raise LimiterTimeoutError(timeout, retry_after=wait)
            deadline = now + timeout
        waiter = _Waiter(priority, math.inf if timeout is None else timeout, deadline, reserve)
        is_head = self._queue.join(waiter)
        if timeout is not None:
            self._push_deadline(waiter)
        # A new waiter's deadline is never before the head's wake-up time (its estimate
        # includes the slot the head waits for), so only a displaced head needs a kick.
        if is_head and self._sleep_scope is not None:
            self._sleep_scope.cancel()
            self._sleep_scope = None
        try:
            await self._wait_for_slot(waiter)
        except BaseException:
            self._queue.leave(waiter)
            self._queue.wake_head()
            raise

    async def _wait_for_slot(self, waiter: _Waiter) -> None:
        while True:
            if waiter.expired:
                raise LimiterTimeoutError(
                    waiter.timeout, retry_after=self._estimate(self._clock(), waiter.priority)
                )
            if self._queue.head() is not waiter:
                await waiter.wait()
                continue
            now = self._clock()
            slot = self._next_slot(now)
            if slot <= now + _EPS:
                self._take(now, waiter.reserve, queued=True)
                self._queue.grant(waiter)
                return
            self._expire(now)
            if waiter.expired:
                continue
            target = min(slot, self._earliest_deadline())
            with anyio.CancelScope() as scope:
                self._sleep_scope = scope
                try:
                    if math.isinf(target):  # until a reserved request leaves
                        await anyio.sleep_forever()
                    else:
                        await self._sleep(max(0.0, target - now))
                finally:  # unless a kick already moved the role to another waiter
                    self._sleep_scope = None if self._sleep_scope is scope else self._sleep_scope

    def _factor(self, now: float) -> float:
        if now <= self._recover_from:
            return self._factor_floor
        return min(1.0, self._factor_floor + (now - self._recover_from) * self.RECOVERY_RATE)

    def _spacing(self, now: float) -> float:
        return self._interval / self._factor(now)

    def _next_slot(self, now: float, *, pending_leave_now: bool = False) -> float:
        """The earliest grant time: GCRA spacing, the window over departures, any pause.

        A reserved request that has not left yet may arrive at any moment, so it holds a
        place in every window until it leaves (``math.inf`` when all places are held);
        ``pending_leave_now`` assumes instead that they all leave now (for estimates).
        """
        slot = max(self._tat - (self._burst - 1) * self._spacing(now), self._catch_up_slot)
        free = self._limit - self._pending  # places left for the departures on record
        if free <= 0:
            if not pending_leave_now:
                return math.inf
            slot = max(slot, now + self._window)
        elif len(self._recent) >= free:
            # Just past the window's closed end: the grant's float slack stays outside it.
            slot = max(slot, self._recent[-free] + self._window + 2 * _EPS)
        return max(slot, self._paused_until)

    def _take(self, now: float, reserve: bool, *, queued: bool) -> None:
        spacing = self._spacing(now)
        # Up to a slot late, a grant keeps its place on the schedule. Later still, one to a
        # caller that queued (a stall, not an idle gap) keeps it too, at most a window back,
        # and the next grants come `CATCH_UP` times faster until the schedule is met; after
        # an idle gap of a whole slot the schedule restarts from now.
        behind = now - self._tat >= spacing
        if not behind:
            on_schedule = self._tat
        elif queued:
            on_schedule = max(self._tat, now - self._window)
        else:
            on_schedule = now
        self._tat = on_schedule + spacing
        if behind and queued:  # the catch-up has a schedule of its own, kept the same way
            fast = spacing / self.CATCH_UP
            late = now - self._catch_up_slot
            self._catch_up_slot = (self._catch_up_slot if late < spacing else now) + fast
        else:
            self._catch_up_slot = -math.inf
        self.acquired += 1
        if reserve:
            self._pending += 1
        else:
            self._record(now)

    def _record(self, at: float) -> None:
        """A request left at ``at``: it holds a window place until ``at + window``."""
        bisect.insort(self._recent, at)
        if len(self._recent) > self._limit:
            del self._recent[0]

    def _depart(self, at: float | None) -> None:
        """A reserved request left at ``at`` (default now; `Reservation.sent`)."""
        blocked = self._pending >= self._limit
        self._pending -= 1
        self._record(self._clock() if at is None else at)
        if blocked:  # the head may sleep until a departure: let it look again
            if self._sleep_scope is not None:
                self._sleep_scope.cancel()
                self._sleep_scope = None
            self._queue.wake_head()

    def _estimate(self, now: float, priority: bool) -> float:
        """Seconds until a new waiter of this class would get its slot (no later arrivals)."""
        if priority:  # the priority ones ahead, and the others served between them
            turn = 1 if self._queue.run_over else 0
            normal, first = self._queue.count(False), self._queue.count(True)
            ahead = first + min(normal, first + turn)
        else:
            ahead = self.waiting
        step = max(self._spacing(now), self._window / self._limit)
        return max(0.0, self._next_slot(now, pending_leave_now=True) - now) + ahead * step

    def _push_deadline(self, waiter: _Waiter) -> None:
        heap = self._deadlines
        if len(heap) > 64 and len(heap) > 2 * self.waiting:
            heap[:] = [entry for entry in heap if not entry[2].done]
            heapq.heapify(heap)
        heapq.heappush(heap, (waiter.deadline, next(self._seq), waiter))

    def _earliest_deadline(self) -> float:
        heap = self._deadlines
        while heap and heap[0][2].done:
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf

    def _expire(self, now: float) -> None:
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            waiter = heapq.heappop(heap)[2]
            if not waiter.done:
                waiter.expired = True
                self._queue.leave(waiter)
                waiter.event.set()
