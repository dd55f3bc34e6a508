"""AsyncIDPhotoClient: create, query, wait for and download ID photos."""

from __future__ import annotations

import math
import os
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal, Self, overload

import anyio
import httpx

from ._constants import (
    API_PATH,
    DEFAULT_BASE_URL,
    DEFAULT_QPS,
    ENV_API_KEY,
    ENV_BASE_URL,
    MAX_PROCESSING_SECONDS,
    MAX_RESULT_BYTES,
)
from ._download import save_file
from ._errors import (
    DownloadError,
    ResultExpiredError,
    TaskFailedError,
    TaskTimeoutError,
    ValidationError,
)
from ._file_work import FileWork
from ._inputs import Upload, prepare_upload, validate_image_url, validate_source
from ._limiter import Limiter, TokenBucketLimiter
from ._models import Task, TaskResult
from ._options import CreateOptions, ReturnType, make_options
from ._polling import PollSchedule
from ._pool import HTTPBackend, make_pool
from ._retry import Retry, RetryPolicy
from ._transport import ApiCaller, Secret

if TYPE_CHECKING:
    from collections.abc import AsyncIterable
    from contextlib import AbstractAsyncContextManager

    from ._batch import BatchOutcomes

__all__ = ["AsyncIDPhotoClient", "ImageFile"]

ImageFile = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]
"""An image to upload: a path, the bytes themselves, or a binary file object."""

TimeoutTypes = float | httpx.Timeout
"""Seconds for every phase of a request, or an ``httpx.Timeout`` setting each one."""

WAIT_MARGIN = 30.0
"""Seconds `AsyncIDPhotoClient.wait` allows beyond the service's 180 s limit."""

SCARCE_QUEUE_SECONDS = 1.0
"""A limiter queue this long (in seconds of requests) makes polling aim late (see `wait`)."""


