"""The fair waiter queue both limiters share (`idphoto_async._waiters.FairQueue`)."""

from __future__ import annotations

import pytest

from idphoto_async._waiters import FairQueue, Waiter

pytestmark = pytest.mark.anyio


def serve_all(queue: FairQueue[Waiter]) -> list[Waiter]:
    order = []
    while (head := queue.head()) is not None:
        queue.grant(head)
        order.append(head)
    return order


async def test_fifo_within_a_class_priority_first_without_a_cap() -> None:
    queue: FairQueue[Waiter] = FairQueue()
    normal = [Waiter(False) for _ in range(3)]
    first = [Waiter(True) for _ in range(2)]
    for waiter in (normal[0], first[0], normal[1], first[1], normal[2]):
        queue.join(waiter)
    assert queue.waiting == 5 and queue.count(True) == 2
    assert serve_all(queue) == [first[0], first[1], *normal]
    assert queue.waiting == 0 and all(w.done for w in normal + first)


async def test_a_priority_run_lets_normal_waiters_take_turns() -> None:
    queue: FairQueue[Waiter] = FairQueue(priority_run=1)
    normal = [Waiter(False) for _ in range(2)]
    first = [Waiter(True) for _ in range(3)]
    for waiter in normal + first:
        queue.join(waiter)
    assert serve_all(queue) == [first[0], normal[0], first[1], normal[1], first[2]]


async def test_leaving_is_idempotent_and_skips_the_left() -> None:
    queue: FairQueue[Waiter] = FairQueue()
    a, b = Waiter(False), Waiter(False)
    assert queue.join(a) is True  # the head
    assert queue.join(b) is False
    queue.leave(a)
    queue.leave(a)
    assert queue.waiting == 1 and queue.head() is b


async def test_a_priority_waiter_displaces_the_head_and_only_the_head_is_woken() -> None:
    queue: FairQueue[Waiter] = FairQueue()
    a, b = Waiter(False), Waiter(True)
    queue.join(a)
    assert queue.join(b) is True  # b is the head now: a sleeping a must yield
    queue.wake_head()
    assert b.event.is_set() and not a.event.is_set()
    queue.grant(b)  # granting wakes the next head
    assert a.event.is_set()
