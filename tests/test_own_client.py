"""The SDK's own pool sends straight to its transport: no cookies kept or sent back, httpx's
full ``send`` where a caller asks for its layers; on both pools and both event loops."""

from __future__ import annotations

import anyio.abc
import httpx
import pytest
from _raw_http import http_answer, raw_server

import idphoto_async as ia
from idphoto_async._own_client import OwnPoolClient
from idphoto_async._pool import make_pool

pytestmark = pytest.mark.anyio

TASK = b'{"status": 200, "message": "ok", "data": {"task_id": "T1", "state": 0}}'


async def with_cookie(stream: anyio.abc.SocketStream, request: bytes) -> None:
    headers = {"Content-Type": "application/json", "Set-Cookie": "session=abc; Path=/"}
    await stream.send(http_answer(TASK, headers=headers))


async def test_a_cookie_a_host_sets_is_never_sent_back(http_backend: ia.HTTPBackend) -> None:
    async with (
        raw_server(with_cookie) as (base, requests),
        ia.AsyncIDPhotoClient("k", base, qps=1000, http_backend=http_backend) as client,
    ):
        await client.get("T1")
        await client.get("T1")
    assert len(requests) == 2
    assert b"cookie:" not in requests[1].lower()


async def test_the_pool_client_reads_whole_answers_and_refuses_once_closed(
    http_backend: ia.HTTPBackend,
) -> None:
    http = make_pool(http_backend, 4, httpx.Timeout(5.0))
    assert isinstance(http, OwnPoolClient)
    async with raw_server(with_cookie) as (base, _):
        response = await http.get(f"{base}/x")  # stream=False: read whole
        assert response.content == TASK and response.request.url == f"{base}/x"
        assert not http.cookies
        await http.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await http.get(f"{base}/x")


async def test_event_hooks_and_redirects_take_httpx_s_own_send(anyio_backend: str) -> None:
    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(str(request.url))

    async def redirect_once(stream: anyio.abc.SocketStream, request: bytes) -> None:
        if request.startswith(b"GET /old"):
            await stream.send(http_answer(b"", status="302 Found", headers={"Location": "/new"}))
        else:
            await stream.send(http_answer(b"here"))

    http = make_pool("httpx", 4, httpx.Timeout(5.0))
    async with raw_server(redirect_once) as (base, _), http:
        http.event_hooks["request"] = [hook]
        response = await http.get(f"{base}/old", follow_redirects=True)
    assert response.content == b"here"
    assert seen == [f"{base}/old", f"{base}/new"]
