"""The SDK against the real local server over loopback (uvicorn), on asyncio and trio."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import idphoto_async as ia
from idphoto_async import AsyncIDPhotoClient, PollSchedule, RetryPolicy, TokenBucketLimiter
from idphoto_async.testing import LocalServer, LocalServerProcess

pytestmark = pytest.mark.anyio

BACKEND: ia.HTTPBackend = "httpx"
"""The pool of the clients made here (each test runs on both: see ``conftest.py``)."""


@pytest.fixture(autouse=True)
def _each_http_backend(http_backend: ia.HTTPBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.BACKEND", http_backend)


def portrait(size: tuple[int, int] = (240, 320)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (180, 140, 120)).save(buf, "JPEG")
    return buf.getvalue()


def fast_schedule() -> PollSchedule:
    return PollSchedule(initial_guess=0.02, min_delay=0.01, max_delay=0.05)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(qps=None, processing_time="fixed:0.05") as srv:
        yield srv


def client_for(srv: LocalServer | LocalServerProcess, **kwargs: Any) -> AsyncIDPhotoClient:
    kwargs.setdefault("qps", 1000.0)
    kwargs.setdefault("poll_schedule", fast_schedule())
    kwargs.setdefault("http_backend", BACKEND)
    return AsyncIDPhotoClient(None, srv.base_url, **kwargs)


@pytest.mark.parametrize("sync", [False, True])
@pytest.mark.parametrize("return_type", ["url", "base64"])
async def test_generate_in_both_modes_and_return_types(
    server: LocalServer, tmp_path: Path, sync: bool, return_type: str
) -> None:
    src = tmp_path / "in.jpg"
    src.write_bytes(portrait())
    async with client_for(server) as client:
        out = await client.generate(
            src,
            tmp_path / "out.jpg",
            sync=sync,
            size="295x413",
            format="jpg",
            bg_color="3366FF",
            return_type=return_type,
        )
    with Image.open(out) as image:
        assert image.format == "JPEG"
        assert image.size == (295, 413)


async def test_create_get_wait_download_step_by_step(server: LocalServer, tmp_path: Path) -> None:
    async with client_for(server) as client:
        task = await client.create(portrait(), size=(300, 400))
        first = await client.get(task.task_id)
        assert first.task_id == task.task_id
        result = await client.wait(task)
        assert result.is_done and result.is_url and result.progress == 100
        assert result.created_at is not None and result.completed_at is not None
        path = await client.download(result, tmp_path / "a" / "b.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (300, 400)


async def test_download_reads_dest_as_path_does(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A text or path-like ``dest`` means ``Path(dest)``: ``~`` is not expanded, empty and
    ``.`` parts and a trailing slash are dropped; the path returned is ``Path(dest)``."""

    class Dest:
        def __fspath__(self) -> str:
            return "sub//./c.png/"

    monkeypatch.chdir(tmp_path)
    async with client_for(server) as client:
        result = await client.wait(await client.create(portrait()))
        for dest in ("~/x//./b.png", Dest(), str(tmp_path) + "//abs/./d.png"):
            path = await client.download(result, dest)
            assert type(path) is type(Path(dest)) and path == Path(dest)
            assert str(path) == str(Path(dest))
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")) == [
        "abs/d.png",
        "sub/c.png",
        "~/x/b.png",
    ]
    assert not list(tmp_path.rglob("*.part"))


async def test_unknown_task_is_not_found(server: LocalServer) -> None:
    async with client_for(server) as client:
        with pytest.raises(ia.NotFoundError, match="task_id"):
            await client.get("no-such-task")


async def test_not_an_image_by_url_fails_with_its_state(server: LocalServer) -> None:
    async with client_for(server) as client:
        with pytest.raises(ia.TaskFailedError) as info:
            await client.create(image_url=f"{server.base_url}/nothing-here.jpg", sync=True)
    assert info.value.state == ia.TaskState.SOURCE_DOWNLOAD_FAILED


async def test_expired_result_is_detected(tmp_path: Path) -> None:
    with LocalServer(qps=None) as srv:
        async with client_for(srv) as client:
            result = await client.create(portrait(), sync=True)
            srv.advance(3700)
            with pytest.raises(ia.ResultExpiredError):
                await client.download(result, tmp_path / "x.png")
    assert not list(tmp_path.iterdir())


