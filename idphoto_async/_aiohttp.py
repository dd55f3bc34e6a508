"""An optional connection pool on aiohttp (asyncio only): a third of httpx's CPU per request.

``AsyncIDPhotoClient(http_backend="aiohttp")`` (``pip install 'idphoto-async[aiohttp]'``)
sends through `AiohttpTransport`, an ``httpx.AsyncBaseTransport`` over one
``aiohttp.ClientSession``: the client's whole send path (limiter, phase deadlines, retries,
error mapping, whole-result checks) stays as it is; only the HTTP/1.1 work below it changes.
aiohttp parses HTTP in C and keeps its idle connections in a queue per host, where httpcore
parses in Python and scans every connection of its pool on each request event (measured on
loopback, 32 requests in flight: 1.26 ms of client CPU per request with httpx's own pool,
0.29 with this transport). aiohttp runs on asyncio only: on trio, use the default (httpx).

What httpcore reports through the ``trace`` request extension, this transport reports from
aiohttp's own tracing, with the same event names (see `idphoto_async._timeouts`): the
request's departure, the step in which its first bytes are written
(``send_request_headers.started``, which the rate limiter counts from, then ``.complete``),
and the body written (``receive_response_headers.started``). aiohttp's own "headers sent"
signal fires before it even buffers the headers, and a body (with the headers in front of
it) is written by a task of its own, a loop turn later on CPython 3.11: so a request with a
body departs at its first chunk, whose signal aiohttp fires in the step that writes it (a
departure stamped early lets the limiter crowd the window behind it). aiohttp's
errors become httpx's, sorted by what matters here, whether the request may have reached the
server: only an error of connecting is a ``ConnectError``/``ConnectTimeout`` (nothing sent,
safe to send again); a connection lost or a stalled answer after that is a
``ReadError``/``RemoteProtocolError``/``ReadTimeout`` (a create is not sent again).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from types import SimpleNamespace
from typing import Any, Final

import httpx

from ._errors import ValidationError
from ._eventloop import on_asyncio

__all__ = ["INSTALL_HINT", "AiohttpTransport", "aiohttp_available"]

INSTALL_HINT: Final = "pip install 'idphoto-async[aiohttp]'"

Trace = Callable[[str, Mapping[str, Any]], Awaitable[None]]


def aiohttp_available() -> bool:
    """Whether aiohttp can be imported (the ``aiohttp`` extra is installed)."""
    try:
        import aiohttp  # noqa: F401
        import yarl  # noqa: F401
    except ImportError:
        return False
    return True


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Up to ``max_connections`` connections (all origins) in one aiohttp session.

    The session is made on the first request, inside the running event loop (aiohttp binds
    it to that loop): using the transport from another loop, or on trio, raises
    `idphoto_async.ValidationError`. TLS is verified with the same context httpx would use
    (made now: loading the CA bundle takes ~40 ms, not to be spent after a rate-limiter
    slot); no proxy or ``.netrc`` from the environment; no cookies kept; answers passed on
    as sent (httpx decodes any ``Content-Encoding``). ``keepalive_expiry``: seconds an idle
    connection is kept.
    """

    def __init__(
        self,
        max_connections: int,
        *,
        keepalive_expiry: float = 2.0,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        try:
            import aiohttp
        except ImportError:
            raise ValidationError(
                f"http_backend='aiohttp' needs aiohttp: {INSTALL_HINT}.", field="http_backend"
            ) from None
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._aiohttp = aiohttp
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._ssl: ssl.SSLContext | bool = (
            httpx.create_ssl_context(verify=True, trust_env=False) if verify is True else verify
        )
        tracing = aiohttp.TraceConfig()
        tracing.on_request_headers_sent.append(_on_headers_sent)
        tracing.on_request_chunk_sent.append(_on_chunk_sent)
        self._tracing = tracing
        self._session: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _session_here(self) -> Any:
        """The session of the running loop (made on first use)."""
        if not on_asyncio():
            raise ValidationError(
                "http_backend='aiohttp' runs on asyncio only; on trio use the default "
                "http_backend='httpx'.",
                field="http_backend",
            )
        loop = asyncio.get_running_loop()
        if self._session is None:
            aiohttp = self._aiohttp
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=self._keepalive_expiry,
                ssl=self._ssl,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                middlewares=[self._no_resend],
                trust_env=False,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                trace_configs=[self._tracing],
                timeout=aiohttp.ClientTimeout(total=None),
            )
            self._loop = loop
        elif loop is not self._loop:
            raise ValidationError(
                "This client's aiohttp pool belongs to another event loop: make one client "
                "per event loop (or use http_backend='httpx').",
                field="http_backend",
            )
        return self._session

    async def _no_resend(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        """An aiohttp middleware: carry a failed attempt's error out of the session.

        aiohttp sends a GET again by itself when the connection drops: a request our rate
        limiter never counted (a 429 waiting to happen). Wrapped, the error passes aiohttp's
        resend loop; the client's retry policy decides, counting each request.
        """
        try:
            return await handler(request)
        except self._aiohttp.ClientError as exc:
            raise _NotResent(exc) from exc

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session_here()
        import yarl

        timeouts: Mapping[str, float | None] = request.extensions.get("timeout", {})
        context = _RequestContext(request.extensions.get("trace"), request)
        body: bytes | AsyncIterator[bytes] | None
        try:
            body = request.content or None
        except httpx.RequestNotRead:  # a large upload: streamed
            body = _aiter(request.stream)
        with _mapped_errors(self._aiohttp):
            response = await session.request(
                request.method,
                yarl.URL(str(request.url), encoded=True),  # as httpx encoded it, not requoted
                headers=[
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                ],
                data=body,
                allow_redirects=False,
                compress=None,
                timeout=self._aiohttp.ClientTimeout(
                    total=None,
                    connect=_sum(timeouts.get("pool"), timeouts.get("connect")),
                    sock_connect=timeouts.get("connect"),
                    sock_read=timeouts.get("read"),
                ),
                trace_request_ctx=context,
            )
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("ascii", "replace")
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_ResponseStream(response, self._aiohttp),
            extensions=extensions,
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class _RequestContext:
    """One request's trace hook and body size, handed to aiohttp's tracing callbacks."""

    __slots__ = ("awaiting", "body_left", "has_body", "left", "trace")

    def __init__(self, trace: Trace | None, request: httpx.Request) -> None:
        self.trace = trace
        length = request.headers.get("Content-Length", "")
        self.body_left = int(length) if length.isdigit() else 0
        self.has_body = self.body_left > 0 or "Transfer-Encoding" in request.headers
        self.left = False
        self.awaiting = False

    async def departed(self) -> None:
        """The request's first bytes are written in this step: its departure (once)."""
        if not self.left:
            self.left = True
            await self.emit("http11.send_request_headers.started")
            await self.emit("http11.send_request_headers.complete")

    async def emit(self, event: str) -> None:
        if self.trace is not None:
            await self.trace(event, {})

    async def body_sent(self, size: int) -> None:
        """``size`` more body bytes left; once all have, the answer is awaited."""
        self.body_left -= size
        if self.body_left <= 0 and not self.awaiting:
            self.awaiting = True
            await self.emit("http11.receive_response_headers.started")


def _context(trace_config_ctx: SimpleNamespace) -> _RequestContext | None:
    context = getattr(trace_config_ctx, "trace_request_ctx", None)
    return context if isinstance(context, _RequestContext) else None


async def _on_headers_sent(
    session: object, trace_config_ctx: SimpleNamespace, params: object
) -> None:
    if (context := _context(trace_config_ctx)) is not None and not context.has_body:
        # Written in the same step (no body: aiohttp sends the buffered headers at once).
        await context.departed()
        await context.body_sent(0)


async def _on_chunk_sent(session: object, trace_config_ctx: SimpleNamespace, params: Any) -> None:
    if (context := _context(trace_config_ctx)) is not None:
        await context.departed()  # the first chunk: aiohttp writes the headers with it, now
        await context.body_sent(len(params.chunk))


class _ResponseStream(httpx.AsyncByteStream):
    """An aiohttp response body as httpx's stream; closing it frees or drops the connection."""

    def __init__(self, response: Any, aiohttp: Any) -> None:
        self._response = response
        self._aiohttp = aiohttp

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped_errors(self._aiohttp):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # A body read to its end frees the connection for reuse; otherwise it is closed.
        self._response.release()


async def _aiter(stream: httpx.SyncByteStream | httpx.AsyncByteStream) -> AsyncIterator[bytes]:
    if isinstance(stream, httpx.AsyncByteStream):
        async for chunk in stream:
            yield chunk
    else:
        for chunk in stream:
            yield chunk


class _NotResent(Exception):
    """An aiohttp error carried past aiohttp's own resending (see `AiohttpTransport`)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


def _sum(*values: float | None) -> float | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


@contextlib.contextmanager
def _mapped_errors(aiohttp: Any) -> Iterator[None]:
    """aiohttp's errors as httpx's: connect-phase errors only when nothing was sent."""
    try:
        try:
            yield
        except _NotResent as carried:
            raise carried.error from None
    except aiohttp.ClientConnectorError as exc:  # DNS, refused, TLS handshake: nothing sent
        raise httpx.ConnectError(str(exc)) from exc
    except aiohttp.ConnectionTimeoutError as exc:  # no pooled connection or connect in time
        raise httpx.ConnectTimeout(str(exc)) from exc
    except aiohttp.ServerTimeoutError as exc:  # a read stalled (sock_read)
        raise httpx.ReadTimeout(str(exc) or "the answer stalled") from exc
    except aiohttp.ClientPayloadError as exc:  # a body cut short or malformed
        raise httpx.ReadError(str(exc)) from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientResponseError) as exc:
        raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__) from exc
    except aiohttp.InvalidURL as exc:
        raise httpx.UnsupportedProtocol(str(exc)) from exc
    except aiohttp.ClientError as exc:  # the connection failed after it was made
        raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
