"""The connection pool of a client: several small httpcore pools behind one httpx transport.

httpcore's pool looks at every connection it holds each time a request starts or ends
(``AsyncConnectionPool._assign_requests_to_connections``): for each idle one it asks whether
the server closed it (a ``getpeername`` system call through anyio) and counts all the others
again, so one request event costs time quadratic in the connections held. A sync-mode batch
at QPS 200 with 3 s processing holds ~700 connections: measured, over half the client's CPU
went there. `ShardedTransport` splits the pool into shards of a few connections each and sends
every request to the least busy shard, so each event scans a handful of connections.

Only httpx's public transport API is used (``httpx.AsyncHTTPTransport``,
``handle_async_request``, ``Response.stream``): no private attribute of httpx or httpcore.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, Literal

import httpx

from ._aiohttp import AiohttpTransport, aiohttp_available
from ._errors import ValidationError
from ._eventloop import on_asyncio
from ._own_client import OwnPoolClient

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "KEEPALIVE_EXPIRY",
    "HTTPBackend",
    "ShardedTransport",
    "make_http_client",
    "make_pool",
]

HTTPBackend = Literal["httpx", "aiohttp", "auto"]
"""What a client's own pool is made of (`make_pool`)."""

KEEPALIVE_EXPIRY: Final = 2.0
"""Seconds an idle connection is kept. Below the 5 s that uvicorn (and httpx by default) use:
reusing a connection just as the server closes it fails the create with a ReadError that
cannot be retried (the task may exist), as 3 of 10 000 creates did in test_memory_10000_inputs."""

DEFAULT_SHARD_SIZE: Final = 1
"""Connections per httpcore pool. httpcore checks each connection of a pool (system calls)
on every request start and end, so one connection per pool makes that one check; measured
(benchmarks/ANALYSIS.md), 1, 4 and 8 cost about the same at 64 connections, one pool of 64
twice as much."""


class ShardedTransport(httpx.AsyncBaseTransport):
    """Up to ``max_connections`` connections per origin, in pools of ``shard_size``.

    Each request goes to the least busy pool of its origin (scheme, host, port), where it
    finds an idle connection or room for a new one: no request waits inside httpcore while
    fewer than ``max_connections`` are open to its origin. Pools are made as the load needs
    them, and all share one TLS context (making one loads the CA bundle: ~40 ms).
    ``transport_options`` go to each pool's ``httpx.AsyncHTTPTransport``.

    Everything slow is done here, not on a request's way out: the TLS context and the first
    pool (whose making imports httpcore: 60-110 ms measured on a loaded machine) are made
    now, so a request that already holds its rate-limiter slot leaves within a few
    milliseconds (later pools cost microseconds). (A first request that left 65-114 ms after its
    slot, while the next ones left on time, put five arrivals in one second at a strict
    server: a 429 behind `idphoto_async.RedisLimiter`, which then counted slots from the grant.)
    """

    def __init__(
        self,
        max_connections: int,
        *,
        shard_size: int = DEFAULT_SHARD_SIZE,
        keepalive_expiry: float | None = KEEPALIVE_EXPIRY,
        verify: ssl.SSLContext | bool = True,
        **transport_options: Any,
    ) -> None:
        if max_connections < 1 or shard_size < 1:
            raise ValueError("max_connections and shard_size must be at least 1")
        self._max_shards = math.ceil(max_connections / shard_size)
        per_shard = math.ceil(max_connections / self._max_shards)
        self._limits = httpx.Limits(
            max_connections=per_shard,
            max_keepalive_connections=per_shard,
            keepalive_expiry=keepalive_expiry,
        )
        self._per_shard = per_shard
        self._verify: ssl.SSLContext | bool = (
            httpx.create_ssl_context(verify=True, trust_env=False) if verify is True else verify
        )
        self._options = transport_options
        self._origins: dict[tuple[bytes, bytes, int | None], _ShardGroup] = {}
        self._spare: httpx.AsyncHTTPTransport | None = self._make_shard()

    @property
    def shard_count(self) -> int:
        """How many httpcore pools there are now (all origins)."""
        return sum(len(group.shards) for group in self._origins.values())

    @property
    def open_requests(self) -> int:
        """Requests sent whose responses are not closed yet."""
        return sum(sum(group.open) for group in self._origins.values())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        key = (url.raw_scheme, url.raw_host, url.port)
        group = self._origins.get(key)
        if group is None:
            group = self._origins[key] = _ShardGroup()
        index = group.pick(self._per_shard, self._max_shards, self._new_shard)
        group.open[index] += 1
        try:
            response = await group.shards[index].handle_async_request(request)
        except BaseException:
            group.open[index] -= 1
            raise
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_CountedStream(response.stream, group.open, index),
            extensions=response.extensions,
        )

    def _make_shard(self) -> httpx.AsyncHTTPTransport:
        return httpx.AsyncHTTPTransport(verify=self._verify, limits=self._limits, **self._options)

    def _new_shard(self) -> httpx.AsyncHTTPTransport:
        """The spare pool (made in advance), or a new one."""
        shard, self._spare = self._spare, None
        return shard if shard is not None else self._make_shard()

    async def aclose(self) -> None:
        for group in self._origins.values():
            for shard in group.shards:
                await shard.aclose()
        if self._spare is not None:
            await self._spare.aclose()
            self._spare = None


