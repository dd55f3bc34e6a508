"""The fair waiter queue both limiters share: FIFO, priority first, one sleeper at a time.

Callers that must wait for a slot join a `FairQueue`. Only the head sleeps (until its
slot); when it leaves (granted, timed out or cancelled) it wakes the next head, so
thousands of waiters cost one timer and no thundering herd.

Priority waiters (status queries of due tasks) are served before normal ones (creates),
FIFO within each class. With ``priority_run=N``, at most N priority waiters are served in
a row while normal ones wait, so at the QPS bound queries and creates take turns.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import anyio

__all__ = ["FairQueue", "Waiter"]


class Waiter:
    """One queued caller."""

    __slots__ = ("done", "event", "expired", "priority")

    def __init__(self, priority: bool) -> None:
        self.priority = priority
        self.event = anyio.Event()
        self.done = False
        """Left the queue: granted, cancelled or timed out."""
        self.expired = False
        """Its deadline passed while it waited."""

    async def wait(self) -> None:
        """Sleep until woken (by `FairQueue.wake_head`)."""
        await self.event.wait()
        self.event = anyio.Event()


W = TypeVar("W", bound=Waiter)


class FairQueue(Generic[W]):
    """FIFO queues of waiters, priority first (see the module docstring)."""

    def __init__(self, *, priority_run: int | None = None) -> None:
        self.priority_run = priority_run
        """Priority waiters served in a row at most while normal ones wait (None: no cap)."""
        self._queues: tuple[deque[W], deque[W]] = (deque(), deque())  # normal, priority
        self._counts = [0, 0]  # live waiters in each queue
        self._run = 0  # priority grants in a row while normal waiters waited

    @property
    def waiting(self) -> int:
        """Waiters queued now."""
        return self._counts[0] + self._counts[1]

    def count(self, priority: bool) -> int:
        """Waiters of one class queued now."""
        return self._counts[priority]

    @property
    def run(self) -> int:
        """Priority waiters served in a row while normal ones waited."""
        return self._run

    @property
    def run_over(self) -> bool:
        """Whether the next turn goes to a normal waiter (the priority run is used up)."""
        return self.priority_run is not None and self._run >= self.priority_run

    def join(self, waiter: W) -> bool:
        """Queue ``waiter``; whether it is the head now (a sleeping old head must yield)."""
        self._queues[waiter.priority].append(waiter)
        self._counts[waiter.priority] += 1
        return self.head() is waiter

    def head(self) -> W | None:
        """The next waiter to serve: priority first, unless its run is over and others wait."""
        first = self._first(self._queues[1])
        normal = self._first(self._queues[0])
        if first is None or (normal is not None and self.run_over):
            return normal
        return first

    def grant(self, waiter: W) -> None:
        """``waiter`` (the head) got its slot: it leaves, and the next head is woken."""
        self._queues[waiter.priority].popleft()
        self.leave(waiter)
        passed = waiter.priority and self._counts[0] > 0  # normal ones were passed over
        self._run = self._run + 1 if passed else 0
        self.wake_head()

    def leave(self, waiter: W) -> None:
        """``waiter`` leaves the queue (granted, timed out, cancelled); idempotent."""
        if not waiter.done:
            waiter.done = True
            self._counts[waiter.priority] -= 1

    def wake_head(self) -> None:
        """Wake the head so it looks at the slots again."""
        head = self.head()
        if head is not None:
            head.event.set()

    @staticmethod
    def _first(queue: deque[W]) -> W | None:
        while queue and queue[0].done:
            queue.popleft()
        return queue[0] if queue else None
