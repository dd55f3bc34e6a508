"""One batch run: inputs planned in order, photos made concurrently, outcomes streamed.

Shaped like aiometer's ``amap``: `BatchRunner.outcomes` is an async context manager that
holds the anyio task group and yields the stream of outcomes (no task group inside an async
generator: PEP 789). A producer plans the inputs (`InputPlanner`, in a worker thread) and
starts at most ``max_in_flight`` workers; each runs the `PhotoPipeline` and sends its
outcome into a memory object stream, holding its slot until the outcome is taken, so a slow
consumer slows the producer and memory stays flat.

Errors of the run (`RunStop`) cancel it and are raised to the caller as themselves, never
wrapped in an exception group.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from .._constants import DEFAULT_QPS
from .._errors import IDPhotoError, ValidationError
from .._journal import JOURNAL_NAME, BatchStore, Journal, NullJournal
from .._options import make_options
from .._paths import BatchInput
from ._inputs import InputPlanner, PlannedInput
from ._interpreter import warn_if_interning_leaks
from ._layout import BatchConfigError, check_side_files, prepare_out_dir, real
from ._outcome import BatchOutcome, BatchStats, Mode, default_max_in_flight
from ._pipeline import PhotoPipeline
from ._plans import check_all, plans
from ._policy import RecreatePolicy
from ._shard import Shard
from ._shield import CreateShields
from ._stop import RunStop
from ._stream import BatchOutcomes, single_error

if TYPE_CHECKING:
    from .._client import AsyncIDPhotoClient

__all__ = ["BatchRunner"]

_OPTION_NAMES: Final = frozenset({"size", "format", "bg_color", "return_type"})


class BatchRunner:
    """One batch run, configured; `run_batch` is the usual way in.

    `outcomes` runs it (an async context manager yielding `BatchOutcomes`); `stop` ends the
    taking of new inputs; `stats` counts as it goes.
    """

    def __init__(
        self,
        client: AsyncIDPhotoClient,
        *,
        out_dir: str | os.PathLike[str],
        mode: Mode = "async",
        max_in_flight: int | None = None,
        journal: str | os.PathLike[str] | Literal[False] | None = None,
        retry_failed: bool = False,
        task_retries: int = 2,
        create_retries: int = 0,
        recreate_expired: bool = False,
        shard: Shard | str | None = None,
        **create_options: Any,
    ) -> None:
        unknown = set(create_options) - _OPTION_NAMES
        if unknown:
            raise TypeError(f"unknown batch option(s): {', '.join(sorted(unknown))}")
        if mode not in ("async", "sync"):
            raise ValidationError(f"mode must be 'async' or 'sync', got {mode!r}", field="mode")
        if max_in_flight is not None and max_in_flight < 1:
            raise ValidationError("max_in_flight must be at least 1", field="max_in_flight")
        self.client = client
        self.out_dir = Path(out_dir)
        self.mode: Mode = mode
        self.policy = RecreatePolicy(task_retries, create_retries, recreate_expired)
        make_options(**create_options)  # fail fast on bad batch options
        self.create_options = create_options
        qps = float(getattr(getattr(client, "limiter", None), "qps", DEFAULT_QPS))
        self.max_in_flight = max_in_flight or default_max_in_flight(qps)
        self.shard = Shard.parse(shard) if isinstance(shard, str) else shard
        self.journal_path = self._journal_path(journal)
        self.retry_failed = retry_failed
        self.stats = BatchStats()
        self._stop = RunStop()
        self._producer_scope: anyio.CancelScope | None = None
        self._stopping = False

    def _journal_path(self, journal: str | os.PathLike[str] | Literal[False] | None) -> Path | None:
        if journal is False:
            return None
        if journal:
            return Path(journal)
        name = Path(JOURNAL_NAME)
        if self.shard is not None:  # shards may share OUT: one journal each
            name = name.with_name(f"{name.stem}-shard{self.shard.index}of{self.shard.count}")
            name = name.with_suffix(Path(JOURNAL_NAME).suffix)
        return self.out_dir / name

    # -- control ------------------------------------------------------------------------

    def stop(self) -> None:
        """Take no more inputs; those in flight run to their end (and are journaled)."""
        self._stopping = True
        if self._producer_scope is not None:
            self._producer_scope.cancel()

    @property
    def stopping(self) -> bool:
        """`stop` was called."""
        return self._stopping

    @property
    def unjournaled_task_ids(self) -> list[str]:
        """Tasks made (and maybe paid for) that a failed journal write could not keep."""
        return self._stop.unjournaled_task_ids

    # -- the run --------------------------------------------------------------------------

    async def _open(self, inputs: object, stack: AsyncExitStack) -> tuple[Path, BatchStore]:
        """Check the layout (before any request) and open the store (closed by ``stack``)."""
        warn_if_interning_leaks()
        out_root = await anyio.to_thread.run_sync(prepare_out_dir, self.out_dir)
        journal = None if self.journal_path is None else real(self.journal_path)
        if isinstance(inputs, Sequence) and not isinstance(inputs, str | bytes):
            sources = await anyio.to_thread.run_sync(check_all, inputs, out_root)
        else:
            sources = []
        await anyio.to_thread.run_sync(lambda: check_side_files(out_root, sources, journal=journal))
        if self.journal_path is None:
            return out_root, await stack.enter_async_context(NullJournal())
        try:
            store = await stack.enter_async_context(Journal(self.journal_path))
        except IDPhotoError:
            raise
        except Exception as exc:
            raise BatchConfigError(
                f"cannot open the journal {self.journal_path}: {exc}; choose another "
                "--journal path or a writable output directory",
                field="journal",
            ) from None
        return out_root, store

    @asynccontextmanager
    async def outcomes(
        self, inputs: Iterable[BatchInput] | AsyncIterable[BatchInput]
    ) -> AsyncIterator[BatchOutcomes]:
        """Run the batch; yield its outcomes (the stream ends when every input is done).

        Paths are checked and the journal opened before any request: a collision or an
        unwritable path raises `BatchConfigError` (a list of inputs is checked whole first).
        Leaving the block early cancels the work still running: creates already sent are
        given time to answer, and every finished step is in the journal. An error of the run
        (the key refused, the origin unreachable, the journal unwritable) stops it and is
        raised here as itself.
        """
        if isinstance(inputs, str | os.PathLike):
            inputs = [inputs]  # one path or URL, not its characters
        async with AsyncExitStack() as stack:
            out_root, store = await self._open(inputs, stack)
            self.stats.in_doubt = store.in_doubt
            shields = CreateShields()
            pipeline = PhotoPipeline(
                self.client,
                store,
                mode=self.mode,
                policy=self.policy,
                retry_failed=self.retry_failed,
                stats=self.stats,
                stop=self._stop,
                shields=shields,
            )
            planner = stack.enter_context(
                InputPlanner(out_root, self.create_options, shard=self.shard)
            )
            send, receive = anyio.create_memory_object_stream[BatchOutcome](self.max_in_flight)
            try:
                async with anyio.create_task_group() as tg:
                    self._stop.attach(tg.cancel_scope)
                    tg.start_soon(self._produce, planner, pipeline, inputs, send, tg)
                    try:
                        with receive:
                            yield BatchOutcomes(receive, self.stats, self.stop)
                    finally:
                        shields.begin_cancel()
                        tg.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                raise single_error(group) from None
            if self._stop.error is not None:
                raise self._stop.error

    # -- producer and workers --------------------------------------------------------------

    async def _produce(
        self,
        planner: InputPlanner,
        pipeline: PhotoPipeline,
        inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
        send: MemoryObjectSendStream[BatchOutcome],
        tg: TaskGroup,
    ) -> None:
        slots = anyio.Semaphore(self.max_in_flight)
        try:
            with send, anyio.CancelScope() as scope:
                self._producer_scope = scope
                if self._stopping:
                    return
                planned = plans(planner, inputs, self.stats)
                while True:
                    await slots.acquire()
                    plan = await anext(planned, None)
                    if plan is None:
                        break
                    self.stats.taken += 1
                    self.stats.in_flight += 1
                    probe = self._stop.probe()
                    tg.start_soon(self._work, pipeline, plan, send.clone(), slots, probe)
                    if probe is not None:
                        await probe.wait()
        except Exception as exc:  # a bad input stream ends the run, raised as itself
            self._stop.stop(exc)

    async def _work(
        self,
        pipeline: PhotoPipeline,
        job: PlannedInput | BatchOutcome,
        send: MemoryObjectSendStream[BatchOutcome],
        slots: anyio.Semaphore,
        probe: anyio.Event | None,
    ) -> None:
        counted = False
        try:
            with send:
                if isinstance(job, BatchOutcome):
                    self.stats.rejected += 1
                    outcome = job
                else:
                    outcome = await pipeline.run(job)
                counted = True
                self.stats.in_flight -= 1
                self.stats.count(outcome)
                try:  # room in the buffer (the usual case): no turn of the event loop
                    send.send_nowait(outcome)
                except anyio.WouldBlock:
                    await send.send(outcome)
        except anyio.BrokenResourceError:
            pass  # the caller left the block: the run is being cancelled
        except Exception as exc:  # an error of the run: stop it; raised there
            self._stop.stop(exc)
        finally:
            if not counted:
                self.stats.in_flight -= 1
            slots.release()
            if probe is not None:
                probe.set()