class AsyncIDPhotoClient:
    """Async client of the ID Photo API, for asyncio and trio.

    One client holds one HTTP connection pool and one rate limiter; share it across tasks
    (e.g. create it once in a web app's lifespan). Use ``async with`` to close it.

    Args:
        api_key: the key sent as ``X-API-KEY``; defaults to env ``IDPHOTO_API_KEY``.
            Required for the vendor's service, optional for a local server.
        base_url: defaults to env ``IDPHOTO_BASE_URL``, else the vendor's service.
        qps: the key's requests per second (default 2), when no ``limiter`` is given.
        limiter: a shared limiter (one key, many clients); see `TokenBucketLimiter`.
        http_client: an ``httpx.AsyncClient`` to use (not closed by this client). It is used
            as given: its TLS verification, proxies and limits are the caller's choice
            (build it with verification on; the client's own pool always verifies).
        timeout: seconds for each phase of a request (connect, send, headers, body), or an
            ``httpx.Timeout`` setting each one (sync creates wait up to the service's 180 s
            limit for the answer).
        max_retries: retries of a failed request (429, 5xx, connection errors).
        retry_creates: also retry a create after a 5xx or a connection lost mid-request.
            The API has no idempotency key: the first attempt may have made a task, so this
            may charge twice. Off by default; refused (429) or unsent creates are always retried.
        retry_policy: backoff of retries (overrides ``max_retries``).
        poll_schedule: when to query a task; learns from the tasks this client finishes.
        queue_timeout: longest wait for a request slot before
            `LimiterTimeoutError` (None: wait as long as it takes). A web handler
            sets it to shed load (answer 503) instead of queueing forever. It bounds
            creates and single `get` calls; the queries of `wait` never give up their
            turn (the task is already paid for: shedding them would lose the photo).
        max_connections: size of the connection pool.
        max_download_bytes: cap on a downloaded result.
        http_backend: what the client's own pool is made of (ignored with ``http_client``):
            ``"httpx"`` (default: httpcore, asyncio and trio), ``"aiohttp"`` (asyncio only,
            a third of the CPU per request; ``pip install 'idphoto-async[aiohttp]'``), or
            ``"auto"``: aiohttp when it is installed and the client runs on asyncio.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        qps: float = DEFAULT_QPS,
        limiter: Limiter | None = None,
        http_client: httpx.AsyncClient | None = None,
        timeout: TimeoutTypes = 30.0,
        max_retries: int = 3,
        retry_creates: bool = False,
        retry_policy: RetryPolicy | None = None,
        poll_schedule: PollSchedule | None = None,
        queue_timeout: float | None = None,
        max_connections: int = 64,
        max_download_bytes: int = MAX_RESULT_BYTES,
        http_backend: HTTPBackend = "httpx",
    ) -> None:
        base = (base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL).rstrip("/")
        parsed = urllib.parse.urlsplit(base)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValidationError(
                f"base_url must be an http(s) URL such as {DEFAULT_BASE_URL}, got {base!r}.",
                field="base_url",
            )
        key = api_key if api_key is not None else os.environ.get(ENV_API_KEY)
        if not key and base == DEFAULT_BASE_URL:
            raise ValidationError(
                f"No API key: pass api_key=... or set {ENV_API_KEY}. To work offline, run "
                "`idphoto serve` and point base_url at it.",
                field="api_key",
            )
        if not key:  # a local or self-hosted server: any key passes, the header is required
            key = "local-no-key"
        if max_retries < 0:
            raise ValidationError("max_retries must be 0 or more.", field="max_retries")
        self._timeout = _as_timeout(timeout)
        self._owns_http = http_client is None
        self._http = http_client or make_pool(http_backend, max_connections, self._timeout)
        self.limiter: Limiter = limiter or TokenBucketLimiter(qps)
        self.poll_schedule = poll_schedule or PollSchedule()
        self.retry_creates = retry_creates
        self.max_download_bytes = max_download_bytes
        self._files = FileWork()
        self._api = ApiCaller(
            http=self._http,
            base_url=base,
            api_key=Secret(key) if key else None,
            limiter=self.limiter,
            retry=retry_policy or RetryPolicy(max_retries=max_retries),
            timeout=self._timeout,
            queue_timeout=queue_timeout,
            max_connections=max_connections,
        )

    @property
    def base_url(self) -> str:
        """The API origin requests go to."""
        return self._api.base_url

    @property
    def retry_policy(self) -> RetryPolicy:
        """How this client retries (`RetryPolicy.call` retries anything the same way)."""
        return self._api.retry

    @property
    def is_closed(self) -> bool:
        """Whether `aclose` was called (using the client then raises `ClientClosedError`)."""
        return self._api.closed

    @property
    def requests_sent(self) -> int:
        """API requests sent so far (creates and queries, retries included; not downloads)."""
        return self._api.requests_sent

    def __repr__(self) -> str:
        return f"AsyncIDPhotoClient(base_url={self.base_url!r}, qps={self.limiter.qps:g})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (unless it was injected). Idempotent; using the client
        afterwards raises `ClientClosedError`."""
        self._api.closed = True
        if self._owns_http:
            await self._http.aclose()

    # -- create ---------------------------------------------------------------------------

    @overload
    async def create(
        self,
        image_file: ImageFile | None = ...,
        *,
        image_url: str | None = ...,
        sync: Literal[False] = ...,
        size: str | tuple[int, int] | None = ...,
        format: str | None = ...,
        bg_color: str | None = ...,
        return_type: str | int | ReturnType | None = ...,
        retry_create: bool | None = ...,
        timeout: TimeoutTypes | None = ...,
        max_retries: int | None = ...,
        queue_timeout: float | None = ...,
        on_send: Callable[[], Awaitable[object]] | None = ...,
    ) -> Task: ...

    @overload
    async def create(
        self,
        image_file: ImageFile | None = ...,
        *,
        image_url: str | None = ...,
        sync: Literal[True],
        size: str | tuple[int, int] | None = ...,
        format: str | None = ...,
        bg_color: str | None = ...,
        return_type: str | int | ReturnType | None = ...,
        retry_create: bool | None = ...,
        timeout: TimeoutTypes | None = ...,
        max_retries: int | None = ...,
        queue_timeout: float | None = ...,
        on_send: Callable[[], Awaitable[object]] | None = ...,
    ) -> TaskResult: ...

    @overload
    async def create(
        self,
        image_file: ImageFile | None = ...,
        *,
        image_url: str | None = ...,
        sync: bool,
        size: str | tuple[int, int] | None = ...,
        format: str | None = ...,
        bg_color: str | None = ...,
        return_type: str | int | ReturnType | None = ...,
        retry_create: bool | None = ...,
        timeout: TimeoutTypes | None = ...,
        max_retries: int | None = ...,
        queue_timeout: float | None = ...,
        on_send: Callable[[], Awaitable[object]] | None = ...,
    ) -> Task | TaskResult: ...

    async def create(
        self,
        image_file: ImageFile | None = None,
        *,
        image_url: str | None = None,
        sync: bool = False,
        size: str | tuple[int, int] | None = None,
        format: str | None = None,
        bg_color: str | None = None,
        return_type: str | int | ReturnType | None = None,
        retry_create: bool | None = None,
        timeout: TimeoutTypes | None = None,
        max_retries: int | None = None,
        queue_timeout: float | None = None,
        on_send: Callable[[], Awaitable[object]] | None = None,
    ) -> Task | TaskResult:
        """Create an ID-photo task from ``image_file`` or ``image_url`` (exactly one).

        Every input is validated first: a rejected one raises `ValidationError` and
        costs no request. Async mode (default) returns a `Task` to `wait` for;
        ``sync=True`` holds the request until the photo is made and returns its
        `TaskResult` (raising `TaskFailedError` if it failed).

        ``on_send`` is awaited each time the request actually goes out (after the rate
        limiter's wait, once per attempt): a journal can record that a create may have
        made a task only from then on.
        """
        self._api.check_open()
        options = make_options(size=size, format=format, bg_color=bg_color, return_type=return_type)
        validate_source(image_file, image_url)
        upload: Upload | None = None
        if isinstance(image_file, str | os.PathLike | bytes | bytearray | memoryview):
            upload = await self._files.run(prepare_upload, image_file)  # a regular file
        elif image_file is not None:  # a file object: a pipe or socket may block for long
            upload = await anyio.to_thread.run_sync(prepare_upload, image_file)
        try:
            return await self._send_create(
                options,
                upload=upload,
                image_url=validate_image_url(image_url) if image_url is not None else None,
                sync=sync,
                retry_create=self.retry_creates if retry_create is None else retry_create,
                timeout=timeout,
                max_retries=max_retries,
                queue_timeout=queue_timeout,
                on_send=on_send,
            )
        finally:
            if upload is not None:
                upload.close()

    async def _send_create(
        self,
        options: CreateOptions,
        *,
        upload: Upload | None,
        image_url: str | None,
        sync: bool,
        retry_create: bool,
        timeout: TimeoutTypes | None,
        max_retries: int | None,
        queue_timeout: float | None,
        on_send: Callable[[], Awaitable[object]] | None,
    ) -> Task | TaskResult:
        # Multipart, like the seed's `curl -F` examples, whichever the image source.
        fields: dict[str, Any] = {"sync": (None, "1" if sync else "0")}
        fields.update({name: (None, value) for name, value in options.form_fields().items()})
        if upload is not None:
            fields["image_file"] = upload.httpx_file()
        else:
            fields["image_url"] = (None, image_url)
        request_timeout = self._request_timeout(timeout)
        if sync:
            request_timeout = httpx.Timeout(
                request_timeout.connect,
                read=MAX_PROCESSING_SECONDS + WAIT_MARGIN,
                write=request_timeout.write,
                pool=request_timeout.pool,
            )
        parse: Callable[[Mapping[str, Any], str], Task | TaskResult]
        parse = _parse_result if sync else _parse_task
        created: Task | TaskResult = await self._api.call(
            "POST",
            API_PATH,
            parse,
            files=fields,
            idempotent=retry_create,
            timeout=request_timeout,
            max_retries=max_retries,
            queue_timeout=queue_timeout,
            on_send=on_send,
        )
        if isinstance(created, Task):
            return created
        result = created
        if result.is_failed:
            raise TaskFailedError(result.task_id, result.state, result.message)
        return result

    # -- query and wait ---------------------------------------------------------------------

    async def get(
        self,
        task_id: str,
        *,
        timeout: TimeoutTypes | None = None,
        max_retries: int | None = None,
        queue_timeout: float | None = None,
    ) -> TaskResult:
        """Query a task once (one request). Does not raise on a failed state.

        ``queue_timeout`` overrides the client's for this call (``math.inf``: no limit).
        """
        if not isinstance(task_id, str) or not task_id.strip():
            raise ValidationError("task_id must be a non-empty string.", field="task_id")
        return await self._api.call(
            "GET",
            f"{API_PATH}/{urllib.parse.quote(task_id, safe='')}",
            _parse_result,
            idempotent=True,
            priority=True,
            timeout=self._request_timeout(timeout),
            max_retries=max_retries,
            queue_timeout=queue_timeout,
        )

    async def wait(self, task: Task | str, *, timeout: float | None = None) -> TaskResult:
        """Poll ``task`` until it succeeds and return its result.

        Queries follow `poll_schedule` (first when the task is likely done, then
        backing off). Raises `TaskFailedError` on a negative state and
        `TaskTimeoutError` after ``timeout`` seconds since the task was created
        (default: the service's 180 s limit plus a margin).
        """
        self._api.check_open()
        if isinstance(task, str):
            task = Task(task_id=task)
        limit = MAX_PROCESSING_SECONDS + WAIT_MARGIN if timeout is None else timeout
        start = anyio.current_time()
        already = 0.0
        if task.created_at is not None:
            already = max(0.0, (datetime.now(UTC) - task.created_at).total_seconds())
        schedule = self.poll_schedule
        delay = schedule.first_delay(busy=self._requests_are_scarce()) - already
        polls = 0
        last_pending = already
        while True:
            elapsed = already + anyio.current_time() - start
            remaining = limit - elapsed
            if remaining <= 0:
                raise TaskTimeoutError(task.task_id, elapsed)
            await anyio.sleep(max(0.0, min(delay, remaining)))
            result = await self.get(task.task_id, queue_timeout=math.inf)  # never shed
            polls += 1
            elapsed = already + anyio.current_time() - start
            if result.is_done:
                schedule.record(_processing_duration(result, last_pending, elapsed))
                return result
            if result.is_failed:
                raise TaskFailedError(result.task_id, result.state, result.message)
            last_pending = elapsed
            delay = schedule.next_delay(elapsed, polls, busy=self._requests_are_scarce())

    # -- download ---------------------------------------------------------------------------

    async def download(
        self,
        result: TaskResult,
        dest: str | os.PathLike[str],
        *,
        timeout: TimeoutTypes | None = None,
        max_retries: int | None = None,
    ) -> Path:
        """Save ``result``'s image to ``dest``: streamed, checked whole, atomic.

        Takes no API request slot and never sends the API key. A transfer that fails or
        brings an incomplete image is retried (per `retry_policy`; a base64 result is
        queried again first). Raises `ResultExpiredError` when the URL is gone (results
        are kept for 1 hour) and `DownloadError` when it fails, including every error
        writing ``dest`` (a folder, a read-only path, a full disk; ``retryable=False``).
        Nothing is ever left under ``dest`` unless the whole image is.
        """
        path = Path(dest)
        await self._download_to(result, str(path), timeout=timeout, max_retries=max_retries)
        return path

    async def _download_to(
        self,
        result: TaskResult,
        dest: str,
        *,
        timeout: TimeoutTypes | None = None,
        max_retries: int | None = None,
    ) -> str:
        """`download` to ``dest`` given as text, normalised as ``str(Path(dest))`` is; returns
        ``dest``. For the batch: it never parses a per-input path with pathlib (see
        `idphoto_async._paths.posix_text`)."""
        if not result.is_done:
            raise DownloadError(
                f"Task {result.task_id} has no image to download (state {int(result.state)}).",
                task_id=result.task_id,
                retryable=False,
                advice="wait() for the task first.",
            )
        self._api.check_open()
        current = result

        async def attempt(number: int) -> str:
            nonlocal current
            if number > 1 and not current.is_url:  # the same text would fail the same way
                current = await self.get(current.task_id)
            async with self._api.connection_slots():
                return await save_file(
                    self._http,
                    current,
                    dest,
                    max_bytes=self.max_download_bytes,
                    timeout=self._request_timeout(timeout),
                    files=self._files,
                )

        return await self._api.retry.call(
            attempt,
            retry_on=_download_failed,
            max_retries=max_retries,
            what=f"the download of task {result.task_id}",
        )

    async def generate(
        self,
        image_file: ImageFile | None = None,
        dest: str | os.PathLike[str] | None = None,
        *,
        image_url: str | None = None,
        sync: bool = False,
        size: str | tuple[int, int] | None = None,
        format: str | None = None,
        bg_color: str | None = None,
        return_type: str | int | ReturnType | None = None,
    ) -> Path:
        """Create, wait for and download one ID photo to ``dest``; return the path."""
        if dest is None:
            raise ValidationError("generate() needs dest, the path to write.", field="dest")
        created = await self.create(
            image_file,
            image_url=image_url,
            sync=sync,
            size=size,
            format=format,
            bg_color=bg_color,
            return_type=return_type,
        )
        result = created if isinstance(created, TaskResult) else await self.wait(created)
        return await self.download(result, dest)

    def batch(
        self,
        inputs: Iterable[Any] | AsyncIterable[Any],
        *,
        out_dir: str | os.PathLike[str],
        **options: Any,
    ) -> AbstractAsyncContextManager[BatchOutcomes]:
        """Make an ID photo of every input: ``async with client.batch(...) as outcomes:``.

        ``async for outcome in outcomes`` yields one outcome per input as each completes.
        Inputs are files, folders (walked like the CLI does), URLs or ``(source, options)``
        pairs. See `idphoto_async.run_batch` for the options (mode, max_in_flight,
        journal, shard...) and the errors that stop a run.
        """
        from ._batch import run_batch

        return run_batch(self, inputs, out_dir=out_dir, **options)

    def _requests_are_scarce(self) -> bool:
        """Whether requests, not latency, bound throughput: a second or more of them queued.

        (A short queue that drains in a fraction of a second, e.g. a burst at a high QPS,
        does not count: waiting longer for the first query would only add latency.)
        """
        waiting = self.limiter.waiting
        return waiting > 0 and waiting >= self.limiter.qps * SCARCE_QUEUE_SECONDS

    def _request_timeout(self, timeout: TimeoutTypes | None) -> httpx.Timeout:
        return self._timeout if timeout is None else _as_timeout(timeout)


