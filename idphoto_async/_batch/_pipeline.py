"""One photo: create -> wait -> download, each step kept in the store (the journal).

Async mode: ``creating`` (when the request really goes out) -> ``created`` -> wait ->
download -> ``downloaded``. Sync mode makes one ``create(sync=True)`` request
instead of create and wait. A re-run asks the store first: a stored output is skipped, a
young task is polled instead of created again, a permanent failure is reported again.

Errors of the photo become its failed `BatchOutcome` (journaled, with the task id once the
task exists); errors of the run (`RunStop.is_run_level`) propagate, unjournaled.
"""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.lowlevel
import attrs

from .._constants import MAX_PROCESSING_SECONDS, RESULT_TTL
from .._download import remove_stale_parts
from .._errors import (
    APIError,
    DownloadError,
    IDPhotoError,
    NotFoundError,
    ResultExpiredError,
    TaskFailedError,
    ValidationError,
)
from .._journal import BatchStore, Entry, error_info
from .._models import Task, TaskResult
from .._retry import Retry
from ._inputs import PlannedInput
from ._outcome import BatchOutcome, BatchStats, Mode
from ._policy import Attempts, Reason, RecreatePolicy
from ._restore import restore_error
from ._shield import CreateShields
from ._stop import RunStop, key_refused

if TYPE_CHECKING:
    from .._client import AsyncIDPhotoClient

__all__ = ["PhotoPipeline"]

RESUME_MARGIN: Final = 120.0
"""A journaled task is polled only if it is younger than the result TTL minus this."""
WAIT_MARGIN: Final = 30.0
_TASK_LOST: Final = frozenset({"TaskFailedError", "ResultExpiredError"})


def _age(created_at: datetime | None) -> float:
    if created_at is None:
        return math.inf
    return (datetime.now(UTC) - created_at).total_seconds()


class _Restart(Exception):
    """The journaled task is gone: create a fresh one."""


@attrs.define
class _Photo:
    """One photo in progress: what it is, the task it has, the new creates it had."""

    job: PlannedInput
    task_id: str | None = None
    attempts: Attempts = attrs.field(factory=Attempts)
    sent: bool = False
    """A create request for it went out in this run."""
    earlier: bool = False
    """An earlier run worked on it (and may have been killed while writing its output)."""

    def outcome(self, **fields: Any) -> BatchOutcome:
        fields.setdefault("task_id", self.task_id)
        return BatchOutcome(
            self.job.name,
            possible_extra_charges=self.attempts.possible_extra_charges,
            **fields,
        )


