"""Every reachable task state, timeouts, the upload limit's streaming path, and expiry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest
from _server_support import (
    KEY_HEADERS,
    PNG,
    BlockingEngine,
    FailingEngine,
    create,
    image_bytes,
    query,
    wait_done,
    wait_until,
)

from idphoto_async._constants import API_PATH
from idphoto_async.testing import LocalServer

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(qps=None, max_url_bytes=1000, max_upload_bytes=3000) as srv:
        yield srv


@pytest.fixture
async def client(server: LocalServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=20, headers=KEY_HEADERS) as c:
        yield c


async def _result_url(client: httpx.AsyncClient, image: bytes = PNG) -> str:
    data = (await create(client, image=image, sync="1")).json()["data"]
    assert data["state"] == 1
    return str(data["image"])


async def test_not_an_image_is_state_minus_7(client: httpx.AsyncClient) -> None:
    data = (await create(client, image=b"this is not an image", sync="1")).json()["data"]
    assert data["state"] == -7
    assert "image" not in data
    assert data["completed_at"].isdigit()


async def test_image_over_4096_pixels_is_minus_7(client: httpx.AsyncClient) -> None:
    big = image_bytes((4097, 8), "PNG")
    response = await create(client, image=big, sync="1")
    assert response.json()["data"]["state"] == -7
    assert "4096" in response.json()["message"]


async def test_image_url_is_fetched(client: httpx.AsyncClient) -> None:
    url = await _result_url(client)
    data = (await create(client, image=None, image_url=url, sync="1")).json()["data"]
    assert data["state"] == 1


async def test_image_url_that_fails_is_minus_3(client: httpx.AsyncClient) -> None:
    missing = str(client.base_url.join("/results/missing.png"))
    data = (await create(client, image=None, image_url=missing, sync="1")).json()["data"]
    assert data["state"] == -3


async def test_unreachable_image_url_is_minus_3(client: httpx.AsyncClient) -> None:
    url = "http://127.0.0.1:1/a.png"
    data = (await create(client, image=None, image_url=url, sync="1")).json()["data"]
    assert data["state"] == -3


async def test_image_url_over_the_limit_is_minus_5(client: httpx.AsyncClient) -> None:
    url = await _result_url(client, image_bytes((60, 40), "PNG"))  # small upload
    big = (await create(client, image=None, image_url=url, sync="1", size="400x400")).json()
    big_url = big["data"]["image"]
    assert len((await client.get(big_url)).content) > 1000
    data = (await create(client, image=None, image_url=big_url, sync="1")).json()["data"]
    assert data["state"] == -5


async def test_file_part_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    response = await create(client, image=PNG + b"\0" * 3001)
    assert response.status_code == 413


async def test_streamed_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image_file"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    async def chunks() -> AsyncIterator[bytes]:
        yield head
        for _ in range(40):  # 2.5 MB, chunked: no Content-Length to reject it early
            yield b"\0" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    response = await client.post(
        API_PATH,
        content=chunks(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 413


async def test_engine_crash_is_minus_1() -> None:
    async with (
        LocalServer(engine=FailingEngine(None), qps=None) as srv,
        httpx.AsyncClient(base_url=srv.base_url, headers=KEY_HEADERS) as c,
    ):
        data = (await create(c, sync="1")).json()["data"]
        assert data["state"] == -1


async def test_engine_without_face_is_minus_14() -> None:
    async with (
        LocalServer(engine=FailingEngine(-14), qps=None) as srv,
        httpx.AsyncClient(base_url=srv.base_url, headers=KEY_HEADERS) as c,
    ):
        response = await create(c, sync="1")
        assert response.json()["data"]["state"] == -14
        assert response.json()["message"] == "no face found"
        assert srv.stats()["outcomes"] == {"-14": 1}
        assert srv.stats()["successes"] == 0


async def test_queued_then_processing_then_done() -> None:
    engine = BlockingEngine()
    async with (
        LocalServer(engine=engine, workers=1, qps=None, processing_time="fixed:0.3") as srv,
        httpx.AsyncClient(base_url=srv.base_url, headers=KEY_HEADERS) as c,
    ):
        first = (await create(c)).json()["data"]["task_id"]
        await wait_until(engine.entered.is_set)
        second = (await create(c)).json()["data"]["task_id"]
        assert (await query(c, second)).json()["data"]["state"] == 0  # waiting for a worker
        busy = (await query(c, first)).json()["data"]
        assert busy["state"] == 3
        assert busy["processed_at"].isdigit()
        assert "completed_at" not in busy
        engine.release.set()
        seen: list[tuple[int, int]] = []
        while not seen or seen[-1][0] != 1:
            data = (await query(c, first)).json()["data"]
            seen.append((data["state"], data["progress"]))
            assert data["state"] >= 1
        states = [s for s, _ in seen]
        progress = [p for _, p in seen]
        assert progress == sorted(progress)
        assert {4, 6, 5} <= set(states)
        assert states.index(4) < states.index(6) < states.index(5) < states.index(1)
        assert (await wait_done(c, second))["state"] == 1


async def test_past_max_processing_is_minus_8() -> None:
    async with (
        LocalServer(qps=None, processing_time="fixed:5", max_processing=0.2) as srv,
        httpx.AsyncClient(base_url=srv.base_url, headers=KEY_HEADERS) as c,
    ):
        data = (await create(c, sync="1")).json()["data"]
        assert data["state"] == -8


async def test_advancing_the_clock_times_a_task_out() -> None:
    async with (
        LocalServer(qps=None, processing_time="fixed:0.3") as srv,
        httpx.AsyncClient(base_url=srv.base_url, headers=KEY_HEADERS) as c,
    ):
        task_id = (await create(c)).json()["data"]["task_id"]
        while (await query(c, task_id)).json()["data"]["state"] < 2:  # noqa: ASYNC110
            await anyio.sleep(0.01)
        srv.advance(181)
        assert (await wait_done(c, task_id))["state"] == -8


async def test_results_and_tasks_expire_after_the_ttl() -> None:
    async with (
        LocalServer(qps=None) as srv,
        httpx.AsyncClient(base_url=srv.base_url, headers=KEY_HEADERS) as c,
    ):
        data = (await create(c, sync="1")).json()["data"]
        srv.advance(3590)
        assert (await c.get(data["image"])).status_code == 200
        assert (await query(c, data["task_id"])).status_code == 200
        advanced = await c.post("/_local/advance", json={"seconds": 11})
        assert advanced.json()["data"]["offset"] == 3601
        gone = await c.get(data["image"])
        assert gone.status_code == 404
        assert gone.json()["status"] == 404
        assert (await query(c, data["task_id"])).status_code == 404
        assert srv.stats()["tasks_by_state"] == {}


async def test_custom_result_ttl() -> None:
    async with (
        LocalServer(qps=None, result_ttl=10) as srv,
        httpx.AsyncClient(base_url=srv.base_url, headers=KEY_HEADERS) as c,
    ):
        data = (await create(c, sync="1")).json()["data"]
        srv.advance(10)
        assert (await c.get(data["image"])).status_code == 404


async def test_advance_rejects_bad_bodies(client: httpx.AsyncClient) -> None:
    assert (await client.post("/_local/advance", json={"seconds": -1})).status_code == 400
    assert (await client.post("/_local/advance", content=b"nope")).status_code == 400


async def test_many_queued_tasks_do_not_block_the_server() -> None:
    engine = BlockingEngine()
    async with (
        LocalServer(engine=engine, workers=1, qps=None) as srv,
        httpx.AsyncClient(base_url=srv.base_url, headers=KEY_HEADERS) as c,
    ):
        ids = [(await create(c)).json()["data"]["task_id"] for _ in range(300)]
        with anyio.fail_after(1):
            assert (await query(c, ids[-1])).json()["data"]["state"] == 0
            assert srv.stats()["tasks_by_state"]["0"] >= 299
        engine.release.set()
        await wait_until(lambda: srv.stats()["successes"] == 300)
