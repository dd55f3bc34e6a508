"""From the caller's inputs to the run's plans: checked, planned in a worker thread, counted."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import attrs

from .._errors import ValidationError
from .._paths import BatchInput, to_item
from ._inputs import DUPLICATE, OTHER_SHARD, InputPlanner, Plan, PlannedInput
from ._layout import BatchConfigError, check_argument, real
from ._outcome import BatchOutcome, BatchStats

if TYPE_CHECKING:
    from ._run import BatchRunner

__all__ = ["check_all", "count_inputs", "plans"]


def check_all(inputs: Sequence[BatchInput], out_root: Path) -> list[str]:
    """Check every input argument of a list before any request; return their sources."""
    sources: list[str] = []
    for raw in inputs:
        try:
            source = to_item(raw).source
        except (ValidationError, TypeError, ValueError):
            continue  # reported as that input's failure
        check_argument(source, out_root)
        sources.append(source)
    return sources


@attrs.define
class _Skipped:
    duplicates: int = 0
    other_shards: int = 0


def _next_plan(plans: Iterator[Plan], skipped: _Skipped) -> PlannedInput | BatchOutcome | None:
    """The next photo or rejection of ``plans`` (markers counted in ``skipped``). Blocking."""
    for plan in plans:
        if plan is DUPLICATE:
            skipped.duplicates += 1
        elif plan is OTHER_SHARD:
            skipped.other_shards += 1
        elif isinstance(plan, PlannedInput | BatchOutcome):
            return plan
    return None


PLAN_BATCH = 16
"""Inputs planned per worker-thread hop once the run is going (the first hop plans one, so
the first photo starts at once): a hop costs more CPU than planning a photo does."""


def _next_plans(
    plans: Iterator[Plan], skipped: _Skipped, limit: int
) -> tuple[list[PlannedInput | BatchOutcome], Exception | None]:
    """Up to ``limit`` next plans, and the error that cut them short (to be raised once the
    plans before it are used). Blocking."""
    batch: list[PlannedInput | BatchOutcome] = []
    try:
        while len(batch) < limit:
            plan = _next_plan(plans, skipped)
            if plan is None:
                break
            batch.append(plan)
    except Exception as exc:
        if not batch:
            raise
        return batch, exc
    return batch, None


async def plans(
    planner: InputPlanner,
    inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
    stats: BatchStats,
) -> AsyncIterator[PlannedInput | BatchOutcome]:
    """The plans of every input, in order (the caller pulls one once it has a slot free);
    planning, and pulling a plain iterable, run in a worker thread, up to `PLAN_BATCH`
    inputs ahead of the caller.

    (An async generator without a task group or cancel scope inside: safe to abandon.)
    """

    async def drain(plans: Iterator[Plan]) -> AsyncIterator[PlannedInput | BatchOutcome]:
        limit = 1
        while True:
            skipped = _Skipped()
            batch, error = await anyio.to_thread.run_sync(_next_plans, plans, skipped, limit)
            stats.duplicates += skipped.duplicates
            stats.other_shards += skipped.other_shards
            for plan in batch:
                yield plan
            if error is not None:
                raise error
            if len(batch) < limit:
                return
            limit = min(PLAN_BATCH, limit * 2)

    if isinstance(inputs, AsyncIterable):
        async for raw in inputs:
            async for plan in drain(planner.plan(raw)):
                yield plan
    else:
        async for plan in drain(chain.from_iterable(map(planner.plan, inputs))):
            yield plan


def count_inputs(inputs: Iterable[BatchInput], runner: BatchRunner) -> int:
    """How many photos ``runner`` would take from ``inputs`` (duplicates and other shards
    left out): for a progress bar's total. Blocking (it walks the folders once more)."""
    count = 0
    skipped = _Skipped()
    with InputPlanner(real(runner.out_dir), runner.create_options, shard=runner.shard) as planner:
        plans = chain.from_iterable(map(planner.plan, inputs))
        try:
            while _next_plan(plans, skipped) is not None:
                count += 1
        except BatchConfigError:
            pass  # the run itself says so
    return count
