"""The aiohttp connection pool (``http_backend="aiohttp"``) behaves as httpx's does where it
matters: what may have reached the server, when a request left, and where it cannot run.

Each wire test runs on httpx's pool (asyncio and trio) and on aiohttp's (see ``conftest.py``);
the wire-level modules (bounded phases, whole results, the local server) run on both too.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
import sniffio
from _raw_http import http_answer, noisy_png, raw_server, thread_server

import idphoto_async as ia

pytestmark = pytest.mark.anyio

TASK = b'{"status": 200, "message": "ok", "data": {"task_id": "T1", "state": 0}}'
FAST = ia.RetryPolicy(max_retries=2, initial=0.01, maximum=0.02)


def client(base: str, backend: ia.HTTPBackend, **kwargs: object) -> ia.AsyncIDPhotoClient:
    return ia.AsyncIDPhotoClient(
        "k",
        base,
        qps=1000,
        retry_policy=FAST,
        http_backend=backend,
        **kwargs,  # type: ignore[arg-type]
    )


async def free_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
    await listener.aclose()
    return port


async def test_a_refused_connection_made_nothing_and_is_tried_again(
    http_backend: ia.HTTPBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="idphoto_async")
    base = f"http://127.0.0.1:{await free_port()}"
    async with client(base, http_backend) as c:
        with anyio.fail_after(10), pytest.raises(ia.APIConnectionError) as caught:
            await c.create(noisy_png())
    assert not caught.value.task_may_exist  # nothing reached a server: no charge possible
    retries = [r for r in caplog.records if "retry" in r.getMessage().lower()]
    assert len(retries) == FAST.max_retries, [r.getMessage() for r in caplog.records]


async def hang_up(stream: anyio.abc.SocketStream, request: bytes) -> None:
    """Read the whole request, then close the connection without a word."""
    await stream.aclose()


async def test_a_create_lost_after_it_left_is_never_sent_again(
    http_backend: ia.HTTPBackend,
) -> None:
    async with raw_server(hang_up) as (base, requests), client(base, http_backend) as c:
        with anyio.fail_after(10), pytest.raises(ia.APIConnectionError) as caught:
            await c.create(noisy_png())
    assert caught.value.task_may_exist  # the server had the whole request: maybe charged
    assert len(requests) == 1  # not paid twice


async def test_a_lost_query_is_asked_again(http_backend: ia.HTTPBackend) -> None:
    async with raw_server(hang_up) as (base, requests), client(base, http_backend) as c:
        with anyio.fail_after(10), pytest.raises(ia.APIConnectionError):
            await c.get("T1")
    assert len(requests) == 1 + FAST.max_retries  # a query costs nothing: retried


class StampingLimiter(ia.TokenBucketLimiter):
    """A limiter whose reservations call ``depart`` at the request's departure (not the
    limiter's own stamp): what the client reports, and when."""

    def __init__(self, depart: Callable[[float | None], None]) -> None:
        super().__init__(1000)
        self.depart = depart

    async def reserve(
        self, *, timeout: float | None = None, priority: bool = False
    ) -> ia.Reservation:
        await self.acquire(timeout=timeout, priority=priority)
        return ia.Reservation(depart=self.depart)


def stamp_into(stamps: list[float]) -> Callable[[float | None], None]:
    """A departure callback that records `time.monotonic` into ``stamps``."""
    return lambda at: stamps.append(time.monotonic())


async def test_the_departure_is_stamped_when_the_request_leaves(
    http_backend: ia.HTTPBackend,
) -> None:
    """The limiter counts from the real departure (headers sent), not from the answer."""
    stamps: list[float] = []
    arrivals: list[float] = []

    async def slow_answer(stream: anyio.abc.SocketStream, request: bytes) -> None:
        arrivals.append(time.monotonic())
        await anyio.sleep(0.4)
        await stream.send(http_answer(TASK, headers={"Content-Type": "application/json"}))

    limiter = StampingLimiter(stamp_into(stamps))
    async with (
        raw_server(slow_answer) as (base, _),
        client(base, http_backend, limiter=limiter) as c,
    ):
        task = await c.create(noisy_png())
    assert task.task_id == "T1"
    assert len(stamps) == 1 and len(arrivals) == 1
    # Stamped before the server had the request, or just after: never after the 0.4 s answer.
    assert stamps[0] < arrivals[0] + 0.2, (stamps, arrivals)


def stall_soon(seconds: float) -> None:
    """Block the event loop for ``seconds`` as soon as the running step yields."""
    if sniffio.current_async_library() == "trio":
        import trio

        trio.lowlevel.current_trio_token().run_sync_soon(time.sleep, seconds)
    else:
        asyncio.get_running_loop().call_soon(time.sleep, seconds)


