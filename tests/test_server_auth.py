"""The local server's keys, as the real service: no key is 401, tasks belong to their key."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from _server_support import KEY_HEADERS, create, query

from idphoto_async.engine import local_engine_available
from idphoto_async.testing import LocalServer, local_server

pytestmark = pytest.mark.anyio

ONE, TWO = {"X-API-KEY": "key-one-secret"}, {"X-API-KEY": "key-two-secret"}


@pytest.fixture(scope="module")
def open_server() -> Iterator[LocalServer]:
    with LocalServer(qps=None) as srv:
        yield srv


@pytest.fixture(scope="module")
def keyed() -> Iterator[LocalServer]:
    with LocalServer(qps=None, api_keys=["key-one-secret", "key-two-secret"]) as srv:
        yield srv


@pytest.fixture
async def anonymous(open_server: LocalServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=open_server.base_url) as c:
        yield c


async def test_no_key_is_401_even_when_any_key_is_accepted(
    anonymous: httpx.AsyncClient,
) -> None:
    created = await create(anonymous, sync="1")
    assert created.status_code == 401
    assert created.json()["status"] == 401
    assert "X-API-KEY" in created.json()["message"]
    assert (await query(anonymous, "some-task")).status_code == 401
    empty = await create(anonymous, headers={"X-API-KEY": ""})
    assert empty.status_code == 401


async def test_any_key_is_accepted_without_configured_keys(open_server: LocalServer) -> None:
    async with httpx.AsyncClient(base_url=open_server.base_url, headers=KEY_HEADERS) as c:
        task_id = (await create(c)).json()["data"]["task_id"]
        other = await query(c, task_id, headers={"X-API-KEY": "another-key"})
    assert other.status_code == 200  # no keys configured: tasks are not owned


async def test_a_task_belongs_to_the_key_that_made_it(keyed: LocalServer) -> None:
    async with httpx.AsyncClient(base_url=keyed.base_url) as c:
        task_id = (await create(c, headers=ONE)).json()["data"]["task_id"]
        mine = await query(c, task_id, headers=ONE)
        theirs = await query(c, task_id, headers=TWO)
        wrong = await query(c, task_id, headers={"X-API-KEY": "not-a-key"})
    assert mine.status_code == 200
    assert theirs.status_code == 404
    assert theirs.json()["message"] == (await _unknown(keyed)).json()["message"]
    assert wrong.status_code == 401


async def _unknown(server: LocalServer) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.base_url) as c:
        return await query(c, "no-such-task", headers=TWO)


@pytest.mark.parametrize("path", ["/_local/advance", "/_local/reset"])
async def test_control_endpoints_need_a_valid_key(keyed: LocalServer, path: str) -> None:
    body = {"seconds": 0}
    async with httpx.AsyncClient(base_url=keyed.base_url) as c:
        before = keyed.stats()["clock_offset"]
        assert (await c.post(path, json=body)).status_code == 401
        assert (await c.post(path, json=body, headers={"X-API-KEY": "nope"})).status_code == 401
        assert keyed.stats()["clock_offset"] == before
        assert (await c.post(path, json=body, headers=ONE)).status_code == 200


async def test_an_unauthenticated_advance_expires_nothing(keyed: LocalServer) -> None:
    async with httpx.AsyncClient(base_url=keyed.base_url) as c:
        task_id = (await create(c, headers=ONE)).json()["data"]["task_id"]
        refused = await c.post("/_local/advance", json={"seconds": 7200})
        assert refused.status_code == 401
        assert (await query(c, task_id, headers=ONE)).status_code == 200


async def test_control_endpoints_without_configured_keys_need_some_key(
    open_server: LocalServer, anonymous: httpx.AsyncClient
) -> None:
    assert (await anonymous.post("/_local/reset")).status_code == 401
    assert (await anonymous.post("/_local/reset", headers=KEY_HEADERS)).status_code == 200


async def test_local_server_runs_and_names_the_default_engine(
    caplog: pytest.LogCaptureFixture,
) -> None:
    expected = "local" if local_engine_available() else "basic"
    with caplog.at_level(logging.INFO, logger="idphoto_async.testing"):
        async with local_server(qps=None) as base_url, httpx.AsyncClient() as c:
            stats = (await c.get(base_url + "/_local/stats")).json()["data"]
    assert stats["engine"] == expected
    assert f"runs the {expected} engine" in caplog.text


async def test_local_server_keeps_an_engine_asked_for() -> None:
    async with local_server(qps=None, engine="basic") as base_url, httpx.AsyncClient() as c:
        assert (await c.get(base_url + "/_local/stats")).json()["data"]["engine"] == "basic"
