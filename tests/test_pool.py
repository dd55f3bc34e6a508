"""The sharded connection pool (idphoto_async._pool) against real local servers."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import AsyncExitStack

import anyio
import httpx
import pytest

from idphoto_async._pool import ShardedTransport, make_http_client
from idphoto_async.testing import LocalServer

pytestmark = pytest.mark.anyio

STATS = "/_local/stats"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[LocalServer, LocalServer]]:
    with LocalServer(qps=None) as one, LocalServer(qps=None) as two:
        yield one, two


async def open_streams(
    stack: AsyncExitStack, http: httpx.AsyncClient, url: str, count: int
) -> list[httpx.Response]:
    """``count`` responses held open (their connections busy) until ``stack`` closes."""
    return [await stack.enter_async_context(http.stream("GET", url)) for _ in range(count)]


async def test_pools_are_made_as_the_load_needs_them(
    servers: tuple[LocalServer, LocalServer],
) -> None:
    transport = ShardedTransport(12, shard_size=4)
    async with httpx.AsyncClient(transport=transport) as http:
        url = servers[0].base_url + STATS
        assert (await http.get(url)).status_code == 200
        assert transport.shard_count == 1
        async with AsyncExitStack() as stack:
            held = await open_streams(stack, http, url, 10)
            assert all(r.status_code == 200 for r in held)
            assert transport.open_requests == 10
            assert transport.shard_count == 3  # 10 open requests in pools of 4
        assert transport.open_requests == 0
        for _ in range(5):  # one at a time: the least busy pools serve them
            await http.get(url)
        assert transport.shard_count == 3


async def test_each_origin_has_its_own_pools(servers: tuple[LocalServer, LocalServer]) -> None:
    transport = ShardedTransport(8, shard_size=2)
    async with httpx.AsyncClient(transport=transport) as http, AsyncExitStack() as stack:
        await open_streams(stack, http, servers[0].base_url + STATS, 2)
        await open_streams(stack, http, servers[1].base_url + STATS, 1)
        assert transport.shard_count == 2
        assert transport.open_requests == 3


async def test_the_first_request_makes_no_pool_or_tls_context(
    servers: tuple[LocalServer, LocalServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Made lazily they cost 40-110 ms after the rate limiter's grant (importing httpcore,
    loading the CA bundle): enough to put 5 arrivals in one second behind RedisLimiter."""
    transport = ShardedTransport(4, shard_size=1)
    made: list[str] = []
    real_transport, real_context = httpx.AsyncHTTPTransport, httpx.create_ssl_context

    def pool(*args: object, **kwargs: object) -> httpx.AsyncHTTPTransport:
        made.append("pool")
        return real_transport(*args, **kwargs)  # type: ignore[arg-type]

    def context(*args: object, **kwargs: object) -> object:
        made.append("tls context")
        return real_context(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx, "AsyncHTTPTransport", pool)
    monkeypatch.setattr(httpx, "create_ssl_context", context)
    async with httpx.AsyncClient(transport=transport) as http:
        assert (await http.get(servers[0].base_url + STATS)).status_code == 200
    assert made == []
    assert transport.shard_count == 1


async def local_port(http: httpx.AsyncClient, url: str) -> int:
    """The client-side port of the connection that served a GET of ``url``."""
    async with http.stream("GET", url) as response:
        port: int = response.extensions["network_stream"].get_extra_info("client_addr")[1]
        await response.aread()
    return port


async def test_idle_connections_expire(servers: tuple[LocalServer, LocalServer]) -> None:
    """Idle connections are dropped after ``keepalive_expiry`` (2 s by default, below the 5 s
    servers such as uvicorn keep them), kept within it."""
    url = servers[0].base_url + STATS
    transport = ShardedTransport(2, keepalive_expiry=0.05)
    async with httpx.AsyncClient(transport=transport) as http:
        first = await local_port(http, url)
        await anyio.sleep(0.3)  # well past the expiry
        second = await local_port(http, url)
    assert first != second
    async with httpx.AsyncClient(transport=ShardedTransport(2)) as http:
        assert await local_port(http, url) == await local_port(http, url)


async def test_more_requests_than_connections_wait_in_a_pool(
    servers: tuple[LocalServer, LocalServer],
) -> None:
    transport = ShardedTransport(2, shard_size=1)
    async with httpx.AsyncClient(transport=transport) as http:
        url = servers[0].base_url + STATS
        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(http.get, url)
        assert transport.shard_count == 2
        assert transport.open_requests == 0


async def test_a_failed_request_frees_its_place() -> None:
    with socket.socket() as sock:  # a port that refuses connections
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    transport = ShardedTransport(4)
    async with httpx.AsyncClient(transport=transport) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/")
        assert transport.open_requests == 0


async def test_the_client_factory_serves_requests(servers: tuple[LocalServer, LocalServer]) -> None:
    async with make_http_client(64, httpx.Timeout(5.0)) as http:
        response = await http.get(servers[0].base_url + STATS)
        assert response.status_code == 200
        assert not http.follow_redirects


def test_sizes_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ShardedTransport(0)
    with pytest.raises(ValueError, match="at least 1"):
        ShardedTransport(4, shard_size=0)