async def test_the_departure_is_never_stamped_before_the_request_left(
    http_backend: ia.HTTPBackend,
) -> None:
    """A stall of the event loop right after the departure's stamp must find the request
    already written. aiohttp signals "headers sent" before it writes them, and writes a body
    (headers in front) from a task of its own: on CPython 3.11 the stamp came a whole stall
    (0.3 s here) before the bytes, and the limiter, catching up after the stall, would crowd
    a window behind it."""
    stamps: list[float] = []

    def depart(at: float | None) -> None:
        stamps.append(time.monotonic())
        stall_soon(0.3)  # the loop stalls next

    answer = http_answer(TASK, headers={"Content-Type": "application/json"})
    with thread_server(answer) as (base, arrivals):
        async with client(base, http_backend, limiter=StampingLimiter(depart)) as c:
            await c.create(noisy_png())  # a body
            await c.get("T1")  # none
    assert len(stamps) == 2 and len(arrivals) == 2
    for stamp, arrival in zip(stamps, arrivals, strict=True):
        assert arrival - stamp < 0.15, (stamps, arrivals)


async def test_the_departure_is_never_stamped_after_the_request_left(
    http_backend: ia.HTTPBackend,
) -> None:
    """With the event loop busy (every turn of it stalled 50 ms by another task), the
    departure's stamp must not trail the request's arrival by a turn: anyio and trio yield
    right after writing a request's headers, before httpcore reports them sent, and a stamp
    taken then came a whole turn late. (Late is safe but slow: the request holds its window
    place that much longer, and where the window binds, the next grants wait as long.)"""
    stamps: list[float] = []

    async def busy_loop() -> None:
        while True:
            await anyio.lowlevel.checkpoint()
            time.sleep(0.05)  # noqa: ASYNC251 - the stall is the point

    answer = http_answer(TASK, headers={"Content-Type": "application/json"})
    with thread_server(answer) as (base, arrivals):
        async with (
            client(base, http_backend, limiter=StampingLimiter(stamp_into(stamps))) as c,
            anyio.create_task_group() as tasks,
        ):
            tasks.start_soon(busy_loop)
            await c.create(noisy_png())  # a body
            await c.get("T1")  # none
            tasks.cancel_scope.cancel()
    assert len(stamps) == 2 and len(arrivals) == 2
    for stamp, arrival in zip(stamps, arrivals, strict=True):
        assert stamp - arrival < 0.02, (stamps, arrivals)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_aiohttp_on_trio_says_to_use_httpx() -> None:
    async with client("http://127.0.0.1:1", "aiohttp") as c:
        with pytest.raises(ia.ValidationError, match=r"asyncio only.*http_backend='httpx'"):
            await c.get("T1")


async def declared_half(stream: anyio.abc.SocketStream, request: bytes) -> None:
    """A PNG sent whole under a Content-Length of half of it: aiohttp refuses the bytes past
    the length, httpx stops at the length (the image check then finds the PNG cut)."""
    png = noisy_png()
    await stream.send(f"HTTP/1.1 200 OK\r\nContent-Length: {len(png) // 2}\r\n\r\n".encode() + png)
    await stream.aclose()


async def test_auto_takes_aiohttp_on_asyncio_and_httpx_on_trio(
    anyio_backend: str, tmp_path: Path
) -> None:
    expected = "RemoteProtocolError" if anyio_backend == "asyncio" else "incomplete PNG"
    async with raw_server(declared_half) as (base, _), client(base, "auto") as c:
        result = ia.TaskResult(
            "T1", ia.TaskState.SUCCEEDED, image=f"{base}/r.png", image_kind="url"
        )
        with pytest.raises(ia.DownloadError, match=expected):
            await c.download(result, tmp_path / "r.png")


async def test_without_aiohttp_installed(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``"aiohttp"`` says how to install it; ``"auto"`` falls back to httpx's pool."""
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # import aiohttp -> ImportError
    with pytest.raises(ia.ValidationError, match=r"pip install 'idphoto-async\[aiohttp\]'"):
        ia.AsyncIDPhotoClient("k", "http://127.0.0.1:1", http_backend="aiohttp")

    async def answer(stream: anyio.abc.SocketStream, request: bytes) -> None:
        await stream.send(http_answer(TASK, headers={"Content-Type": "application/json"}))

    async with raw_server(answer) as (base, _), client(base, "auto") as c:
        assert (await c.get("T1")).task_id == "T1"


async def test_an_unknown_backend_is_refused(anyio_backend: str) -> None:
    with pytest.raises(ia.ValidationError, match="http_backend must be"):
        ia.AsyncIDPhotoClient("k", "http://127.0.0.1:1", http_backend="curl")  # type: ignore[arg-type]


def test_the_sync_client_takes_the_backend() -> None:
    """`IDPhotoClient` passes ``http_backend`` on: aiohttp's pool serves its asyncio loop,
    and refuses a trio one."""
    from idphoto_async.testing import LocalServer

    with LocalServer(qps=None, processing_time="0") as server:
        with ia.IDPhotoClient(None, server.base_url, qps=1000, http_backend="aiohttp") as c:
            task = c.create(noisy_png())
            assert c.wait(task.task_id, timeout=10).task_id == task.task_id
        on_trio = ia.IDPhotoClient(
            None, server.base_url, qps=1000, http_backend="aiohttp", backend="trio"
        )
        with on_trio, pytest.raises(ia.ValidationError, match="asyncio only"):
            on_trio.get(task.task_id)
