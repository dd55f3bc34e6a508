"""`run_batch`: the one-call way into a batch run."""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Literal

from .._paths import BatchInput
from ._outcome import Mode
from ._run import BatchRunner
from ._shard import Shard
from ._stream import BatchOutcomes

if TYPE_CHECKING:
    from .._client import AsyncIDPhotoClient

__all__ = ["run_batch"]


def run_batch(
    client: AsyncIDPhotoClient,
    inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
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
) -> AbstractAsyncContextManager[BatchOutcomes]:
    """Make an ID photo of every input; an async context manager yielding the outcomes.

    ::

        async with run_batch(client, ["photos/"], out_dir="out", size="295x413") as outcomes:
            async for outcome in outcomes:
                print(outcome.input, outcome.status)

    Args:
        inputs: image paths, folders (walked recursively for image files, in sorted order),
            ``http(s)://`` URLs, `BatchItem`\\ s or ``(source, options)`` pairs, from any
            (sync or async) iterable, taken lazily: at most ``max_in_flight`` + 16 ahead of
            the outcomes (inputs are planned 16 at a time in a worker thread). One photo
            named several ways is one input (the later names are dropped, counted in
            ``stats.duplicates``). A list is checked whole before any request.
        out_dir: outputs go here, mirroring the inputs' relative paths, with the extension
            of ``format``. It must not be an input folder, nor contain one.
        mode: ``"async"`` (create, poll, download; resumable) or ``"sync"`` (one request per
            photo).
        max_in_flight: photos in progress at once; default from the client's QPS.
        journal: the resume journal; default ``out_dir/`` `JOURNAL_NAME`, ``False`` for none.
        retry_failed: try inputs that failed permanently in an earlier run again.
        task_retries: new creates (per input, per run) after a task fails with a
            retryable state (`TaskState.retryable`); failed tasks are not charged.
        create_retries: new creates after a create failed in a way that may have made a
            task (5xx, timeout or connection cut after sending); each may pay twice and is
            counted in ``stats.possible_extra_charges``. Default 0: report the failure.
        recreate_expired: create again (a second credit) when a result expired before it
            could be downloaded; otherwise the input fails with `ResultExpiredError`.
        shard: ``"K/N"`` or a `Shard`: take only the K-th of N deterministic shares of the
            inputs (split one batch over N processes or machines).
        create_options: ``size``, ``format``, ``bg_color``, ``return_type`` for every input.

    Raises (from the ``async with``, as themselves): `BatchConfigError` (colliding or
    unwritable paths), `JournalLockedError`, `AuthenticationError` (the key is refused),
    `APIConnectionError` (the origin cannot be reached at all), `JournalWriteError`.
    """
    runner = BatchRunner(
        client,
        out_dir=out_dir,
        mode=mode,
        max_in_flight=max_in_flight,
        journal=journal,
        retry_failed=retry_failed,
        task_retries=task_retries,
        create_retries=create_retries,
        recreate_expired=recreate_expired,
        shard=shard,
        **create_options,
    )
    return runner.outcomes(inputs)
