"""One API request: limiter slot, send (every phase bounded), map the answer, retry.

Retries follow one rule: a request is sent again only where that cannot charge twice.
Queries are always safe. A create is safe when it surely never reached the service (the
connection was refused, or the service answered 429, which it does before making a task);
after a 5xx or a connection lost mid-request the task may exist already, and the API has no
idempotency key, so a create is retried then only when the caller allows it
(``retry_creates=True``): a possible second charge in exchange for not failing the photo.
An answer that names a task id is that task: it is never sent again, whatever its status.

Errors are built once, when the retries are over, with what is known of the request
(`_Failure` carries an attempt's failure until then): method, URL, status, a body excerpt,
the task the answer named, and whether a task may exist after all the attempts.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import anyio
import attrs
import httpx

from ._constants import API_KEY_HEADER, API_PATH, INLINE_UPLOAD_BYTES, MAX_TASK_ID_CHARS
from ._errors import (
    BODY_EXCERPT_CHARS,
    APIConnectionError,
    APIError,
    APITimeoutError,
    ClientClosedError,
    MalformedResponseError,
    status_error,
)
from ._limiter import Limiter, Reservation
from ._logging import logger
from ._retry import Retry, RetryPolicy, parse_retry_after
from ._slots import ConnectionSlots
from ._timeouts import PhaseDeadline

__all__ = ["ApiCaller", "Parse", "Secret", "body_chunks", "raw_envelope"]

T = TypeVar("T")

MAX_JSON_BYTES = 64 * 1024 * 1024
"""Cap on an API answer: a base64 result of the largest ID photo fits well within it."""
SMALL_BODY = INLINE_UPLOAD_BYTES + 64 * 1024
"""Multipart bodies up to this size (an inline upload and its form fields) are joined before
sending (see `_join_small_body`)."""
BODY_DEADLINE_FACTOR = 2.0
"""The whole answer body must arrive within this many read timeouts (a request body be sent
within this many write timeouts, plus time for its size): httpx's timeouts bound each socket
operation only, so a server trickling a byte at a time would otherwise never time out. See
`idphoto_async._timeouts.PhaseDeadline`."""


class Secret:
    """A string that never shows itself in repr or str."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, only for the request header."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


Parse = Callable[[Mapping[str, Any], str], T]
"""Reads the envelope's ``data`` and ``message`` into a value; raises MalformedResponseError."""


def raw_envelope(data: Mapping[str, Any], message: str) -> tuple[Mapping[str, Any], str]:
    """A `Parse` that returns the envelope's ``data`` and ``message`` as they are."""
    return data, message


