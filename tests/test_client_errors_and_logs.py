"""Errors carry their request and answer; an ambiguous create is never paid twice; the SDK
logs each request (DEBUG), retry and 429 pause (INFO) and possible charge (WARNING), never
the key. Wire-level (httpx.MockTransport: the exact answers matter, not the socket)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import idphoto_async as ia
from idphoto_async._retry import RetryPolicy

pytestmark = pytest.mark.anyio

BASE = "https://api.test"
KEY = "sk-the-key-that-never-shows-0123"
FAST = RetryPolicy(max_retries=2, initial=0.001, maximum=0.002)
PATH = "/api/tasks/visual/idphoto"


def envelope(data: Any, status: int = 200, message: str = "ok") -> dict[str, Any]:
    return {"status": status, "message": message, "data": data}


def scripted(*answers: httpx.Response) -> tuple[ia.AsyncIDPhotoClient, list[httpx.Request]]:
    """A client whose API answers ``answers`` in order (the last one repeats)."""
    sent: list[httpx.Request] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return queue.pop(0) if len(queue) > 1 else queue[0]

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = ia.AsyncIDPhotoClient(KEY, BASE, qps=1000, http_client=http, retry_policy=FAST)
    return client, sent


async def create(client: ia.AsyncIDPhotoClient, **kwargs: Any) -> ia.Task:
    return await client.create(image_url="https://img.example/a.jpg", **kwargs)


# -- errors carry their data -------------------------------------------------------------------


async def test_a_status_error_carries_request_status_and_a_bounded_excerpt() -> None:
    body = {"status": 400, "message": f"bad size (key {KEY})", "data": None, "pad": "x" * 5000}
    client, _ = scripted(httpx.Response(400, json=body))
    async with client:
        with pytest.raises(ia.BadRequestError) as caught:
            await create(client)
    error = caught.value
    assert (error.method, error.url, error.status_code) == ("POST", BASE + PATH, 400)
    assert error.body is not None and 0 < len(error.body) <= 500
    assert KEY not in error.body and KEY not in str(error) and "***" in error.api_message
    assert str(error).startswith("HTTP 400: bad size")  # still the readable sentence
    assert not error.task_may_exist and error.task_id is None


async def test_task_may_exist_counts_every_attempt() -> None:
    """A 503 (may have made a task) then 429s: the final 429 error still says so."""
    limited = httpx.Response(429, json=envelope(None, 429, "slow"), headers={"Retry-After": "0"})
    client, sent = scripted(httpx.Response(503, json=envelope(None, 503, "busy")), limited)
    async with client:
        with pytest.raises(ia.RateLimitError) as caught:
            await create(client, retry_create=True)
    assert len(sent) == 1 + FAST.max_retries
    assert caught.value.task_may_exist
    # a query never "makes a task"
    client, _ = scripted(httpx.Response(503, json=envelope(None, 503, "busy")))
    async with client:
        with pytest.raises(ia.ServerError) as query_error:
            await client.get("T1")
    assert not query_error.value.task_may_exist and query_error.value.method == "GET"


# -- an answer that names a task is that task (issue #12 item 12) ------------------------------


@pytest.mark.parametrize("retry_create", [False, True])
async def test_http_500_with_a_task_in_a_200_body_is_that_task(
    retry_create: bool, caplog: pytest.LogCaptureFixture
) -> None:
    client, sent = scripted(httpx.Response(500, json=envelope({"task_id": "T500"})))
    caplog.set_level(logging.DEBUG, logger="idphoto_async")
    async with client:
        task = await create(client, retry_create=retry_create)
    assert task.task_id == "T500"
    assert len(sent) == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and "T500" in warnings[0].getMessage()


@pytest.mark.parametrize("retry_create", [False, True])
async def test_an_error_naming_a_task_is_not_sent_again(retry_create: bool) -> None:
    answer = httpx.Response(502, json=envelope({"task_id": "T502"}, 502, "gateway"))
    client, sent = scripted(answer)
    async with client:
        with pytest.raises(ia.ServerError) as caught:
            await create(client, retry_create=retry_create)
    assert len(sent) == 1
    assert caught.value.task_id == "T502" and caught.value.task_may_exist


@pytest.mark.parametrize("retry_create", [False, True])
async def test_a_200_with_an_unusable_task_id_is_not_sent_again(
    retry_create: bool, caplog: pytest.LogCaptureFixture
) -> None:
    client, sent = scripted(httpx.Response(200, json=envelope({"task_id": "x" * 300})))
    caplog.set_level(logging.WARNING, logger="idphoto_async")
    async with client:
        with pytest.raises(ia.MalformedResponseError) as caught:
            await create(client, retry_create=retry_create)
    assert len(sent) == 1
    assert caught.value.task_may_exist and caught.value.method == "POST"
    assert any("may have made" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "failure",
    [
        lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused", request=r)),
        lambda r: httpx.Response(
            429, json=envelope(None, 429, "slow"), headers={"Retry-After": "0"}
        ),
    ],
    ids=["refused", "429"],
)
async def test_a_create_that_cannot_have_made_a_task_is_sent_again(
    failure: Callable[[httpx.Request], httpx.Response],
) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if len(sent) == 1:
            return failure(request)
        return httpx.Response(200, json=envelope({"task_id": "T2"}))

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with ia.AsyncIDPhotoClient(KEY, BASE, qps=1000, http_client=http, retry_policy=FAST) as c:
        assert (await create(c)).task_id == "T2"
    assert len(sent) == 2


# -- logging -----------------------------------------------------------------------------------


async def test_logs_each_request_retry_pause_and_possible_charge(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, _ = scripted(
        httpx.Response(429, json=envelope(None, 429, f"slow {KEY}"), headers={"Retry-After": "0"}),
        httpx.Response(503, json=envelope(None, 503, f"busy {KEY}")),
    )
    caplog.set_level(logging.DEBUG, logger="idphoto_async")
    async with client:
        with pytest.raises(ia.ServerError):
            await create(client)
    records = [r for r in caplog.records if r.name.startswith("idphoto_async")]
    by_level = {
        level: [r.getMessage() for r in records if r.levelno == level]
        for level in (logging.DEBUG, logging.INFO, logging.WARNING)
    }
    debug = by_level[logging.DEBUG]
    assert len(debug) == 2  # one per request
    assert debug[0].startswith(f"POST {PATH} -> 429 in ") and debug[0].endswith("(attempt 1)")
    assert debug[1].startswith(f"POST {PATH} -> 503 in ") and debug[1].endswith("(attempt 2)")
    info = by_level[logging.INFO]
    assert any(m.startswith("Rate limited (HTTP 429)") and "0 s (Retry-After)" in m for m in info)
    assert any(
        m.startswith(f"Retrying POST {PATH} (retry 1 of 2)") and "HTTP 429" in m for m in info
    )
    (warning,) = by_level[logging.WARNING]
    assert "may have made a (charged) task" in warning
    for record in records:
        assert KEY not in record.getMessage()
        assert KEY not in repr(record.args)


async def test_download_retries_are_logged(caplog: pytest.LogCaptureFixture, tmp_path: Any) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(500 if calls == 1 else 200, content=b"\x89PNG\r\n\x1a\n")

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    result = ia.TaskResult(
        "T1", ia.TaskState.SUCCEEDED, image="https://cdn.test/r.png", image_kind="url"
    )
    caplog.set_level(logging.INFO, logger="idphoto_async")
    async with ia.AsyncIDPhotoClient(KEY, BASE, http_client=http, retry_policy=FAST) as c:
        with pytest.raises(ia.DownloadError, match="incomplete PNG"):
            await c.download(result, tmp_path / "a.png")
    retries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Retrying")]
    assert len(retries) == 2 and "the download of task T1" in retries[0]
    assert "HTTP 500" in retries[0] and "incomplete PNG" in retries[1]
