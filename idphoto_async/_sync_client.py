"""IDPhotoClient: the async client's methods without ``await``, for scripts and WSGI apps.

One `AsyncIDPhotoClient` (one connection pool, one limiter) lives on one event loop in a
daemon thread; every call from any thread is run there through anyio's `BlockingPortal`
and waited for. The loop thread is a daemon thread of our own rather than
``anyio.from_thread.start_blocking_portal``'s executor thread: a script or notebook that
forgets ``close()`` must still exit (a non-daemon loop thread would keep it alive forever).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, ParamSpec, Self, TypeVar, overload

import anyio
import httpx
from anyio.from_thread import BlockingPortal

from ._batch import BatchOutcome, Mode
from ._client import AsyncIDPhotoClient, ImageFile, TimeoutTypes
from ._constants import DEFAULT_QPS, MAX_RESULT_BYTES
from ._errors import ClientClosedError
from ._limiter import Limiter
from ._models import Task, TaskResult
from ._options import ReturnType
from ._paths import BatchInput
from ._polling import PollSchedule
from ._pool import HTTPBackend
from ._retry import RetryPolicy

__all__ = ["IDPhotoClient"]

SIGNAL_CHECK_SECONDS = 0.1
"""How often the main thread, while it waits for a call, lets Ctrl-C through."""

P = ParamSpec("P")
T = TypeVar("T")


class _LoopThread:
    """An anyio event loop in a daemon thread, reached through a `BlockingPortal`."""

    def __init__(self, backend: str, backend_options: dict[str, Any] | None) -> None:
        ready: concurrent.futures.Future[BlockingPortal] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run,
            args=(ready, backend, backend_options),
            name="idphoto-event-loop",
            daemon=True,
        )
        self._thread.start()
        self.portal = ready.result()

    @staticmethod
    def _run(
        ready: concurrent.futures.Future[BlockingPortal],
        backend: str,
        backend_options: dict[str, Any] | None,
    ) -> None:
        async def serve() -> None:
            async with BlockingPortal() as portal:
                ready.set_result(portal)
                await portal.sleep_until_stopped()

        try:
            anyio.run(serve, backend=backend, backend_options=backend_options)
        except BaseException as exc:  # e.g. an unknown backend: tell the constructor
            if not ready.done():
                ready.set_exception(exc)

    def call(self, func: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``func`` in the loop and wait for it; Ctrl-C while waiting cancels it."""
        future = self.portal.start_task_soon(functools.partial(func, *args, **kwargs))
        try:
            if threading.current_thread() is threading.main_thread():
                # Wake now and then: Python runs a SIGINT handler (KeyboardInterrupt) only
                # between bytecodes, never inside an untimed wait on a lock.
                while not concurrent.futures.wait([future], SIGNAL_CHECK_SECONDS).done:
                    pass
            return future.result()
        except BaseException:
            future.cancel()  # a KeyboardInterrupt in this thread: cancel the task too
            raise

    def stop(self) -> None:
        """Stop the loop (tasks still running are cancelled) and wait for its thread."""
        if self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # already stopped
                self.portal.call(self.portal.stop, True)
            self._thread.join()


def _shut_down(loop: _LoopThread, client: AsyncIDPhotoClient) -> None:
    """Close ``client``'s connection pool, then stop the loop thread."""
    try:
        loop.call(client.aclose)
    finally:
        loop.stop()


async def _construct(*args: Any, **kwargs: Any) -> AsyncIDPhotoClient:
    """An `AsyncIDPhotoClient` made in the loop thread, where its pool and limiter live."""
    return AsyncIDPhotoClient(*args, **kwargs)