@attrs.define
class ApiCaller:
    """Sends API requests through the shared limiter, with retries and error mapping."""

    http: httpx.AsyncClient
    base_url: str
    api_key: Secret | None
    limiter: Limiter
    retry: RetryPolicy
    timeout: httpx.Timeout
    queue_timeout: float | None = None
    max_connections: int = 64
    requests_sent: int = 0
    closed: bool = False
    _slots: ConnectionSlots | None = attrs.field(default=None, init=False, repr=False)
    _create_url: httpx.URL | None = attrs.field(default=None, init=False, repr=False)

    def target(self, path: str) -> httpx.URL | str:
        """The URL of ``path``: the create endpoint's parsed once (httpx parses a text URL
        on every request: 30 of the 46 us ``build_request`` took here), others as text."""
        if path != API_PATH:
            return self.base_url + path
        if self._create_url is None:
            self._create_url = httpx.URL(self.base_url + path)
        return self._create_url

    def connection_slots(self) -> ConnectionSlots:
        """Requests on the wire at once, at most the pool's size (see `ConnectionSlots`)."""
        if self._slots is None:
            self._slots = ConnectionSlots(self.max_connections)
        return self._slots

    def check_open(self) -> None:
        """Raise `ClientClosedError` if the client (or its injected pool) is closed."""
        if self.closed or self.http.is_closed:
            raise ClientClosedError()

    async def call(
        self,
        method: str,
        path: str,
        parse: Parse[T],
        *,
        files: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None,
        idempotent: bool,
        priority: bool = False,
        timeout: httpx.Timeout | None = None,
        max_retries: int | None = None,
        queue_timeout: float | None = None,
        on_send: Callable[[], Awaitable[object]] | None = None,
    ) -> T:
        """Send one API request; return ``parse(data, message)`` of its envelope.

        ``idempotent``: the request may be sent again after it may have reached the service
        (queries; a create only with ``retry_creates``). A create whose answer names a task
        is never sent again. ``queue_timeout`` (else the caller's default) bounds the wait
        for a limiter slot: past it `LimiterTimeoutError` is raised and nothing is sent.
        ``on_send`` is called each time the request is about to go out (after the limiter
        granted a slot). A `MalformedResponseError` from ``parse`` is not retried.
        """
        self.check_open()
        queue_timeout = self.queue_timeout if queue_timeout is None else queue_timeout
        if queue_timeout == math.inf:  # explicitly unbounded, whatever the client's default
            queue_timeout = None
        creates = method == "POST"
        landed = False  # some attempt may have reached the service (and made a task)

        async def attempt(number: int) -> T:
            nonlocal landed
            try:
                return await self._attempt(
                    method,
                    path,
                    number,
                    parse,
                    files=files,
                    data=data,
                    priority=priority,
                    timeout=timeout or self.timeout,
                    queue_timeout=queue_timeout,
                    on_send=on_send,
                )
            except _Failure as failure:
                landed = landed or not failure.nothing_made
                raise

        def retry_on(exc: Exception) -> Retry | None:
            if not isinstance(exc, _Failure) or not exc.retryable:
                return None
            if creates and exc.task_id is not None:
                return None  # the answer named its task: sending again would pay twice
            if exc.nothing_made or idempotent:
                return Retry(exc.reason, after=exc.retry_after)
            return None

        try:
            return await self.retry.call(
                attempt, retry_on=retry_on, max_retries=max_retries, what=f"{method} {path}"
            )
        except _Failure as failure:
            error = failure.error(task_may_exist=creates and landed)
        if error.task_may_exist:
            logger.warning(
                "%s %s may have made a (charged) task without a usable answer%s: %s",
                method,
                path,
                f" (task {error.task_id}: poll it, do not create again)" if error.task_id else "",
                error,
            )
        raise error

    async def _attempt(
        self,
        method: str,
        path: str,
        number: int,
        parse: Parse[T],
        *,
        files: Mapping[str, Any] | None,
        data: Mapping[str, str] | None,
        priority: bool,
        timeout: httpx.Timeout,
        queue_timeout: float | None,
        on_send: Callable[[], Awaitable[object]] | None,
    ) -> T:
        reservation = await self.limiter.reserve(timeout=queue_timeout, priority=priority)
        url = self.base_url + path
        started = time.perf_counter()
        outcome: object = "not sent"
        try:
            self.check_open()
            if on_send is not None:
                await on_send()
            headers = {API_KEY_HEADER: self.api_key.reveal()} if self.api_key else {}
            request = self.http.build_request(
                method, self.target(path), headers=headers, files=files, data=data, timeout=timeout
            )
            if files is not None:
                _join_small_body(request)
            async with self.connection_slots():
                self.requests_sent += 1
                response, body = await self._exchange(request, timeout, reservation)
            outcome = response.status_code
            return await self._interpret(method, url, response, body, parse)
        except _Failure as failure:
            if not isinstance(outcome, int):
                outcome = failure.reason
            raise
        except anyio.get_cancelled_exc_class():
            outcome = "cancelled"
            raise
        finally:
            reservation.sent()  # no headers went out (error, mock transport): now
            if reservation.unpublished:  # a shared limiter: tell the other processes too
                with anyio.CancelScope(shield=True):
                    await reservation.publish()
            logger.debug(
                "%s %s -> %s in %.0f ms (attempt %d)",
                method,
                path,
                outcome,
                (time.perf_counter() - started) * 1000,
                number,
            )

    async def _exchange(
        self,
        request: httpx.Request,
        timeout: httpx.Timeout,
        reservation: Reservation,
    ) -> tuple[httpx.Response, bytes]:
        """Send ``request`` and read the whole (capped) answer, every phase bounded."""
        length = request.headers.get("Content-Length", "")
        deadline = PhaseDeadline(
            timeout,
            body_factor=BODY_DEADLINE_FACTOR,
            upload_bytes=int(length) if length.isdigit() else 0,
            on_departure=reservation.sent,
            on_headers_sent=reservation.publish if reservation.shared else None,
        )
        request.extensions["trace"] = deadline.trace
        fail = functools.partial(_Failure.of, request)
        body: bytes | None = None
        with deadline.scope:
            try:
                response = await self.http.send(request, stream=True, follow_redirects=False)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # Nothing was sent: safe to retry any request.
                name = type(exc).__name__
                if isinstance(exc, httpx.ConnectError):
                    message = f"Could not connect to the API ({name})."
                    raise fail(APIConnectionError, message, name, nothing_made=True) from None
                message = f"The API did not answer in time ({name})."
                raise fail(APITimeoutError, message, name, nothing_made=True) from None
            except httpx.InvalidURL:  # httpx parses a redirect's Location even when not following
                message = "the answer redirects to an invalid URL"
                raise fail(MalformedResponseError, message, "bad redirect") from None
            except httpx.TimeoutException as exc:
                name = type(exc).__name__
                message = f"The API did not answer in time ({name})."
                raise fail(APITimeoutError, message, name) from None
            except httpx.TransportError as exc:
                name = type(exc).__name__
                message = f"The connection to the API failed ({name})."
                raise fail(APIConnectionError, message, name) from None
            except RuntimeError:
                if self.http.is_closed:  # its owner closed the injected pool meanwhile
                    raise ClientClosedError() from None
                raise
            deadline.reading_body()
            try:
                body = await _read_capped(response, MAX_JSON_BYTES)
            except _TooLarge as exc:
                raise fail(MalformedResponseError, str(exc), "answer too large") from None
            except httpx.TimeoutException as exc:
                name = type(exc).__name__
                raise fail(APITimeoutError, f"The API answer stalled ({name}).", name) from None
            except httpx.TransportError as exc:
                name = type(exc).__name__
                message = f"The API answer was cut short ({name})."
                raise fail(APIConnectionError, message, name) from None
            finally:
                await response.aclose()
        if body is None:  # the deadline of a phase ended the exchange
            message = (
                f"The API did not answer in time: {deadline.describe()} (it trickled or stalled)."
            )
            raise fail(
                APITimeoutError,
                message,
                f"timeout ({deadline.phase})",
                nothing_made=not deadline.sent_anything,
            )
        return response, body

    async def _interpret(
        self,
        method: str,
        url: str,
        response: httpx.Response,
        body: bytes,
        parse: Parse[T],
    ) -> T:
        envelope = _parse_envelope(body)
        status = response.status_code
        message = ""
        excerpt = self._scrub(body[:BODY_EXCERPT_CHARS].decode("utf-8", "replace"))
        task_id: str | None = None
        data: object = None
        if envelope is not None:
            raw_message = envelope.get("message")
            message = self._scrub(raw_message[:500]) if isinstance(raw_message, str) else ""
            data = envelope.get("data")
            task_id = _named_task(data)
            json_status = envelope.get("status")
            if isinstance(json_status, int) and not isinstance(json_status, bool):
                if status != 200 and json_status == 200 and task_id is not None:
                    logger.warning(
                        "%s %s answered HTTP %d, but its body says status 200 and names task "
                        "%s: taking that task (the request is not sent again)",
                        method,
                        url,
                        status,
                        task_id,
                    )
                    status = 200
                elif status == 200:
                    status = json_status
        common: dict[str, Any] = {"method": method, "url": url, "body": excerpt}
        make: Callable[..., APIError]
        if status == 200:
            if envelope is None:
                make = functools.partial(
                    MalformedResponseError, "the answer is not a JSON envelope", **common
                )
                raise _Failure(make, reason="not a JSON envelope")
            if not isinstance(data, Mapping):
                make = functools.partial(
                    MalformedResponseError, "the answer has no data object", **common
                )
                raise _Failure(make, reason="no data object", retryable=False)
            try:
                return parse(data, message)
            except MalformedResponseError as exc:
                make = functools.partial(
                    MalformedResponseError, exc.detail, task_id=task_id, **common
                )
                raise _Failure(make, reason="unreadable answer", retryable=False) from None
        if envelope is None:
            message = message or excerpt.strip()[:200]
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        make = functools.partial(
            status_error, status, message, retry_after=retry_after, task_id=task_id, **common
        )
        if status == 429:
            logger.info(
                "Rate limited (HTTP 429) on %s %s: pausing every request for %s",
                method,
                url.removeprefix(self.base_url),
                "one window" if retry_after is None else f"{retry_after:g} s (Retry-After)",
            )
            await self.limiter.on_rate_limited(retry_after)
            # The limiter paused everybody: wait our turn there, not in a backoff of our own.
            raise _Failure(make, reason="HTTP 429", nothing_made=True, retry_after=0.0)
        raise _Failure(
            make,
            reason=f"HTTP {status}",
            nothing_made=400 <= status < 500,  # refused: the service made nothing
            retryable=status >= 500,
            retry_after=retry_after,
            task_id=task_id,
        )

    def _scrub(self, text: str) -> str:
        """``text`` (from the service's answer) with any echo of the API key masked."""
        key = self.api_key.reveal() if self.api_key else ""
        return text.replace(key, "***") if len(key) >= 4 else text


