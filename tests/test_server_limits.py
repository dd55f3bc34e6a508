"""Rate limit (429, Retry-After, knobs, per-key windows, peak stat) and authentication (401)."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx
import pytest
from _server_support import KEY_HEADERS, create, query

from idphoto_async.testing import LocalServer

pytestmark = pytest.mark.anyio


async def _burst(
    client: httpx.AsyncClient, n: int, headers: dict[str, str] | None = None
) -> list[httpx.Response]:
    responses: list[httpx.Response] = []

    async def one() -> None:
        responses.append(await query(client, "no-such-task", headers=headers))

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    return responses


@pytest.fixture(scope="module")
def limited() -> Iterator[LocalServer]:
    with LocalServer(qps=2) as srv:
        yield srv


async def test_burst_gets_429_beyond_the_qps(limited: LocalServer) -> None:
    limited.advance(5)  # a fresh window
    limited.reset_stats()
    async with httpx.AsyncClient(base_url=limited.base_url, headers=KEY_HEADERS) as c:
        responses = await _burst(c, 6)
    codes = sorted(r.status_code for r in responses)
    assert codes == [404, 404, 429, 429, 429, 429]
    refused = [r for r in responses if r.status_code == 429]
    assert all(r.json()["status"] == 429 for r in refused)
    assert all(r.headers["retry-after"] == "1" for r in refused)
    stats = limited.stats()
    assert stats["rate_limited"] == 4
    assert stats["responses_429"] == 4
    assert list(stats["peak_window"].values()) == [6]  # one key, by its label
    assert stats["peak_requests_per_second"] == 6


async def test_downloads_and_admin_are_not_limited(limited: LocalServer) -> None:
    limited.advance(5)
    async with httpx.AsyncClient(base_url=limited.base_url, headers=KEY_HEADERS) as c:
        data = (await create(c, sync="1")).json()["data"]
        for _ in range(5):
            assert (await c.get(data["image"])).status_code == 200
            assert (await c.get("/_local/stats")).status_code == 200


async def test_refused_requests_count_in_the_window(limited: LocalServer) -> None:
    limited.advance(5)
    async with httpx.AsyncClient(base_url=limited.base_url, headers=KEY_HEADERS) as c:
        assert [r.status_code for r in await _burst(c, 2)] == [404, 404]
        limited.advance(0.6)
        assert [r.status_code for r in await _burst(c, 2)] == [429, 429]
        limited.advance(0.5)  # the two accepted ones left the window, the refused did not
        assert (await query(c, "x")).status_code == 429
        limited.advance(1.0)
        assert (await query(c, "x")).status_code == 404


async def test_not_counting_refused_requests() -> None:
    async with (
        LocalServer(qps=2, count_refused=False) as srv,
        httpx.AsyncClient(base_url=srv.base_url, headers=KEY_HEADERS) as c,
    ):
        assert [r.status_code for r in await _burst(c, 2)] == [404, 404]
        srv.advance(0.6)
        assert [r.status_code for r in await _burst(c, 2)] == [429, 429]
        srv.advance(0.5)
        assert (await query(c, "x")).status_code == 404


async def test_no_retry_after_when_disabled() -> None:
    async with (
        LocalServer(qps=1, send_retry_after=False) as srv,
        httpx.AsyncClient(base_url=srv.base_url, headers=KEY_HEADERS) as c,
    ):
        responses = await _burst(c, 3)
        assert any(r.status_code == 429 for r in responses)
        assert all("retry-after" not in r.headers for r in responses)


async def test_rate_scope_create_leaves_queries_unlimited() -> None:
    async with (
        LocalServer(qps=1, rate_scope="create") as srv,
        httpx.AsyncClient(base_url=srv.base_url, headers=KEY_HEADERS) as c,
    ):
        assert {r.status_code for r in await _burst(c, 5)} == {404}
        assert (await create(c)).status_code == 200
        assert (await create(c)).status_code == 429


async def test_unlimited_when_qps_is_zero() -> None:
    async with (
        LocalServer(qps=0) as srv,
        httpx.AsyncClient(base_url=srv.base_url, headers=KEY_HEADERS) as c,
    ):
        assert {r.status_code for r in await _burst(c, 10)} == {404}


@pytest.fixture(scope="module")
def keyed() -> Iterator[LocalServer]:
    with LocalServer(qps=2, api_keys=["key-one-secret", "key-two-secret"]) as srv:
        yield srv


async def test_missing_key_is_401(keyed: LocalServer) -> None:
    async with httpx.AsyncClient(base_url=keyed.base_url) as c:
        response = await create(c)
        assert response.status_code == 401
        assert "X-API-KEY" in response.json()["message"]
        assert (await query(c, "x")).status_code == 401


async def test_wrong_key_is_401_and_never_echoed(keyed: LocalServer) -> None:
    headers = {"X-API-KEY": "wrong-secret-value"}
    async with httpx.AsyncClient(base_url=keyed.base_url, headers=headers) as c:
        response = await create(c)
        assert response.status_code == 401
        assert response.json()["status"] == 401
        assert "wrong-secret-value" not in response.text


async def test_each_key_has_its_own_window(keyed: LocalServer) -> None:
    keyed.advance(5)
    async with httpx.AsyncClient(base_url=keyed.base_url) as c:
        one = await _burst(c, 3, headers={"X-API-KEY": "key-one-secret"})
        two = await _burst(c, 3, headers={"X-API-KEY": "key-two-secret"})
    assert sorted(r.status_code for r in one) == [404, 404, 429]
    assert sorted(r.status_code for r in two) == [404, 404, 429]
    stats = keyed.stats()
    assert len(stats["peak_window"]) == 2
    assert "secret" not in str(stats)


async def test_right_key_creates(keyed: LocalServer) -> None:
    keyed.advance(5)
    headers = {"X-API-KEY": "key-two-secret"}
    async with httpx.AsyncClient(base_url=keyed.base_url, headers=headers) as c:
        data = (await create(c, sync="1")).json()["data"]
        assert data["state"] == 1
    async with httpx.AsyncClient() as anonymous:  # result URLs need no key
        assert (await anonymous.get(data["image"])).status_code == 200