class _ShardGroup:
    """The pools of one origin and their open requests."""

    def __init__(self) -> None:
        self.shards: list[httpx.AsyncHTTPTransport] = []
        self.open: list[int] = []

    def pick(
        self, per_shard: int, max_shards: int, make: Callable[[], httpx.AsyncHTTPTransport]
    ) -> int:
        """The least busy pool; a new one when all are full (up to ``max_shards``)."""
        if self.open:
            fewest = min(self.open)
            if fewest < per_shard or len(self.shards) >= max_shards:
                return self.open.index(fewest)
        self.shards.append(make())
        self.open.append(0)
        return len(self.shards) - 1


class _CountedStream(httpx.AsyncByteStream):
    """A response body that frees its shard's place when closed (once)."""

    def __init__(
        self, stream: httpx.SyncByteStream | httpx.AsyncByteStream, open_: list[int], index: int
    ) -> None:
        if not isinstance(stream, httpx.AsyncByteStream):  # pragma: no cover - httpx contract
            raise TypeError("an async transport returned a sync stream")
        self._stream = stream
        self._open = open_
        self._index: int | None = index

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        if self._index is not None:
            self._open[self._index] -= 1
            self._index = None
        await self._stream.aclose()


def make_http_client(max_connections: int, timeout: httpx.Timeout) -> httpx.AsyncClient:
    """The ``httpx.AsyncClient`` a client makes for itself: a `ShardedTransport`, no
    redirects, no proxies from the environment, TLS verified."""
    return OwnPoolClient(ShardedTransport(max_connections, trust_env=False), timeout)


def make_pool(
    backend: HTTPBackend, max_connections: int, timeout: httpx.Timeout
) -> httpx.AsyncClient:
    """The client's own pool: httpx's (`make_http_client`), aiohttp's
    (`idphoto_async._aiohttp.AiohttpTransport`), or for ``"auto"`` aiohttp's when it is
    installed, with httpx's in reserve for trio (chosen per request); one TLS context."""
    if backend not in ("httpx", "aiohttp", "auto"):
        raise ValidationError(
            f"http_backend must be 'httpx', 'aiohttp' or 'auto', got {backend!r}.",
            field="http_backend",
        )
    if backend == "httpx" or (backend == "auto" and not aiohttp_available()):
        return make_http_client(max_connections, timeout)
    tls = httpx.create_ssl_context(verify=True, trust_env=False)  # ~40 ms: made once
    aiohttp = AiohttpTransport(max_connections, keepalive_expiry=KEEPALIVE_EXPIRY, verify=tls)
    if backend == "aiohttp":
        return OwnPoolClient(aiohttp, timeout)
    sharded = ShardedTransport(max_connections, trust_env=False, verify=tls)
    return OwnPoolClient(_AsyncioFirst(aiohttp, sharded), timeout)


class _AsyncioFirst(httpx.AsyncBaseTransport):
    """``http_backend="auto"``: aiohttp's pool on asyncio, httpx's sharded pool on trio."""

    def __init__(self, on_asyncio: httpx.AsyncBaseTransport, on_trio: ShardedTransport) -> None:
        self._asyncio = on_asyncio
        self._trio = on_trio

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if on_asyncio():
            return await self._asyncio.handle_async_request(request)
        return await self._trio.handle_async_request(request)

    async def aclose(self) -> None:
        await self._asyncio.aclose()
        await self._trio.aclose()
