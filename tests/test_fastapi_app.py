"""The FastAPI example (docs/examples/fastapi_app.py) over httpx, against the local server."""

from __future__ import annotations

import importlib.util
import io
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest
from PIL import Image

from idphoto_async import TaskState
from idphoto_async.testing import LocalServer

pytest.importorskip("fastapi")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "fastapi_app.py"
PORTRAIT = (ROOT / "samples" / "01-head-and-shoulders.jpg").read_bytes()


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_app", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fastapi_app = _load_example()


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(qps=None, processing_time="fixed:0.05") as running:
        yield running


@pytest.fixture(scope="module")
def failing_server() -> Iterator[LocalServer]:
    with LocalServer(
        qps=None, processing_time="0", fail_rate=1.0, fail_states=[-7], seed=1
    ) as running:
        yield running


@asynccontextmanager
async def app_client(base_url: str, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The example app with its lifespan running, behind an httpx client (no sockets)."""
    app = fastapi_app.create_app(api_key="test-key", base_url=base_url, **settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            yield http


def upload(**fields: str) -> dict[str, Any]:
    return {"files": {"file": ("me.jpg", PORTRAIT, "image/jpeg")}, "data": fields}


@pytest.mark.anyio
async def test_upload_returns_a_photo_of_the_requested_size(server: LocalServer) -> None:
    async with app_client(server.base_url) as http:
        jpg = await http.post(
            "/id-photo", **upload(size="295x413", format="jpg", bg_color="4A90D9")
        )
        png = await http.post("/id-photo", **upload(size="300x400"))
    assert jpg.status_code == 200, jpg.text
    assert jpg.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(jpg.content)).size == (295, 413)
    assert png.headers["content-type"] == "image/png"
    photo = Image.open(io.BytesIO(png.content))
    assert (photo.size, photo.mode) == ((300, 400), "RGBA")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"size": "50x50"}, "size", "100"),
        ({"format": "png", "bg_color": "FFFFFF"}, "bg_color", "jpg"),
        ({"bg_color": "blue", "format": "jpg"}, "bg_color", "RRGGBB"),
    ],
)
async def test_invalid_options_are_422_with_the_sdk_message_and_cost_nothing(
    server: LocalServer, fields: dict[str, str], field: str, words: str
) -> None:
    before = server.stats()["requests_total"]
    async with app_client(server.base_url) as http:
        response = await http.post("/id-photo", **upload(**fields))
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "ValidationError"
    assert body["field"] == field
    assert words in body["detail"]
    assert server.stats()["requests_total"] == before  # rejected before any API request


@pytest.mark.anyio
async def test_a_file_that_is_not_an_image_is_422(server: LocalServer) -> None:
    async with app_client(server.base_url) as http:
        response = await http.post(
            "/id-photo", files={"file": ("notes.txt", b"hello, not a photo", "text/plain")}
        )
    assert response.status_code == 422
    assert response.json()["error"] == "ValidationError"


@pytest.mark.anyio
async def test_a_failed_task_is_422_with_state_and_reason(failing_server: LocalServer) -> None:
    async with app_client(failing_server.base_url) as http:
        response = await http.post("/id-photo", **upload(size="295x413"))
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "TaskFailedError"
    assert body["state"] == -7
    assert body["state_name"] == "INVALID_IMAGE"
    assert body["reason"] == TaskState(-7).description
    assert body["retryable"] is False
    assert body["task_id"]


@pytest.mark.anyio
async def test_excess_uploads_get_503_with_retry_after_instead_of_hanging(
    server: LocalServer,
) -> None:
    """20 uploads at once, 1 QPS, 0.5 s queue timeout: the excess is shed within moments."""
    before = server.stats()["creates"]
    statuses: list[int] = []
    retry_afters: list[int] = []
    shed_after: list[float] = []

    async with app_client(server.base_url, qps=1.0, queue_timeout=0.5) as http:

        async def one() -> None:
            start = anyio.current_time()
            response = await http.post("/id-photo", **upload(size="295x413", format="jpg"))
            statuses.append(response.status_code)
            if response.status_code == 503:
                shed_after.append(anyio.current_time() - start)
                retry_afters.append(int(response.headers["Retry-After"]))
                assert response.json()["error"] == "LimiterTimeoutError"

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(one)

    ok = statuses.count(200)
    assert ok + statuses.count(503) == 20, statuses
    assert 1 <= ok <= 3, statuses  # about one slot per second within the 0.5 s timeout
    assert all(seconds >= 1 for seconds in retry_afters)
    assert max(shed_after) < 2.0  # refused at once (estimated wait > timeout), not hung
    assert server.stats()["creates"] - before == ok  # shed requests never reached the API


@pytest.mark.anyio
async def test_async_task_flow(server: LocalServer) -> None:
    async with app_client(server.base_url) as http:
        created = await http.post("/id-photo/tasks", **upload(size="413x531", format="jpg"))
        assert created.status_code == 202, created.text
        body = created.json()
        assert body["status_url"] == f"/id-photo/tasks/{body['task_id']}"
        with anyio.fail_after(15):
            while True:
                polled = await http.get(body["status_url"])
                if polled.status_code != 202:
                    break
                assert polled.json()["state"] in {s.name for s in TaskState if s.is_processing}
                await anyio.sleep(int(polled.headers["Retry-After"]) / 10)
        assert polled.status_code == 200, polled.text
        assert Image.open(io.BytesIO(polled.content)).size == (413, 531)

        missing = await http.get("/id-photo/tasks/no-such-task")
        assert missing.status_code == 404
        assert missing.json()["error"] == "NotFoundError"


@pytest.mark.anyio
async def test_a_failed_async_task_polls_as_422(failing_server: LocalServer) -> None:
    async with app_client(failing_server.base_url) as http:
        created = await http.post("/id-photo/tasks", **upload())
        task_id = created.json()["task_id"]
        with anyio.fail_after(15):
            polled = await http.get(f"/id-photo/tasks/{task_id}")
            while polled.status_code == 202:
                await anyio.sleep(0.05)
                polled = await http.get(f"/id-photo/tasks/{task_id}")
    assert polled.status_code == 422
    assert polled.json()["state"] == -7
    assert polled.json()["task_id"] == task_id