async def test_wrong_key_is_an_authentication_error() -> None:
    with LocalServer(api_keys=("right-key",), qps=None) as srv:
        async with AsyncIDPhotoClient("wrong-key", srv.base_url, http_backend=BACKEND) as client:
            with pytest.raises(ia.AuthenticationError) as info:
                await client.create(portrait())
        assert "wrong-key" not in str(info.value)
        async with AsyncIDPhotoClient(
            "right-key", srv.base_url, qps=100, http_backend=BACKEND
        ) as client:
            assert (await client.create(portrait())).task_id


@pytest.mark.exclusive
async def test_limiter_keeps_a_burst_under_the_strict_window(anyio_backend: str) -> None:
    """30 creates at once through a 10 QPS client: no 429 from a strict 10 QPS window."""
    import anyio

    with LocalServerProcess(qps=10, count_refused=True) as srv:
        async with client_for(srv, qps=10) as client, anyio.create_task_group() as tg:
            for _ in range(30):
                tg.start_soon(client.create, portrait())
        stats = srv.stats()
    assert stats["creates"] == 30
    assert stats["rate_limited"] == 0
    assert stats["peak_requests_per_second"] <= 10


@pytest.mark.exclusive
async def test_shared_limiter_across_two_clients() -> None:
    import anyio

    limiter = TokenBucketLimiter(10)
    with LocalServerProcess(qps=10) as srv:
        async with (
            client_for(srv, limiter=limiter) as a,
            client_for(srv, limiter=limiter) as b,
            anyio.create_task_group() as tg,
        ):
            for i in range(20):
                tg.start_soon((a if i % 2 else b).create, portrait())
        stats = srv.stats()
    assert stats["creates"] == 20 and stats["rate_limited"] == 0


@pytest.mark.parametrize(
    ("fault", "retry_creates"),
    [
        ({"query_error_rate": 0.5}, False),
        ({"drop_rate": 0.3}, True),
        ({"spurious_429_rate": 0.3, "send_retry_after": False}, False),
        ({"error_rate": 0.5}, True),
    ],
)
async def test_retries_ride_over_injected_faults(
    tmp_path: Path, fault: dict[str, Any], retry_creates: bool
) -> None:
    with LocalServer(qps=None, seed=7, **fault) as srv:
        async with client_for(
            srv,
            retry_policy=RetryPolicy(8, initial=0.01, maximum=0.05),
            retry_creates=retry_creates,
        ) as client:
            for i in range(3):
                out = await client.generate(portrait(), tmp_path / f"{i}.png", size="200x200")
                assert out.exists()
        stats = srv.stats()
    assert stats["faults_total"] > 0


class RecordingLimiter(TokenBucketLimiter):
    """Keeps every reservation it hands out."""

    def __init__(self) -> None:
        super().__init__(1000.0)
        self.reservations: list[Any] = []

    async def reserve(self, *, timeout: float | None = None, priority: bool = False) -> Any:
        reservation = await super().reserve(timeout=timeout, priority=priority)
        self.reservations.append(reservation)
        return reservation


@pytest.mark.parametrize("transport", ["loopback", "mock"])
async def test_requests_count_from_when_their_headers_leave(
    server: LocalServer, transport: str
) -> None:
    """The limiter stamps a request when httpx writes its headers (trace hook), not at grant.

    A transport without httpcore's trace events (a mock) is stamped when the exchange ends.
    """
    import httpx

    limiter = RecordingLimiter()
    sent_before_answer: list[bool] = []

    async def on_response(response: httpx.Response) -> None:
        sent_before_answer.append(limiter.reservations[-1].is_sent)

    hooks = {"response": [on_response]}
    if transport == "loopback":
        http = httpx.AsyncClient(event_hooks=hooks)
    else:
        body = {"status": 200, "message": "success", "data": {"task_id": "t1", "state": 4}}
        mock = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
        http = httpx.AsyncClient(transport=mock, event_hooks=hooks)
    async with http, client_for(server, limiter=limiter, http_client=http) as client:
        task = await client.create(portrait())
        await client.get(task.task_id)
    assert sent_before_answer == [transport == "loopback"] * 2
    assert all(r.is_sent for r in limiter.reservations) and limiter.unsent == 0
