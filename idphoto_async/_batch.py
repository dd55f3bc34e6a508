"""The batch runner: many inputs in, one outcome per input out, as each completes.

Shaped like aiometer's ``amap``: a producer takes inputs lazily from any iterable, at most
``max_in_flight`` workers run in one anyio task group, and each worker sends its outcome into
a memory object stream the caller reads. A worker holds its slot until its outcome has been
taken, so a slow consumer slows the producer and memory stays flat.

Per input (async mode): create -> journal ``created`` -> wait -> journal ``done`` -> download
-> journal ``downloaded``. Sync mode makes one ``create(sync=True)`` request instead of create
and wait. With a journal (the default), a re-run resumes: see `idphoto_async._journal`.
"""

from __future__ import annotations

import math
import os
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import anyio
import anyio.lowlevel
import anyio.to_thread
import attrs
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import _errors
from ._constants import DEFAULT_QPS, MAX_PROCESSING_SECONDS, RESULT_TTL
from ._errors import (
    APIError,
    DownloadError,
    IDPhotoError,
    NotFoundError,
    ResultExpiredError,
    TaskFailedError,
    ValidationError,
)
from ._journal import JOURNAL_NAME, Entry, ErrorInfo, Journal, error_info, input_key
from ._models import Task, TaskResult, TaskState
from ._options import CreateOptions, make_options
from ._paths import BatchInput, BatchItem, check_inside, output_path, to_item, with_hash

if TYPE_CHECKING:
    from ._client import AsyncIDPhotoClient

__all__ = [
    "BatchOutcome",
    "BatchRunner",
    "BatchStats",
    "default_max_in_flight",
    "run_batch",
]

Status = Literal["succeeded", "failed", "skipped"]
Mode = Literal["async", "sync"]

EXPECTED_P90_SECONDS: Final = 5.0
"""Processing time (90th percentile) assumed before the client has learned any."""
LATENCY_MARGIN: Final = 5.0
"""Seconds added for polling lag and the download: at the QPS bound the first query aims at
the 97th percentile, so a task lives well past the 90th (measured at QPS 2: 24 in flight made
0.88 photos/s against 0.85-0.87 with 18)."""
MAX_IN_FLIGHT_CAP: Final = 256
RESUME_MARGIN: Final = 120.0
"""A journaled task is polled only if it is younger than the result TTL minus this."""
SHIELD_SECONDS: Final = 60.0
"""How long a create already started may run on after cancellation, to learn its task id."""

WAIT_MARGIN: Final = 30.0
_OPTION_NAMES: Final = frozenset({"size", "format", "bg_color", "return_type"})
_TASK_LOST: Final = frozenset({"TaskFailedError", "ResultExpiredError"})


@attrs.frozen
class BatchOutcome:
    """What happened to one input."""

    input: str
    status: Status
    task_id: str | None = None
    output: Path | None = None
    error: IDPhotoError | None = None

    @property
    def ok(self) -> bool:
        """Succeeded now or earlier (skipped)."""
        return self.status != "failed"

    def report_record(self) -> dict[str, Any]:
        """The report's JSON object: input, status, task_id, output, error."""
        return {
            "input": self.input,
            "status": self.status,
            "task_id": self.task_id,
            "output": None if self.output is None else str(self.output),
            "error": None if self.error is None else error_info(self.error).to_json(),
        }


@attrs.define
class BatchStats:
    """Live counters of a run (read them for a progress display)."""

    taken: int = 0
    succeeded: int = 0
    skipped: int = 0
    failed: int = 0
    in_flight: int = 0
    creates: int = 0
    resumed: int = 0
    in_doubt: int = 0
    """Creates an earlier run may have sent without learning the task id (see the journal)."""
    creates_in_doubt: int = 0
    """Creates of this run that failed after they may have reached the service (a 5xx, a
    timeout or a connection cut after sending): each may have made a task, and so may be
    charged, without an output."""
    retried: int = 0
    """New creates after a task failed with a retryable state (failed tasks cost nothing)."""
    recreated: int = 0
    """New creates after a result expired before it was downloaded (``recreate_expired``)."""

    @property
    def finished(self) -> int:
        """Inputs with an outcome."""
        return self.succeeded + self.skipped + self.failed