class PhotoPipeline:
    """Makes one photo at a time (many run at once); shared by every worker of a run."""

    def __init__(
        self,
        client: AsyncIDPhotoClient,
        store: BatchStore,
        *,
        mode: Mode,
        policy: RecreatePolicy,
        retry_failed: bool,
        stats: BatchStats,
        stop: RunStop,
        shields: CreateShields,
    ) -> None:
        self.client = client
        self.store = store
        self.mode = mode
        self.policy = policy
        self.retry_failed = retry_failed
        self.stats = stats
        self.stop = stop
        self.shields = shields

    async def run(self, job: PlannedInput) -> BatchOutcome:
        """The outcome of ``job``; raises only errors of the run."""
        photo = _Photo(job)
        try:
            return await self._run(photo)
        except IDPhotoError as exc:
            if self.stop.is_run_level(exc):
                raise
            return await self._fail(photo, exc)

    async def _fail(self, photo: _Photo, error: IDPhotoError) -> BatchOutcome:
        task_id = getattr(error, "task_id", None) or photo.task_id
        if isinstance(error, ValidationError) and not photo.sent:
            self.stats.rejected += 1
        await self.store.failed(photo.job.key, photo.job.name, task_id, error_info(error))
        return photo.outcome(status="failed", task_id=task_id, error=error)

    # -- what an earlier run left -------------------------------------------------------------

    async def _run(self, photo: _Photo) -> BatchOutcome:
        job = photo.job
        entry = await self.store.lookup(job.key)
        if entry is not None:
            photo.earlier = True
            photo.task_id = entry.task_id
            if entry.output == job.relative and await anyio.to_thread.run_sync(
                os.path.isfile, job.dest
            ):
                return photo.outcome(status="skipped", output=job.dest)
            failure = entry.failure
            if (
                failure is not None
                and failure.permanent
                and not self.retry_failed
                and failure.http_status not in (401, 403)  # the key, not the photo
            ):
                error = restore_error(failure, entry.task_id)
                return photo.outcome(status="failed", error=error)
            resumed = await self._resume(photo, entry)
            if resumed is not None:
                return resumed
        return await self._make(photo)

    async def _resume(self, photo: _Photo, entry: Entry) -> BatchOutcome | None:
        """Poll the journaled task if it may still be there; None to create anew."""
        failure = entry.failure
        task_lost = failure is not None and failure.type in _TASK_LOST
        if not entry.task_id or task_lost:
            return None
        if _age(entry.created_at) >= RESULT_TTL - RESUME_MARGIN:
            self._result_lost(photo)
            return None
        self.stats.resumed += 1
        try:
            return await self._finish(photo, Task(entry.task_id, entry.created_at), fresh=False)
        except _Restart:
            self._result_lost(photo)
            return None
        except TaskFailedError as exc:
            if self._retry_reason(exc, photo) is None:
                raise
            await self._note(photo, exc)
            return None

    def _result_lost(self, photo: _Photo) -> None:
        """An earlier run's task was made (and maybe paid for) but its result is gone: the
        create that follows may pay a second time."""
        photo.task_id = None
        photo.attempts.possible_extra_charges += 1
        self.stats.possible_extra_charges += 1

    # -- this run's creates -------------------------------------------------------------------

    async def _make(self, photo: _Photo) -> BatchOutcome:
        """Create the photo; create it again only where `RecreatePolicy` says so."""
        failures: list[IDPhotoError] = []

        async def attempt(number: int) -> BatchOutcome:
            if number > 1:
                await self._note(photo, failures[-1])
            try:
                created = await self._create(photo, sync=self.mode == "sync")
                if isinstance(created, TaskResult):
                    return await self._download(photo, created)
                return await self._finish(photo, created, fresh=True)
            except IDPhotoError as exc:
                failures[:] = [exc]
                raise

        def retry_on(error: Exception) -> Retry | None:
            if not isinstance(error, IDPhotoError):
                return None
            reason = self._retry_reason(error, photo)
            if reason is None:
                return None
            return Retry(reason.value, after=0 if reason is Reason.RESULT_EXPIRED else None)

        return await self.client.retry_policy.call(
            attempt,
            retry_on=retry_on,
            max_retries=self.policy.budget,
            what=f"create of {photo.job.name}",
        )

    def _retry_reason(self, error: IDPhotoError, photo: _Photo) -> Reason | None:
        if self.stop.is_run_level(error):
            return None
        reason = self.policy.reason(error, photo.attempts)
        if reason is None:
            return None
        photo.attempts.note(reason)
        if reason is Reason.TASK_FAILED:
            self.stats.retried += 1
        elif reason is Reason.RESULT_EXPIRED:
            self.stats.recreated += 1
        if reason.may_charge:
            self.stats.possible_extra_charges += 1
        return reason

    async def _note(self, photo: _Photo, error: IDPhotoError) -> None:
        """Journal a failure that is about to be followed by a new create."""
        task_id = getattr(error, "task_id", None) or photo.task_id
        await self.store.failed(photo.job.key, photo.job.name, task_id, error_info(error))
        photo.task_id = None

    def _create_args(self, photo: _Photo) -> dict[str, Any]:
        item, options = photo.job.item, photo.job.options
        args: dict[str, Any] = {
            "size": options.size,
            "format": options.format,
            "bg_color": options.bg_color,
            "return_type": options.return_type,
        }
        args["image_url" if item.is_url else "image_file"] = item.source
        return args

    async def _create(self, photo: _Photo, *, sync: bool) -> Task | TaskResult:
        """One create (either mode), journaled: ``creating`` on the wire, then ``created``."""
        job, store = photo.job, self.store

        async def on_send() -> None:
            photo.sent = True
            self.stats.creates += 1
            await store.creating(job.key, job.name)

        with self.shields.on_the_wire():
            try:
                created = await self.client.create(
                    sync=sync, retry_create=False, on_send=on_send, **self._create_args(photo)
                )
            except APIError as exc:
                if key_refused(exc):
                    raise
                if exc.task_id:  # the answer named its task: that is the task, poll it
                    self.stop.answered()
                    photo.task_id = exc.task_id
                    now = datetime.now(UTC)
                    await store.created(job.key, job.name, exc.task_id, now)
                    return Task(exc.task_id, now)
                if exc.task_may_exist:
                    self.stats.creates_in_doubt += 1
                raise
            except TaskFailedError as exc:  # sync mode: the task exists, keep its id
                photo.task_id = exc.task_id
                await store.created(job.key, job.name, exc.task_id, datetime.now(UTC))
                raise
            self.stop.answered()
            photo.task_id = created.task_id
            created_at = created.created_at or datetime.now(UTC)
            await store.created(job.key, job.name, created.task_id, created_at)
            if isinstance(created, TaskResult):
                return created
            return Task(created.task_id, created_at)
        await anyio.lowlevel.checkpoint()  # the shield timed out: we are being cancelled
        raise AssertionError("unreachable")  # pragma: no cover

    async def _finish(self, photo: _Photo, task: Task, *, fresh: bool) -> BatchOutcome:
        """Wait for ``task`` and store its result; a lost resumed task raises `_Restart`."""
        photo.task_id = task.task_id
        # wait()'s timeout counts from the task's creation: give a resumed task its full time.
        timeout = None if fresh else _age(task.created_at) + MAX_PROCESSING_SECONDS + WAIT_MARGIN
        try:
            result = await self.client.wait(task, timeout=timeout)
        except NotFoundError:
            if fresh:
                raise
            raise _Restart from None  # the service no longer knows the task
        self.stop.answered()
        try:
            return await self._download(photo, result)
        except ResultExpiredError:
            if fresh:
                raise
            raise _Restart from None

    async def _download(self, photo: _Photo, result: TaskResult) -> BatchOutcome:
        job = photo.job
        photo.task_id = result.task_id
        try:
            path = await self.client._download_to(result, job.dest)
        except OSError as exc:
            raise DownloadError(f"Cannot write {job.dest}: {exc.strerror or exc}.") from exc
        if photo.earlier:  # a run killed while writing it left a temporary file
            await anyio.to_thread.run_sync(remove_stale_parts, path)
        await self.store.downloaded(job.key, job.name, result.task_id, job.relative)
        return photo.outcome(status="succeeded", task_id=result.task_id, output=path)
