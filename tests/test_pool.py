"""The client's connection pool (`idphoto_async._pool`): httpcore's decisions, linear cost."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpcore
import httpx
import pytest

from idphoto_async import AsyncIDPhotoClient
from idphoto_async._pool import FastConnectionPool, install_fast_pool
from idphoto_async.testing import LocalServer

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(qps=None, processing_time="fixed:0") as srv:
        yield srv


async def test_the_client_owns_a_fast_pool_and_leaves_injected_clients_alone() -> None:
    async with AsyncIDPhotoClient(None, "http://127.0.0.1:9") as client:
        assert type(client._http._transport._pool) is FastConnectionPool  # type: ignore[attr-defined]
    injected = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    async with injected, AsyncIDPhotoClient(None, "http://127.0.0.1:9", http_client=injected):
        assert not install_fast_pool(injected)
    assert not install_fast_pool(object())


@pytest.mark.parametrize(("max_connections", "keepalive"), [(3, 3), (4, 1)])
async def test_queued_requests_reuse_and_replace_connections(
    server: LocalServer, max_connections: int, keepalive: int
) -> None:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=keepalive)
    async with httpx.AsyncClient(limits=limits, trust_env=False) as http:
        assert install_fast_pool(http)
        pool = http._transport._pool  # type: ignore[attr-defined]
        statuses: list[int] = []

        async def get() -> None:
            response = await http.get(server.base_url + "/api/v1/id-photo/tasks/none")
            statuses.append(response.status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(20):  # more than the pool holds: some queue inside httpcore
                tg.start_soon(get)
        assert len(statuses) == 20
        assert len(pool.connections) <= keepalive
        # An idle connection is replaced for a request to another origin when the pool is full.
        other = server.base_url.replace("127.0.0.1", "localhost")
        for _ in range(2):
            await http.get(other + "/api/v1/id-photo/tasks/none")
        assert len(pool.connections) <= max_connections
        assert isinstance(pool, httpcore.AsyncConnectionPool)