class _Failure(Exception):
    """Internal: one attempt failed; carries what the final public error is built from.

    ``nothing_made``: this attempt surely made no task (never sent, or refused with a 4xx);
    ``retryable``: another attempt may succeed; ``task_id``: the answer named a task.
    """

    def __init__(
        self,
        make: Callable[..., APIError],
        *,
        reason: str,
        nothing_made: bool = False,
        retryable: bool = True,
        retry_after: float | None = None,
        task_id: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.make = make
        self.reason = reason
        self.nothing_made = nothing_made
        self.retryable = retryable
        self.retry_after = retry_after
        self.task_id = task_id

    @classmethod
    def of(
        cls,
        request: httpx.Request,
        error_class: Callable[..., APIError],
        message: str,
        reason: str,
        *,
        nothing_made: bool = False,
    ) -> _Failure:
        """A failure of the exchange itself (no answer to read)."""
        make = functools.partial(error_class, message, method=request.method, url=str(request.url))
        return cls(make, reason=reason, nothing_made=nothing_made)

    def error(self, *, task_may_exist: bool) -> APIError:
        """The public error, built once with all its data."""
        return self.make(task_may_exist=task_may_exist)


class _TooLarge(Exception):
    """Internal: the answer is over `MAX_JSON_BYTES`."""


def _named_task(data: object) -> str | None:
    """The task id an answer's ``data`` names, if it is a usable one."""
    if not isinstance(data, Mapping):
        return None
    task_id = data.get("task_id")
    if isinstance(task_id, str) and 0 < len(task_id) <= MAX_TASK_ID_CHARS:
        return task_id
    return None


def _join_small_body(request: httpx.Request) -> None:
    """Join a small multipart body into one chunk: one socket write instead of ~15.

    httpx streams a multipart body part by part (boundary, part headers, value, CRLF for
    each form field), and httpcore writes each piece with its own system call and timeout
    scope: about 15 writes for a create. A large upload stays streamed (in 64 KiB chunks)
    so as not to hold a second copy of it.
    """
    length = request.headers.get("Content-Length", "")
    if length.isdigit() and int(length) <= SMALL_BODY:
        request.read()


def _parse_envelope(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """Read a streamed body, refusing more than ``limit`` bytes."""
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge(f"the answer is {declared} bytes, over the {limit} cap")
    chunks: list[bytes] = []
    total = 0
    async for chunk in body_chunks(response):
        total += len(chunk)
        if total > limit:
            raise _TooLarge(f"the answer is over the {limit} byte cap")
        chunks.append(chunk)
    return b"".join(chunks)


def body_chunks(response: httpx.Response, chunk_size: int | None = None) -> AsyncIterator[bytes]:
    """The answer's body, decoded: as it came when it has no ``Content-Encoding`` (httpx's
    decoder and re-chunking would only copy it: 2 % of a batch photo's instructions); a
    body read already (a mock transport's) comes from httpx's copy."""
    identity = response.headers.get("Content-Encoding", "identity") == "identity"
    if identity and not response.is_stream_consumed:
        return response.aiter_raw()
    return response.aiter_bytes(chunk_size)
