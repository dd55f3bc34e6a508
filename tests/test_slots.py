"""ConnectionSlots: a free slot without a turn of the event loop, full slots in arrival order."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from idphoto_async._slots import ConnectionSlots

pytestmark = pytest.mark.anyio


async def test_a_free_slot_is_taken_without_a_turn_of_the_event_loop() -> None:
    slots = ConnectionSlots(2)
    order: list[str] = []

    async def other() -> None:
        order.append("other task ran")

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        async with slots:
            order.append("slot held")
        order.append("slot released")
        await anyio.lowlevel.checkpoint()
    assert order == ["slot held", "slot released", "other task ran"]


async def test_full_slots_are_waited_for_in_arrival_order() -> None:
    slots = ConnectionSlots(1)
    order: list[str] = []
    release = anyio.Event()

    async def holder() -> None:
        async with slots:
            order.append("holder")
            await release.wait()

    async def waiter(name: str) -> None:
        async with slots:
            order.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(waiter, "first")
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(waiter, "second")
        await anyio.wait_all_tasks_blocked()
        assert slots.waiting == 2
        release.set()
    assert order == ["holder", "first", "second"]
    assert slots.waiting == 0


async def test_a_cancelled_waiter_takes_no_slot() -> None:
    slots = ConnectionSlots(1)
    release = anyio.Event()
    took: list[str] = []

    async def holder() -> None:
        async with slots:
            await release.wait()

    async def waiter(scope: anyio.CancelScope) -> None:
        with scope:
            async with slots:
                took.append("cancelled waiter")  # pragma: no cover

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await anyio.wait_all_tasks_blocked()
        scope = anyio.CancelScope()
        tg.start_soon(waiter, scope)
        await anyio.wait_all_tasks_blocked()
        assert slots.waiting == 1
        scope.cancel()
        await anyio.wait_all_tasks_blocked()
        assert slots.waiting == 0
        release.set()
    async with slots:  # the held slot was released, the cancelled one never taken
        took.append("next")
    assert took == ["next"]