def default_max_in_flight(qps: float, p90_seconds: float | None = None) -> int:
    """Enough photos in flight to use the key's QPS while each takes ``p90 + margin`` seconds."""
    p90 = EXPECTED_P90_SECONDS if p90_seconds is None else p90_seconds
    wanted = math.ceil(max(qps, 0.1) * (p90 + LATENCY_MARGIN)) + 4
    return max(4, min(MAX_IN_FLIGHT_CAP, wanted))


def restore_error(info: ErrorInfo) -> IDPhotoError:
    """Rebuild a journaled error (same class, message, state or status) to report it again."""
    cls = getattr(_errors, info.type, None)
    if not (isinstance(cls, type) and issubclass(cls, IDPhotoError)):
        cls = IDPhotoError
    error = cls.__new__(cls)
    Exception.__init__(error, info.message)
    if info.state is not None:
        error.state = TaskState(info.state)  # type: ignore[attr-defined]
    if info.http_status is not None:
        error.status_code = info.http_status  # type: ignore[attr-defined]
    error.retryable = not info.permanent
    return error


def _age(created_at: datetime | None) -> float:
    if created_at is None:
        return math.inf
    return (datetime.now(UTC) - created_at).total_seconds()


def _identity(item: BatchItem) -> str:
    """What makes an input the same input next time: the URL, or path + size + mtime."""
    if item.is_url:
        return item.source
    try:
        st = os.stat(item.source)
        real = os.path.realpath(item.source)
    except OSError as exc:
        raise ValidationError(
            f"cannot read {item.source!r}: {exc.strerror or exc}", field="image_file"
        ) from None
    return f"{real}|{st.st_size}|{st.st_mtime_ns}"


class _Restart(Exception):
    """The journaled task is gone: create a fresh one."""


class _CreateInDoubt(Exception):
    """A create failed after it may have made a task (see ``APIError.task_may_exist``)."""

    def __init__(self, error: APIError) -> None:
        super().__init__(str(error))
        self.error = error


@attrs.frozen
class _Prepared:
    item: BatchItem
    options: CreateOptions
    dest: Path


