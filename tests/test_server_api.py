"""Conformance of the local server with the seed: parameters, status codes, modes, results."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from _server_support import KEY_HEADERS, PNG, create, image_bytes, query, wait_done
from PIL import Image

from idphoto_async._constants import API_PATH
from idphoto_async.testing import LocalServer

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(qps=None, max_upload_bytes=20 * 1024 * 1024) as srv:
        yield srv


@pytest.fixture
async def client(server: LocalServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=20, headers=KEY_HEADERS) as c:
        yield c


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# --- 400: one test per parameter rule -------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"size": "300X400"}, "lowercase x"),
        ({"size": "300*400"}, "size"),
        ({"size": "300x"}, "size"),
        ({"size": "99x400"}, "between 100 and 2000"),
        ({"size": "300x2001"}, "between 100 and 2000"),
        ({"format": "gif"}, "format"),
        ({"format": "PNG"}, "format"),
        ({"format": "jpg", "bg_color": "#FFFFFF"}, "bg_color"),
        ({"format": "jpg", "bg_color": "GGGGGG"}, "bg_color"),
        ({"bg_color": "FFFFFF"}, "format=jpg"),
        ({"format": "png", "bg_color": "FFFFFF"}, "format=jpg"),
        ({"sync": "2"}, "sync"),
        ({"sync": "yes"}, "sync"),
        ({"return_type": "3"}, "return_type"),
        ({"return_type": "url"}, "return_type"),
    ],
)
async def test_invalid_parameter_is_400_naming_it(
    client: httpx.AsyncClient, fields: dict[str, str], named: str
) -> None:
    response = await create(client, **fields)
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == 400
    assert named in body["message"]
    assert body["data"] == {}


async def test_both_image_sources_is_400(client: httpx.AsyncClient) -> None:
    response = await create(client, image_url="http://127.0.0.1:1/a.png")
    assert response.status_code == 400
    assert "mutually exclusive" in response.json()["message"]


async def test_no_image_source_is_400(client: httpx.AsyncClient) -> None:
    response = await create(client, image=None, sync="1")
    assert response.status_code == 400
    assert "image_file or image_url" in response.json()["message"]


async def test_image_url_must_be_http(client: httpx.AsyncClient) -> None:
    response = await create(client, image=None, image_url="file:///etc/passwd")
    assert response.status_code == 400
    assert "image_url" in response.json()["message"]


async def test_body_that_is_not_a_form_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(API_PATH, json={"image_url": "http://x/a.png"})
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["message"]


@pytest.mark.parametrize("size", ["100x100", "2000x2000", "100x2000"])
async def test_size_bounds_are_inclusive(client: httpx.AsyncClient, size: str) -> None:
    response = await create(client, size=size, sync="1", return_type="2")
    data = response.json()["data"]
    assert data["state"] == 1
    width, height = (int(v) for v in size.split("x"))
    assert _decode(base64.b64decode(data["image"])).size == (width, height)


# --- 404, 405, 413 -----------------------------------------------------------------------


async def test_unknown_task_is_404(client: httpx.AsyncClient) -> None:
    response = await query(client, "no-such-task")
    assert response.status_code == 404
    assert response.json()["status"] == 404
    assert "task_id" in response.json()["message"]


async def test_unknown_path_is_404_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/tasks/visual/nothing/here/at/all")
    assert response.status_code == 404
    assert response.json() == {
        "status": 404,
        "message": "not found: /api/tasks/visual/nothing/here/at/all",
        "data": {},
    }


async def test_wrong_method_keeps_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get(API_PATH)
    assert response.status_code == 405
    assert response.json()["status"] == 405


async def test_upload_over_20_mb_is_413(client: httpx.AsyncClient, server: LocalServer) -> None:
    big = PNG + b"\0" * (20 * 1024 * 1024 + 1 - len(PNG))
    response = await create(client, image=big)
    assert response.status_code == 413
    assert response.json()["status"] == 413
    assert "20 MB" in response.json()["message"]


async def test_upload_of_exactly_20_mb_is_accepted(client: httpx.AsyncClient) -> None:
    exact = PNG + b"\0" * (20 * 1024 * 1024 - len(PNG))
    response = await create(client, image=exact)
    assert response.status_code == 200


# --- modes and return types ----------------------------------------------------------------


async def test_async_mode_returns_only_task_id(client: httpx.AsyncClient) -> None:
    response = await create(client, sync="0")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == 200
    assert body["message"] == "success"
    assert set(body["data"]) == {"task_id"}
    data = await wait_done(client, body["data"]["task_id"])
    assert data["state"] == 1
    assert data["progress"] == 100


async def test_sync_mode_returns_full_data(client: httpx.AsyncClient, server: LocalServer) -> None:
    response = await create(client, sync="1", size="300x400", format="jpg", bg_color="00FF00")
    body = response.json()
    assert response.status_code == 200
    data = body["data"]
    assert data["state"] == 1
    assert data["progress"] == 100
    for field in ("created_at", "processed_at", "completed_at"):
        assert data[field].isdigit()
    assert int(data["created_at"]) <= int(data["processed_at"]) <= int(data["completed_at"])
    assert data["image"].startswith(server.base_url + "/results/")
    assert data["image"].endswith(".jpg")


async def test_return_type_1_url_downloads_the_image(client: httpx.AsyncClient) -> None:
    data = (await create(client, sync="1", size="200x250", return_type="1")).json()["data"]
    download = await client.get(data["image"])
    assert download.status_code == 200
    assert download.headers["content-type"] == "image/png"
    image = _decode(download.content)
    assert (image.format, image.size, image.mode) == ("PNG", (200, 250), "RGBA")


async def test_return_type_2_is_base64(client: httpx.AsyncClient) -> None:
    data = (await create(client, sync="1", format="jpg", return_type="2")).json()["data"]
    image = _decode(base64.b64decode(data["image"], validate=True))
    assert (image.format, image.size) == ("JPEG", (160, 120))


async def test_default_size_is_the_original(client: httpx.AsyncClient) -> None:
    jpeg = image_bytes((333, 222), "JPEG")
    data = (await create(client, image=jpeg, sync="1", return_type="2")).json()["data"]
    assert _decode(base64.b64decode(data["image"])).size == (333, 222)


async def test_result_url_spelling_follows_the_request(server: LocalServer) -> None:
    base = server.base_url.replace("127.0.0.1", "localhost")
    async with httpx.AsyncClient(base_url=base, headers=KEY_HEADERS) as c:
        data = (await create(c, sync="1")).json()["data"]
        assert data["image"].startswith(base + "/results/")
        assert (await c.get(data["image"])).status_code == 200


async def test_unknown_result_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/results/nothing.png")
    assert response.status_code == 404
    assert response.json()["status"] == 404


async def test_stats_count_creates_successes_downloads(
    client: httpx.AsyncClient, server: LocalServer
) -> None:
    server.reset_stats()
    data = (await create(client, sync="1")).json()["data"]
    await client.get(data["image"])
    await query(client, data["task_id"])
    stats = server.stats()
    assert stats["engine"] == "basic"
    assert stats["requests"] == {"create": 1, "download": 1, "query": 1}
    # When the first and last API requests of each kind arrived (server's monotonic clock).
    spans = stats["arrival_span"]
    assert set(spans) == {"create", "query"}
    assert spans["create"]["first"] == spans["create"]["last"] <= spans["query"]["first"]
    assert spans["query"]["last"] <= time.monotonic() + stats["clock_offset"]
    assert (stats["creates"], stats["successes"], stats["downloads"]) == (1, 1, 1)
    assert stats["tasks_by_state"]["1"] >= 1
    over_http = (await client.get("/_local/stats")).json()["data"]
    assert over_http["creates"] == 1
    assert (await client.post("/_local/reset")).status_code == 200
    assert server.stats()["creates"] == 0
