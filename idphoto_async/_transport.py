"""One API request: limiter slot, send, map the answer or failure to our errors, retry.

Retries follow one rule: a request is sent again only where that cannot charge twice.
Queries are always safe. A create is safe when it surely never reached the service (the
connection was refused, or the service answered 429, which it does before making a task);
after a 5xx or a connection lost mid-request the task may exist already, and the API has no
idempotency key, so a create is retried then only when the caller allows it
(``retry_creates=True``): a possible second charge in exchange for not failing the photo.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import attrs
import httpx

from ._constants import API_KEY_HEADER, INLINE_UPLOAD_BYTES
from ._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    MalformedResponseError,
    RateLimitError,
    status_error,
)
from ._limiter import Limiter, Reservation, TokenBucketLimiter
from ._retry import RetryPolicy, parse_retry_after

__all__ = ["ApiCaller", "Secret"]

MAX_JSON_BYTES = 64 * 1024 * 1024
"""Cap on an API answer: a base64 result of the largest ID photo fits well within it."""
SMALL_BODY = INLINE_UPLOAD_BYTES + 64 * 1024
"""Multipart bodies up to this size (an inline upload and its form fields) are joined before
sending (see `_join_small_body`)."""
BODY_DEADLINE_FACTOR = 2.0
"""The whole answer body must arrive within this many read timeouts. httpx's read timeout
bounds each read only: a server trickling a byte at a time would otherwise never time out."""


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
    _slots: anyio.CapacityLimiter | None = attrs.field(default=None, init=False, repr=False)

    def connection_slots(self) -> anyio.CapacityLimiter:
        """Requests on the wire at once, at most the pool's size.

        Requests beyond it wait here rather than inside httpcore, whose pool rescans every
        queued request on each start and close (measured: over half the client's CPU with
        200 sync creates queued).
        """
        if self._slots is None:  # made lazily, inside the caller's event loop
            self._slots = anyio.CapacityLimiter(self.max_connections)
        return self._slots

    async def call(
        self,
        method: str,
        path: str,
        *,
        files: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None,
        idempotent: bool,
        priority: bool = False,
        timeout: httpx.Timeout | None = None,
        max_retries: int | None = None,
        queue_timeout: float | None = None,
        on_send: Callable[[], Awaitable[object]] | None = None,
    ) -> tuple[Mapping[str, Any], str]:
        """Send one API request; return the envelope's ``data`` object and ``message``.

        ``queue_timeout`` (else the caller's default) bounds the wait for a limiter slot:
        past it `LimiterTimeoutError` is raised and nothing is sent. ``on_send`` is called
        each time the request is about to go out (after the limiter granted a slot).
        """
        queue_timeout = self.queue_timeout if queue_timeout is None else queue_timeout
        if queue_timeout == math.inf:  # explicitly unbounded, whatever the client's default
            queue_timeout = None
        retries = self.retry.max_retries if max_retries is None else max_retries
        attempt = 0
        landed = False  # some attempt may have reached the service (and made a task)
        while True:
            try:
                return await self._attempt(
                    method,
                    path,
                    files=files,
                    data=data,
                    priority=priority,
                    timeout=timeout,
                    queue_timeout=queue_timeout,
                    on_send=on_send,
                )
            except MalformedResponseError as exc:  # a 200 answer we cannot read
                exc.task_may_exist = True
                raise
            except APIError as exc:  # a 4xx: refused, nothing made by this attempt
                exc.task_may_exist = landed
                raise
            except _Retryable as exc:
                landed = landed or not exc.never_reached
                safe = exc.never_reached or idempotent
                if attempt >= retries or not safe:
                    exc.error.task_may_exist = landed
                    raise exc.error from None
                retry_after = (
                    exc.error.retry_after if isinstance(exc.error, RateLimitError) else None
                )
                if isinstance(exc.error, RateLimitError):
                    # The limiter already paused everybody; wait our turn there.
                    delay = 0.0
                else:
                    delay = self.retry.delay(attempt, retry_after=retry_after)
                attempt += 1
                await anyio.sleep(delay)

    async def _attempt(
        self,
        method: str,
        path: str,
        *,
        files: Mapping[str, Any] | None,
        data: Mapping[str, str] | None,
        priority: bool,
        timeout: httpx.Timeout | None,
        queue_timeout: float | None,
        on_send: Callable[[], Awaitable[object]] | None,
    ) -> tuple[Mapping[str, Any], str]:
        reservation = await self._take_slot(queue_timeout, priority)
        try:
            if on_send is not None:
                await on_send()
            headers = {API_KEY_HEADER: self.api_key.reveal()} if self.api_key else {}
            request = self.http.build_request(
                method,
                self.base_url + path,
                headers=headers,
                files=files,
                data=data,
                timeout=timeout or self.timeout,
                extensions=None if reservation is None else {"trace": _departure(reservation)},
            )
            if files is not None:
                _join_small_body(request)
            async with self.connection_slots():
                self.requests_sent += 1
                response, body = await self._exchange(request, timeout)
        finally:
            if reservation is not None:  # no headers went out (error, mock transport): now
                reservation.sent()
        return await self._interpret(response, body)

    async def _take_slot(self, queue_timeout: float | None, priority: bool) -> Reservation | None:
        """A limiter slot; a `Reservation` if the limiter counts requests from departure."""
        if isinstance(self.limiter, TokenBucketLimiter):
            return await self.limiter.reserve(timeout=queue_timeout, priority=priority)
        await self.limiter.acquire(timeout=queue_timeout, priority=priority)
        return None

    async def _exchange(
        self, request: httpx.Request, timeout: httpx.Timeout | None
    ) -> tuple[httpx.Response, bytes]:
        """Send ``request`` and read the whole (capped) answer; failures as `_Retryable`."""
        try:
            response = await self.http.send(request, stream=True, follow_redirects=False)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # Nothing was sent: safe to retry any request.
            error: APIError = (
                APITimeoutError("Connecting to the API timed out.")
                if isinstance(exc, httpx.ConnectTimeout)
                else APIConnectionError(f"Could not connect to the API ({type(exc).__name__}).")
            )
            raise _Retryable(error, never_reached=True) from None
        except httpx.InvalidURL:  # httpx parses a redirect's Location even when not following
            raise _Retryable(
                MalformedResponseError("the answer redirects to an invalid URL"),
                never_reached=False,
            ) from None
        except httpx.PoolTimeout:
            raise _Retryable(
                APITimeoutError("No free connection in the pool in time."), never_reached=True
            ) from None
        except httpx.TimeoutException as exc:
            raise _Retryable(
                APITimeoutError(f"The API did not answer in time ({type(exc).__name__})."),
                never_reached=False,
            ) from None
        except httpx.TransportError as exc:
            raise _Retryable(
                APIConnectionError(f"The connection to the API failed ({type(exc).__name__})."),
                never_reached=False,
            ) from None
        read_timeout = (timeout or self.timeout).read
        deadline = BODY_DEADLINE_FACTOR * read_timeout if read_timeout else None
        try:
            with anyio.fail_after(deadline):
                body = await _read_capped(response, MAX_JSON_BYTES)
        except TimeoutError:
            raise _Retryable(
                APITimeoutError(
                    f"The API answer trickled in for over {deadline:g} s without ending."
                ),
                never_reached=False,
            ) from None
        except httpx.TimeoutException as exc:
            raise _Retryable(
                APITimeoutError(f"The API answer stalled ({type(exc).__name__})."),
                never_reached=False,
            ) from None
        except httpx.TransportError as exc:
            raise _Retryable(
                APIConnectionError(f"The API answer was cut short ({type(exc).__name__})."),
                never_reached=False,
            ) from None
        finally:
            await response.aclose()
        return response, body

    async def _interpret(
        self, response: httpx.Response, body: bytes
    ) -> tuple[Mapping[str, Any], str]:
        envelope = _parse_envelope(body)
        status = response.status_code
        message = ""
        if envelope is not None:
            raw_message = envelope.get("message")
            message = self._scrub(raw_message[:500]) if isinstance(raw_message, str) else ""
            json_status = envelope.get("status")
            if status == 200 and isinstance(json_status, int) and not isinstance(json_status, bool):
                status = json_status
        if status == 200:
            if envelope is None:
                raise _Retryable(
                    MalformedResponseError("the answer is not a JSON envelope"), never_reached=False
                )
            data = envelope.get("data")
            if not isinstance(data, Mapping):
                raise MalformedResponseError("the answer has no data object")
            return data, message
        if envelope is None:
            message = message or self._scrub(body[:200].decode("utf-8", "replace").strip())
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        error = status_error(status, message, retry_after=retry_after)
        if status == 429:
            await self.limiter.on_rate_limited(retry_after)
            raise _Retryable(error, never_reached=True)
        if status >= 500:
            raise _Retryable(error, never_reached=False)
        raise error

    def _scrub(self, text: str) -> str:
        """``text`` (from the service's answer) with any echo of the API key masked."""
        key = self.api_key.reveal() if self.api_key else ""
        return text.replace(key, "***") if len(key) >= 4 else text


class _Retryable(Exception):
    """Internal: a failure that may be retried, and whether the request surely never landed."""

    def __init__(self, error: APIError, *, never_reached: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.never_reached = never_reached


def _departure(reservation: Reservation) -> Callable[[str, Mapping[str, Any]], Awaitable[None]]:
    """An httpcore ``trace`` hook: the request leaves when its headers are written."""

    async def trace(event: str, info: Mapping[str, Any]) -> None:
        if event.endswith(".send_request_headers.complete"):
            reservation.sent()

    return trace


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
        raise MalformedResponseError(f"the answer is {declared} bytes, over the {limit} cap")
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > limit:
            raise MalformedResponseError(f"the answer is over the {limit} byte cap")
        chunks.append(chunk)
    return b"".join(chunks)
