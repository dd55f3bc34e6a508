"""The stream of a run's outcomes (`BatchOutcomes`), and errors taken out of task groups."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from ._outcome import BatchOutcome, BatchStats

__all__ = ["BatchOutcomes", "single_error"]


def single_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error inside ``group`` (nested groups flattened), or ``group`` itself."""
    leaves: list[BaseException] = []

    def collect(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                collect(inner)
        else:
            leaves.append(exc)

    collect(group)
    return leaves[0] if len(leaves) == 1 else group


class BatchOutcomes:
    """The outcomes of a run, as they complete: ``async for outcome in outcomes``.

    ``stats`` counts as the run goes; ``stop()`` takes no new inputs (those in flight finish).
    """

    def __init__(
        self,
        receive: MemoryObjectReceiveStream[BatchOutcome],
        stats: BatchStats,
        stop: Callable[[], None],
    ) -> None:
        self._receive = receive
        self._stats = stats
        self._stop = stop

    @property
    def stats(self) -> BatchStats:
        """The run's live counters."""
        return self._stats

    def stop(self) -> None:
        """Take no more inputs; those in flight run to their end (and are journaled)."""
        self._stop()

    def __aiter__(self) -> AsyncIterator[BatchOutcome]:
        return self

    async def __anext__(self) -> BatchOutcome:
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
