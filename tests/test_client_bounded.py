"""Every phase of a request is bounded by its timeout; cancellation ends it at once; a
closed client says so. Real TCP servers on loopback that trickle their answers."""

from __future__ import annotations

import logging
import math

import anyio
import anyio.abc
import httpx
import pytest
from _raw_http import http_answer, noisy_png, raw_server

import idphoto_async as ia

pytestmark = pytest.mark.anyio

BACKEND: ia.HTTPBackend = "httpx"
"""The pool of the clients made here (each test runs on both: see ``conftest.py``)."""


@pytest.fixture(autouse=True)
def _each_http_backend(http_backend: ia.HTTPBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.BACKEND", http_backend)


TASK = b'{"status": 200, "message": "ok", "data": {"task_id": "T1", "state": 0}}'


async def trickle_headers(stream: anyio.abc.SocketStream, request: bytes) -> None:
    """``HTTP/1.1 200 OK`` and then one header byte every 50 ms, for ever."""
    await stream.send(b"HTTP/1.1 200 OK\r\n")
    while True:
        await stream.send(b"X")
        await anyio.sleep(0.05)


async def trickle_body(stream: anyio.abc.SocketStream, request: bytes) -> None:
    """Whole headers, then one body byte every 50 ms (of a body that never ends)."""
    await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    while True:
        await stream.send(b" ")
        await anyio.sleep(0.05)


def client(base: str, **kwargs: object) -> ia.AsyncIDPhotoClient:
    return ia.AsyncIDPhotoClient("k", base, qps=1000, max_retries=0, http_backend=BACKEND, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("call", ["create", "get"])
async def test_trickled_headers_time_out_after_about_the_timeout(call: str) -> None:
    async with raw_server(trickle_headers) as (base, requests), client(base, timeout=0.5) as c:
        start = anyio.current_time()
        request = c.create(noisy_png()) if call == "create" else c.get("T1")
        with anyio.fail_after(10), pytest.raises(ia.APITimeoutError) as caught:
            await request
        elapsed = anyio.current_time() - start
    assert 0.45 <= elapsed < 1.5, elapsed
    assert "headers" in str(caught.value)
    assert caught.value.method == ("POST" if call == "create" else "GET")
    assert caught.value.url is not None and caught.value.url.startswith(base)
    assert len(requests) == 1


async def test_an_httpx_timeout_bounds_each_phase_by_its_own_setting() -> None:
    timeout = httpx.Timeout(connect=5.0, write=5.0, pool=5.0, read=0.4)
    async with raw_server(trickle_headers) as (base, _), client(base, timeout=timeout) as c:
        start = anyio.current_time()
        with anyio.fail_after(10), pytest.raises(ia.APITimeoutError):
            await c.get("T1")
        assert anyio.current_time() - start < 1.2
        # per call too, as seconds or as an httpx.Timeout
        start = anyio.current_time()
        with anyio.fail_after(10), pytest.raises(ia.APITimeoutError):
            await c.get("T1", timeout=httpx.Timeout(5.0, read=0.2))
        assert anyio.current_time() - start < 1.0


async def test_a_trickled_body_times_out_too() -> None:
    async with raw_server(trickle_body) as (base, _), client(base, timeout=0.3) as c:
        start = anyio.current_time()
        with anyio.fail_after(10), pytest.raises(ia.APITimeoutError) as caught:
            await c.get("T1")
    # the body may take BODY_DEADLINE_FACTOR (2) read timeouts
    assert anyio.current_time() - start < 1.5
    assert "body" in str(caught.value)


async def test_a_timed_out_create_may_have_made_a_task() -> None:
    async with raw_server(trickle_headers) as (base, requests), client(base, timeout=0.3) as c:
        with anyio.fail_after(10), pytest.raises(ia.APITimeoutError) as caught:
            await c.create(noisy_png(), retry_create=False, max_retries=3)
    assert caught.value.task_may_exist  # it was sent: the service may have made it
    assert len(requests) == 1  # and so it was not sent again


async def test_cancellation_ends_a_trickled_request_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="idphoto_async")
    async with raw_server(trickle_headers) as (base, _), client(base, timeout=30) as c:
        start = anyio.current_time()
        with anyio.move_on_after(0.5) as scope:
            await c.get("T1")
        assert scope.cancelled_caught
        assert anyio.current_time() - start < 1.5
        assert not c.is_closed
    (line,) = [r.getMessage() for r in caplog.records if r.name == "idphoto_async"]
    assert line.startswith("GET /api/tasks/visual/idphoto/T1 -> cancelled in ")


async def test_bad_timeouts_are_refused() -> None:
    for bad in (0, -1, math.nan, "30", True):
        with pytest.raises(ia.ValidationError, match="timeout"):
            ia.AsyncIDPhotoClient("k", "http://127.0.0.1:1", timeout=bad)  # type: ignore[arg-type]


async def test_a_closed_client_says_it_is_closed(tmp_path: object) -> None:
    async def answer(stream: anyio.abc.SocketStream, request: bytes) -> None:
        await stream.send(http_answer(TASK))

    async with raw_server(answer) as (base, requests):
        c = client(base)
        async with c:
            assert (await c.get("T1")).task_id == "T1"
        assert c.is_closed
        result = ia.TaskResult("T1", ia.TaskState.SUCCEEDED, image=f"{base}/r.png")
        for use in (
            lambda: c.create(noisy_png()),
            lambda: c.get("T1"),
            lambda: c.wait("T1"),
            lambda: c.download(result, "x.png"),
        ):
            with pytest.raises(ia.ClientClosedError, match="closed"):
                await use()
        await c.aclose()  # idempotent
        # an injected pool closed by its owner: the same error, not httpx's RuntimeError
        http = httpx.AsyncClient()
        shared = ia.AsyncIDPhotoClient("k", base, http_client=http)
        await http.aclose()
        with pytest.raises(ia.ClientClosedError):
            await shared.get("T1")
    assert len(requests) == 1
    assert issubclass(ia.ClientClosedError, ia.IDPhotoError)
