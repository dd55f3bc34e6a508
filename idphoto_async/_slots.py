"""`ConnectionSlots`: requests on the wire at once, at most the pool's size."""

from __future__ import annotations

import anyio

__all__ = ["ConnectionSlots"]


class ConnectionSlots:
    """At most ``total`` requests on the wire at once; ``async with slots:`` holds one.

    Requests beyond it wait here rather than inside httpcore, whose pool rescans every
    queued request on each start and close (measured: over half the client's CPU with 200
    sync creates queued). A free slot is taken without a turn of the event loop (anyio's
    ``async with limiter`` always yields once, even when a token is free: a task step of
    the whole request's coroutine stack, three per photo in a batch); only a request that
    finds every slot taken waits, in arrival order. The limiter is made lazily, inside the
    caller's event loop.
    """

    __slots__ = ("_limiter", "total")

    def __init__(self, total: int) -> None:
        self.total = total
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot now."""
        return 0 if self._limiter is None else self._limiter.statistics().tasks_waiting

    async def __aenter__(self) -> None:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.total)
        try:
            self._limiter.acquire_nowait()
        except anyio.WouldBlock:
            await self._limiter.acquire()

    async def __aexit__(self, *exc: object) -> None:
        assert self._limiter is not None
        self._limiter.release()