class IDPhotoClient:
    """Blocking client of the ID Photo API: `AsyncIDPhotoClient`'s methods without ``await``.

    For scripts, notebooks, Django and Flask. One client holds one event loop (in a daemon
    thread), one connection pool and one rate limiter; share it between threads (calls
    from several threads run concurrently on that loop, under the one QPS limit). Use it as
    a context manager, or call `close`.

    Takes the arguments of `AsyncIDPhotoClient`, plus ``backend`` (``"asyncio"``,
    the default, or ``"trio"``) for the loop thread. An injected ``http_client`` or
    ``limiter`` is used on that loop only.
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
        backend: Literal["asyncio", "trio"] = "asyncio",
        backend_options: dict[str, Any] | None = None,
    ) -> None:
        options: dict[str, Any] = {
            "qps": qps,
            "limiter": limiter,
            "http_client": http_client,
            "timeout": timeout,
            "max_retries": max_retries,
            "retry_creates": retry_creates,
            "retry_policy": retry_policy,
            "poll_schedule": poll_schedule,
            "queue_timeout": queue_timeout,
            "max_connections": max_connections,
            "max_download_bytes": max_download_bytes,
            "http_backend": http_backend,
        }
        self._lock = threading.Lock()
        self._closed = False
        loop = _LoopThread(backend, backend_options)
        try:
            self._async = loop.call(_construct, api_key, base_url, **options)
        except BaseException:
            loop.stop()
            raise
        self._loop = loop
        # Also run for a client dropped without close(), when it is collected or at exit.
        self._finalizer = weakref.finalize(self, _shut_down, loop, self._async)

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def async_client(self) -> AsyncIDPhotoClient:
        """The `AsyncIDPhotoClient` behind this one (use it on its loop only)."""
        return self._async

    @property
    def base_url(self) -> str:
        """The API origin requests go to."""
        return self._async.base_url

    @property
    def requests_sent(self) -> int:
        """API requests sent so far (creates and queries, retries included; not downloads)."""
        return self._async.requests_sent

    def __repr__(self) -> str:
        return f"IDPhotoClient(base_url={self.base_url!r}, qps={self._async.limiter.qps:g})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (unless injected) and stop the loop thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._finalizer()

    @property
    def closed(self) -> bool:
        """`close` was called."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("IDPhotoClient")

    def _call(self, func: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        self._check_open()
        return self._loop.call(func, *args, **kwargs)

    # -- the API ----------------------------------------------------------------------------

    @overload
    def create(
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
    ) -> Task: ...

    @overload
    def create(
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
    ) -> TaskResult: ...

    @overload
    def create(
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
    ) -> Task | TaskResult: ...

    def create(
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
    ) -> Task | TaskResult:
        """`AsyncIDPhotoClient.create`: a `Task` (async mode) or, with ``sync=True``, the
        `TaskResult`."""
        return self._call(
            self._async.create,
            image_file,
            image_url=image_url,
            sync=sync,
            size=size,
            format=format,
            bg_color=bg_color,
            return_type=return_type,
            retry_create=retry_create,
            timeout=timeout,
            max_retries=max_retries,
            queue_timeout=queue_timeout,
        )

    def get(
        self,
        task_id: str,
        *,
        timeout: TimeoutTypes | None = None,
        max_retries: int | None = None,
        queue_timeout: float | None = None,
    ) -> TaskResult:
        """`AsyncIDPhotoClient.get`: query a task once."""
        return self._call(
            self._async.get,
            task_id,
            timeout=timeout,
            max_retries=max_retries,
            queue_timeout=queue_timeout,
        )

    def wait(self, task: Task | str, *, timeout: float | None = None) -> TaskResult:
        """`AsyncIDPhotoClient.wait`: poll until the task succeeds."""
        return self._call(self._async.wait, task, timeout=timeout)

    def download(
        self,
        result: TaskResult,
        dest: str | os.PathLike[str],
        *,
        timeout: TimeoutTypes | None = None,
        max_retries: int | None = None,
    ) -> Path:
        """`AsyncIDPhotoClient.download`: save the image to ``dest`` (atomic)."""
        return self._call(
            self._async.download, result, dest, timeout=timeout, max_retries=max_retries
        )

    def generate(
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
        """`AsyncIDPhotoClient.generate`: create, wait for and download one photo."""
        return self._call(
            self._async.generate,
            image_file,
            dest,
            image_url=image_url,
            sync=sync,
            size=size,
            format=format,
            bg_color=bg_color,
            return_type=return_type,
        )

    @contextmanager
    def batch(
        self,
        inputs: Iterable[BatchInput],
        *,
        out_dir: str | os.PathLike[str],
        mode: Mode = "async",
        max_in_flight: int | None = None,
        journal: str | os.PathLike[str] | Literal[False] | None = None,
        **options: Any,
    ) -> Iterator[Iterator[BatchOutcome]]:
        """Process many inputs: ``with client.batch(...) as outcomes: for o in outcomes:``.

        The options of `idphoto_async.run_batch`. Outcomes come as each input completes;
        leaving the block early (a ``break``, an exception, Ctrl-C) cancels the work still
        running, with every finished step in the journal. ``inputs`` is read from the loop
        thread, lazily.
        """
        self._check_open()
        options.update(mode=mode, max_in_flight=max_in_flight, journal=journal)
        manager = self._batch_outcomes(inputs, out_dir, options)
        with self._loop.portal.wrap_async_context_manager(manager) as stream:
            yield self._iterate(stream)

    def _batch_outcomes(
        self,
        inputs: Iterable[BatchInput],
        out_dir: str | os.PathLike[str],
        options: dict[str, Any],
    ) -> AbstractAsyncContextManager[AsyncIterator[BatchOutcome]]:
        # The async client's batch: an async context manager of the outcomes' async iterator.
        return self._async.batch(inputs, out_dir=out_dir, **options)

    def _iterate(self, outcomes: AsyncIterator[BatchOutcome]) -> Iterator[BatchOutcome]:
        while True:
            outcome = self._loop.call(_next_or_none, outcomes)
            if outcome is None:
                return
            yield outcome


async def _next_or_none(outcomes: AsyncIterator[BatchOutcome]) -> BatchOutcome | None:
    """The next outcome, or None at the end (not StopAsyncIteration across threads)."""
    try:
        return await anext(outcomes)
    except (StopAsyncIteration, anyio.ClosedResourceError):
        return None
