"""Each fault knob, with a seed: what the client sees and what the stats count."""

from __future__ import annotations

import time

import httpx
import pytest
from _server_support import KEY_HEADERS, create, query, wait_done, wait_until

from idphoto_async.server import ServerConfig
from idphoto_async.testing import LocalServer

pytestmark = pytest.mark.anyio


async def test_error_before_the_task_is_made() -> None:
    async with (
        LocalServer(qps=None, error_rate=1, seed=1) as srv,
        httpx.AsyncClient(base_url=srv.base_url, headers=KEY_HEADERS) as c,
    ):
        response = await create(c)
        assert response.status_code == 500
        assert response.json()["status"] == 500
        stats = srv.stats()
        assert (stats["creates"], stats["faults"]) == (0, {"create_error": 1})


async def test_error_after_the_task_is_made_still_charges() -> None:
    async with (
        LocalServer(qps=None, create_error_after_rate=1, seed=1) as srv,
        httpx.AsyncClient(base_url=srv.base_url, headers=KEY_HEADERS) as c,
    ):
        assert (await create(c)).status_code == 500
        await wait_until(lambda: srv.stats()["successes"] == 1)
        stats = srv.stats()
        assert (stats["creates"], stats["faults"]) == (1, {"create_error_after": 1})


async def test_error_on_query() -> None:
    async with (
        LocalServer(qps=None, query_error_rate=1, seed=1) as srv,
        httpx.AsyncClient(base_url=srv.base_url, headers=KEY_HEADERS) as c,
    ):
        task_id = (await create(c)).json()["data"]["task_id"]
        response = await query(c, task_id)
        assert response.status_code == 500
        assert srv.stats()["faults"] == {"query_error": 1}


async def test_dropped_connection_is_a_protocol_error() -> None:
    async with (
        LocalServer(qps=None, drop_rate=1, seed=1) as srv,
        httpx.AsyncClient(base_url=srv.base_url, headers=KEY_HEADERS) as c,
    ):
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await create(c)
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await query(c, "anything")
        stats = srv.stats()
        assert (stats["creates"], stats["faults"]) == (0, {"drop": 2})


async def test_slow_answers() -> None:
    async with (
        LocalServer(qps=None, slow_rate=1, slow_seconds=0.3, seed=1) as srv,
        httpx.AsyncClient(base_url=srv.base_url, headers=KEY_HEADERS) as c,
    ):
        start = time.monotonic()
        assert (await query(c, "x")).status_code == 404
        assert time.monotonic() - start >= 0.3
        assert srv.stats()["faults"] == {"slow": 1}


async def test_spurious_429() -> None:
    async with (
        LocalServer(qps=None, spurious_429_rate=1, seed=1) as srv,
        httpx.AsyncClient(base_url=srv.base_url, headers=KEY_HEADERS) as c,
    ):
        response = await create(c)
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"
        stats = srv.stats()
        assert (stats["rate_limited"], stats["responses_429"]) == (0, 1)
        assert stats["faults"] == {"spurious_429": 1}


async def test_tasks_failing_with_a_chosen_state() -> None:
    async with (
        LocalServer(qps=None, fail_rate=1, fail_states=[-13], seed=1) as srv,
        httpx.AsyncClient(base_url=srv.base_url, headers=KEY_HEADERS) as c,
    ):
        data = (await create(c, sync="1")).json()["data"]
        assert data["state"] == -13
        stats = srv.stats()
        assert (stats["successes"], stats["faults"]) == (0, {"task_failure": 1})


async def test_task_failures_use_the_default_states() -> None:
    async with (
        LocalServer(qps=None, fail_rate=1, seed=3) as srv,
        httpx.AsyncClient(base_url=srv.base_url, headers=KEY_HEADERS) as c,
    ):
        ids = [(await create(c)).json()["data"]["task_id"] for _ in range(12)]
        states = {(await wait_done(c, task_id))["state"] for task_id in ids}
        assert states <= {-1, -2, -8, -13}
        assert len(states) > 1


async def test_truncated_download() -> None:
    async with (
        LocalServer(qps=None, truncate_rate=1, seed=1) as srv,
        httpx.AsyncClient(base_url=srv.base_url, headers=KEY_HEADERS) as c,
    ):
        data = (await create(c, sync="1")).json()["data"]
        with pytest.raises(httpx.RemoteProtocolError):
            await c.get(data["image"])
        assert srv.stats()["faults"] == {"truncate": 1}


async def test_same_seed_same_faults() -> None:
    config = ServerConfig(qps=None, processing_time="0", engine="basic", seed=7)
    sequences = []
    for _ in range(2):
        async with (
            LocalServer(config, query_error_rate=0.5) as srv,
            httpx.AsyncClient(base_url=srv.base_url, headers=KEY_HEADERS) as c,
        ):
            sequences.append([(await query(c, "x")).status_code for _ in range(16)])
            assert srv.stats()["faults"]["query_error"] == sequences[-1].count(500)
    assert sequences[0] == sequences[1]
    assert set(sequences[0]) == {404, 500}


def test_rates_must_be_probabilities() -> None:
    with pytest.raises(ValueError, match="drop_rate"):
        ServerConfig(drop_rate=1.5)
    with pytest.raises(ValueError, match="negative"):
        ServerConfig(fail_states=[1])