class BatchRunner:
    """One batch run; `run_batch` is the usual way in.

    Use `outcomes` as an async context manager; `stop` ends the taking of new
    inputs (in-flight ones finish and are journaled); `stats` counts as it goes.
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
        create_retries: int = 2,
        recreate_expired: bool = False,
        **create_options: Any,
    ) -> None:
        for name, value in (("task_retries", task_retries), ("create_retries", create_retries)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValidationError(f"{name} must be an integer >= 0", field=name)
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
        self.options = make_options(**create_options)  # fail fast on bad batch options
        self._raw_options = {k: v for k, v in create_options.items() if v is not None}
        qps = float(getattr(getattr(client, "limiter", None), "qps", DEFAULT_QPS))
        self.max_in_flight = max_in_flight or default_max_in_flight(qps)
        if journal is False:
            self.journal_path: Path | None = None
        else:
            self.journal_path = Path(journal) if journal else self.out_dir / JOURNAL_NAME
        self.retry_failed = retry_failed
        self.task_retries = task_retries
        self.create_retries = create_retries
        self.recreate_expired = recreate_expired
        self.stats = BatchStats()
        self._journal: Journal | None = None
        self._root = self.out_dir
        self._claimed: set[int] = set()
        self._producer_scope: anyio.CancelScope | None = None
        self._stopping = False
        self._cancelling = False
        self._shields: set[anyio.CancelScope] = set()

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

    def _begin_cancel(self) -> None:
        """Cancellation is coming: creates on the wire get `SHIELD_SECONDS` to answer."""
        self._cancelling = True
        deadline = anyio.current_time() + SHIELD_SECONDS
        for scope in self._shields:
            scope.deadline = min(scope.deadline, deadline)

    @asynccontextmanager
    async def outcomes(
        self, inputs: Iterable[BatchInput] | AsyncIterable[BatchInput]
    ) -> AsyncIterator[MemoryObjectReceiveStream[BatchOutcome]]:
        """Run the batch; yield the stream of outcomes (closed when every input is done).

        Leaving the block early cancels the work still running: creates already sent are
        given time to answer, and every finished step is in the journal.
        """
        await anyio.Path(self.out_dir).mkdir(parents=True, exist_ok=True)
        self._root = Path(await anyio.to_thread.run_sync(os.path.realpath, self.out_dir))
        send, receive = anyio.create_memory_object_stream[BatchOutcome](self.max_in_flight)
        journal = Journal(self.journal_path) if self.journal_path is not None else None
        try:
            if journal is not None:
                await journal.__aenter__()
                self._journal = journal
                self.stats.in_doubt = journal.in_doubt
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._produce, inputs, send, tg)
                try:
                    with receive:
                        yield receive
                except BaseException:
                    self._begin_cancel()
                    raise
                self._begin_cancel()
                tg.cancel_scope.cancel()
        finally:
            self._journal = None
            if journal is not None:
                await journal.__aexit__(None, None, None)

    # -- producer -------------------------------------------------------------------------

    async def _produce(
        self,
        inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
        send: MemoryObjectSendStream[BatchOutcome],
        tg: TaskGroup,
    ) -> None:
        slots = anyio.Semaphore(self.max_in_flight)
        with send, anyio.CancelScope() as scope:
            self._producer_scope = scope
            if self._stopping:
                return
            if isinstance(inputs, AsyncIterable):
                async for raw in _gated(inputs, slots):
                    self._start(tg, raw, send, slots)
            else:
                iterator = iter(inputs)
                while True:
                    await slots.acquire()
                    try:
                        raw = next(iterator)
                    except StopIteration:
                        slots.release()
                        break
                    self._start(tg, raw, send, slots)

    def _start(
        self,
        tg: TaskGroup,
        raw: BatchInput,
        send: MemoryObjectSendStream[BatchOutcome],
        slots: anyio.Semaphore,
    ) -> None:
        self.stats.taken += 1
        self.stats.in_flight += 1
        # Prepared here, in input order, so that clashing output names resolve the same way
        # on every run (task start order is not guaranteed, e.g. on trio).
        tg.start_soon(self._work, self._prepare(raw), send.clone(), slots)

    def _prepare(self, raw: BatchInput) -> _Prepared | BatchOutcome:
        try:
            item = to_item(raw)
        except (ValidationError, TypeError, ValueError) as exc:
            error = exc if isinstance(exc, ValidationError) else ValidationError(str(exc))
            return BatchOutcome(input=_show(raw), status="failed", error=error)
        try:
            options = (
                make_options(**{**self._raw_options, **item.options})
                if item.options
                else self.options
            )
        except (ValidationError, TypeError) as exc:
            error = exc if isinstance(exc, ValidationError) else ValidationError(str(exc))
            return BatchOutcome(input=item.source, status="failed", error=error)
        return _Prepared(item, options, self._claim(item, options.extension))

    def _claim(self, item: BatchItem, extension: str) -> Path:
        """The output path of ``item``; with a short hash if another input already has it."""
        dest = output_path(self._root, item, extension)
        token = hash(os.path.normcase(str(dest)))
        if token in self._claimed:
            dest = with_hash(dest, item.source)
            token = hash(os.path.normcase(str(dest)))
        self._claimed.add(token)
        return dest

    async def _work(
        self,
        job: _Prepared | BatchOutcome,
        send: MemoryObjectSendStream[BatchOutcome],
        slots: anyio.Semaphore,
    ) -> None:
        counted = False
        try:
            with send:
                outcome = job if isinstance(job, BatchOutcome) else await self._process(job)
                counted = True
                self.stats.in_flight -= 1
                if outcome.status == "succeeded":
                    self.stats.succeeded += 1
                elif outcome.status == "skipped":
                    self.stats.skipped += 1
                else:
                    self.stats.failed += 1
                await send.send(outcome)
        finally:
            if not counted:
                self.stats.in_flight -= 1
            slots.release()

    # -- one input ----------------------------------------------------------------------

    def _relative(self, dest: Path) -> str:
        return dest.relative_to(self._root).as_posix()

    async def _process(self, job: _Prepared) -> BatchOutcome:
        item, name = job.item, job.item.source

        def check() -> str:
            check_inside(self._root, job.dest, name)
            return _identity(item)

        try:
            identity = await anyio.to_thread.run_sync(check)
        except ValidationError as exc:
            return BatchOutcome(input=name, status="failed", error=exc)
        fields = {**job.options.form_fields(), "output": self._relative(job.dest)}
        key = input_key(identity, fields)  # the same input to another output is another entry
        try:
            return await self._run_item(item, key, job.options, job.dest)
        except IDPhotoError as exc:
            return await self._fail(key, name, getattr(exc, "task_id", None), exc)

    async def _fail(
        self, key: str, name: str, task_id: str | None, error: IDPhotoError
    ) -> BatchOutcome:
        if self._journal is not None:
            await self._journal.failed(key, name, task_id, error_info(error))
        return BatchOutcome(input=name, status="failed", task_id=task_id, error=error)

    def _resumable(self, entry: Entry | None) -> Task | BatchOutcome | None:
        """What the journal says to do: skip, report a failure, poll a task, or nothing."""
        if entry is None:
            return None
        failure = entry.failure
        if failure is not None and failure.permanent and not self.retry_failed:
            return BatchOutcome("", "failed", entry.task_id, error=restore_error(failure))
        task_lost = failure is not None and failure.type in _TASK_LOST
        if entry.task_id and not task_lost and _age(entry.created_at) < RESULT_TTL - RESUME_MARGIN:
            return Task(entry.task_id, entry.created_at)
        return None

    async def _run_item(
        self, item: BatchItem, key: str, options: CreateOptions, dest: Path
    ) -> BatchOutcome:
        name = item.source
        entry = await self._journal.lookup(key) if self._journal is not None else None
        if (
            entry is not None
            and entry.output == self._relative(dest)
            and await anyio.Path(dest).is_file()
        ):
            return BatchOutcome(name, "skipped", entry.task_id, dest)
        plan = self._resumable(entry)
        if isinstance(plan, BatchOutcome):
            return attrs.evolve(plan, input=name)
        if isinstance(plan, Task):
            self.stats.resumed += 1
            try:
                return await self._finish(item, key, plan, dest)
            except _Restart:
                pass
            except TaskFailedError as exc:
                if not (exc.retryable and self.task_retries):
                    raise
                self.stats.retried += 1
                await self._note(key, name, exc)
        return await self._make(item, key, options, dest)

    async def _make(
        self, item: BatchItem, key: str, options: CreateOptions, dest: Path
    ) -> BatchOutcome:
        """Create the photo; create it again (bounded) where a new task may succeed.

        - a task failed with a retryable state (``TaskState.retryable``): up to
          ``task_retries`` new creates (a failed task is not charged);
        - a create failed after it may have made a task: up to ``create_retries`` new
          creates, each counted in ``stats.creates_in_doubt`` (a second charge is possible,
          but a re-run would create it again anyway);
        - the result expired before it was downloaded: one new create if
          ``recreate_expired`` (this costs a second credit).
        """
        failed_tasks = doubtful = 0
        recreated = False
        while True:
            try:
                if self.mode == "sync":
                    result = await self._create_sync(item, key, options)
                    return await self._download(item, key, result, dest)
                task = await self._create(item, key, options)
                return await self._finish(item, key, task, dest, fresh=True)
            except _CreateInDoubt as exc:
                if doubtful >= self.create_retries:
                    raise exc.error from None
                doubtful += 1
                await self._note(key, item.source, exc.error)
                await anyio.sleep(self._backoff(doubtful))
            except TaskFailedError as exc:
                if not exc.retryable or failed_tasks >= self.task_retries:
                    raise
                failed_tasks += 1
                self.stats.retried += 1
                await self._note(key, item.source, exc)
                await anyio.sleep(self._backoff(failed_tasks))
            except ResultExpiredError as exc:
                if not self.recreate_expired or recreated:
                    raise
                recreated = True
                self.stats.recreated += 1
                await self._note(key, item.source, exc)

    def _backoff(self, attempt: int) -> float:
        policy = getattr(getattr(self.client, "_api", None), "retry", None)
        return float(policy.delay(attempt - 1)) if policy is not None else 0.0

    async def _note(self, key: str, name: str, error: IDPhotoError) -> None:
        """Journal a failure that is about to be retried with a new create."""
        if self._journal is not None:
            task_id = getattr(error, "task_id", None)
            await self._journal.failed(key, name, task_id, error_info(error))

    def _create_args(self, item: BatchItem, options: CreateOptions) -> dict[str, Any]:
        args: dict[str, Any] = {
            "size": options.size,
            "format": options.format,
            "bg_color": options.bg_color,
            "return_type": options.return_type,
        }
        if item.is_url:
            args["image_url"] = item.source
        else:
            args["image_file"] = item.source
        return args

    @contextmanager
    def _on_the_wire(self) -> Iterator[anyio.CancelScope]:
        """Shield a create so its answer (the task id) is journaled even while cancelling."""
        scope = anyio.CancelScope(shield=True)
        if self._cancelling:
            scope.deadline = anyio.current_time() + SHIELD_SECONDS
        self._shields.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._shields.discard(scope)

    async def _create(self, item: BatchItem, key: str, options: CreateOptions) -> Task:
        created = await self._send_create(item, key, options, sync=False)
        assert isinstance(created, Task)
        return created

    async def _create_sync(self, item: BatchItem, key: str, options: CreateOptions) -> TaskResult:
        created = await self._send_create(item, key, options, sync=True)
        assert isinstance(created, TaskResult)
        return created

    async def _send_create(
        self, item: BatchItem, key: str, options: CreateOptions, *, sync: bool
    ) -> Task | TaskResult:
        """One create (either mode), journaled: ``creating`` on the wire, then ``created``."""
        journal = self._journal
        self.stats.creates += 1
        with self._on_the_wire():
            try:
                created = await self.client.create(
                    sync=sync,
                    retry_create=False,
                    on_send=self._journal_creating(key, item),
                    **self._create_args(item, options),
                )
            except APIError as exc:
                raise self._in_doubt(exc) from None
            except TaskFailedError as exc:  # sync mode: the task exists, keep its id
                if journal is not None:
                    await journal.created(key, item.source, exc.task_id, datetime.now(UTC))
                raise
            created_at = created.created_at or datetime.now(UTC)
            if journal is not None:
                await journal.created(key, item.source, created.task_id, created_at)
                if isinstance(created, TaskResult):
                    await journal.done(key, item.source, created.task_id)
            return created if isinstance(created, TaskResult) else Task(created.task_id, created_at)
        await anyio.lowlevel.checkpoint()  # the shield timed out: we are being cancelled
        raise AssertionError("unreachable")  # pragma: no cover

    def _journal_creating(self, key: str, item: BatchItem) -> Callable[[], Awaitable[None]] | None:
        """The hook that journals ``creating`` when the request really goes out.

        Written after the rate limiter's wait, not before it: a run killed while creates
        were only queued leaves nothing in doubt.
        """
        journal = self._journal
        if journal is None:
            return None

        async def creating() -> None:
            await journal.creating(key, item.source)

        return creating

    def _in_doubt(self, error: APIError) -> BaseException:
        """``error`` of a create: wrapped (and counted) if the create may have made a task."""
        if not error.task_may_exist:
            return error
        self.stats.creates_in_doubt += 1
        return _CreateInDoubt(error)

    async def _finish(
        self, item: BatchItem, key: str, task: Task, dest: Path, *, fresh: bool = False
    ) -> BatchOutcome:
        # wait()'s timeout counts from the task's creation: give a resumed task its full time.
        timeout = _age(task.created_at) + MAX_PROCESSING_SECONDS + WAIT_MARGIN
        try:
            result = await self.client.wait(task, timeout=None if fresh else timeout)
        except NotFoundError:
            if fresh:
                raise
            raise _Restart from None  # the service no longer knows the task
        if self._journal is not None:
            await self._journal.done(key, item.source, task.task_id)
        try:
            return await self._download(item, key, result, dest)
        except ResultExpiredError:
            if fresh:
                raise
            raise _Restart from None

    async def _download(
        self, item: BatchItem, key: str, result: TaskResult, dest: Path
    ) -> BatchOutcome:
        try:
            path = await self.client.download(result, dest)
        except OSError as exc:
            raise DownloadError(f"Cannot write {dest}: {exc.strerror or exc}.") from exc
        if self._journal is not None:
            await self._journal.downloaded(key, item.source, result.task_id, self._relative(dest))
        return BatchOutcome(item.source, "succeeded", result.task_id, path)


def _show(value: object) -> str:
    text = os.fspath(value) if isinstance(value, str | os.PathLike) else repr(value)
    return str(text)[:300]


async def _gated(
    inputs: AsyncIterable[BatchInput], slots: anyio.Semaphore
) -> AsyncIterator[BatchInput]:
    """Take the next input only once a slot is free (the slot passes to the caller)."""
    iterator = aiter(inputs)
    while True:
        await slots.acquire()
        try:
            raw = await anext(iterator)
        except StopAsyncIteration:
            slots.release()
            return
        yield raw


async def run_batch(
    client: AsyncIDPhotoClient,
    inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
    *,
    out_dir: str | os.PathLike[str],
    mode: Mode = "async",
    max_in_flight: int | None = None,
    journal: str | os.PathLike[str] | Literal[False] | None = None,
    retry_failed: bool = False,
    task_retries: int = 2,
    create_retries: int = 2,
    recreate_expired: bool = False,
    **create_options: Any,
) -> AsyncIterator[BatchOutcome]:
    """Make an ID photo of every input; yield one `BatchOutcome` each, as they complete.

    Args:
        inputs: paths, ``http(s)://`` URLs, or ``(source, options)`` pairs, from any (sync
            or async) iterable, taken lazily: at most ``max_in_flight`` ahead of the outcomes.
        out_dir: outputs go here, mirroring the inputs' relative paths, with the extension
            of ``format``.
        mode: ``"async"`` (create, poll, download; resumable) or ``"sync"`` (one request per
            photo).
        max_in_flight: photos in progress at once; default from the client's QPS.
        journal: the resume journal; default ``out_dir/.idphoto-journal.sqlite3``, ``False``
            for none.
        retry_failed: try inputs that failed permanently in an earlier run again.
        task_retries: new creates (per input, per run) after a task fails with a
            retryable state (`TaskState.retryable`); failed tasks are not charged.
        create_retries: new creates after a create failed in a way that may have made a
            task (5xx, timeout or connection cut after sending); each may pay twice and is
            counted in ``BatchStats.creates_in_doubt``. 0 reports the failure instead.
        recreate_expired: create again (a second credit) when a result expired before it
            could be downloaded; otherwise the input fails with `ResultExpiredError`.
        create_options: ``size``, ``format``, ``bg_color``, ``return_type`` for every input.

    If you may stop iterating early, wrap the call in `contextlib.aclosing`.
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
        **create_options,
    )
    async with runner.outcomes(inputs) as outcomes:
        async for outcome in outcomes:
            try:
                yield outcome
            except GeneratorExit:
                break  # closed early: leave the block normally, which cancels the rest