def _as_timeout(timeout: TimeoutTypes) -> httpx.Timeout:
    """``timeout`` as an ``httpx.Timeout`` (seconds: the same for every phase)."""
    if isinstance(timeout, httpx.Timeout):
        return timeout
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValidationError(
            f"timeout must be a positive number of seconds or an httpx.Timeout, got {timeout!r}.",
            field="timeout",
        )
    return httpx.Timeout(float(timeout))


def _parse_task(data: Mapping[str, Any], message: str) -> Task:
    return Task.from_api(data)


def _parse_result(data: Mapping[str, Any], message: str) -> TaskResult:
    return TaskResult.from_api(data, message=message)


def _download_failed(exc: Exception) -> Retry | None:
    """The download predicate: retry a failed transfer, not an expiry or a local write error."""
    if isinstance(exc, DownloadError) and exc.retryable and not isinstance(exc, ResultExpiredError):
        return Retry(str(exc))
    return None


def _processing_duration(result: TaskResult, last_pending: float, observed: float) -> float:
    """Best estimate of how long the task took, for the poll schedule.

    The service's own timestamps (second resolution) are used when present, bounded by what
    this client saw: still pending at ``last_pending``, done at ``observed``.
    """
    if result.created_at is not None and result.completed_at is not None:
        served = (result.completed_at - result.created_at).total_seconds()
        return min(max(served, last_pending), observed)
    return (last_pending + observed) / 2 if last_pending > 0 else observed
