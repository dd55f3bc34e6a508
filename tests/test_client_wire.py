"""Wire-level tests of the client with httpx.MockTransport: exact requests, every answer mapped."""

from __future__ import annotations

import base64
import email.parser
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

import idphoto_async as ia
from idphoto_async._client import AsyncIDPhotoClient
from idphoto_async._constants import API_PATH
from idphoto_async._polling import PollSchedule

pytestmark = pytest.mark.anyio

BASE = "https://api.test"
KEY = "sk-very-secret-key-123"


class RecordingLimiter:
    """A limiter that never waits and records every call."""

    qps = 1000.0
    waiting = 0

    def __init__(self) -> None:
        self.acquired: list[bool] = []
        self.rate_limited: list[float | None] = []

    async def acquire(self, *, timeout: float | None = None, priority: bool = False) -> None:
        self.acquired.append(priority)

    async def reserve(
        self, *, timeout: float | None = None, priority: bool = False
    ) -> ia.Reservation:
        await self.acquire(timeout=timeout, priority=priority)
        return ia.Reservation()

    async def on_rate_limited(self, retry_after: float | None = None) -> None:
        self.rate_limited.append(retry_after)


def jpeg_bytes(size: tuple[int, int] = (64, 80)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 150, 120)).save(buf, "JPEG")
    return buf.getvalue()


def png_bytes(size: tuple[int, int] = (100, 100)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", size, (0, 0, 0, 0)).save(buf, "PNG")
    return buf.getvalue()


def envelope(data: Any, status: int = 200, message: str = "success") -> dict[str, Any]:
    return {"status": status, "message": message, "data": data}


def multipart_fields(request: httpx.Request) -> dict[str, tuple[str | None, bytes]]:
    """Field name -> (filename, content) of a multipart request."""
    raw = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode() + request.read()
    message = email.parser.BytesParser().parsebytes(raw)
    assert message.is_multipart()
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.get_payload():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        fields[str(name)] = (part.get_filename(), payload)
    return fields


Handler = Callable[[httpx.Request], httpx.Response]


def make_client(handler: Handler, **kwargs: Any) -> tuple[AsyncIDPhotoClient, RecordingLimiter]:
    limiter = RecordingLimiter()
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    kwargs.setdefault(
        "poll_schedule", PollSchedule(initial_guess=0.001, min_delay=0.001, max_delay=0.01)
    )
    client = AsyncIDPhotoClient(KEY, BASE, limiter=limiter, http_client=http, **kwargs)
    return client, limiter


async def test_create_async_sends_the_seed_multipart_with_file(tmp_path: Path) -> None:
    src = tmp_path / "me.jpg"
    src.write_bytes(jpeg_bytes())
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=envelope({"task_id": "T1"}))

    client, limiter = make_client(handler)
    async with client:
        task = await client.create(src, size="295x413", format="jpg", bg_color="ff0000")
    assert isinstance(task, ia.Task)
    assert task.task_id == "T1"
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/api/tasks/visual/idphoto"
    assert request.headers["X-API-KEY"] == KEY
    fields = multipart_fields(request)
    assert fields["sync"] == (None, b"0")
    assert fields["size"] == (None, b"295x413")
    assert fields["format"] == (None, b"jpg")
    assert fields["bg_color"] == (None, b"FF0000")
    assert fields["image_file"][0] == "me.jpg"
    assert fields["image_file"][1] == src.read_bytes()
    assert "image_url" not in fields
    assert limiter.acquired == [False]


@pytest.mark.parametrize("base", [BASE, f"{BASE}/prefix"])
async def test_creates_go_to_one_url_parsed_once(base: str) -> None:
    """Every create is sent to base + the create path (a base with a path keeps it), from
    one URL object parsed once (httpx parses a text URL on every request)."""
    urls: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        urls.append(request.url)
        return httpx.Response(200, json=envelope({"task_id": "T1", "state": 0}))

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with AsyncIDPhotoClient(KEY, base, limiter=RecordingLimiter(), http_client=http) as c:
        for _ in range(3):
            await c.create(image_url="https://img.test/a.jpg")
        await c.get("T1")
        assert c._api.target(API_PATH) is c._api.target(API_PATH)
    assert [str(u) for u in urls] == [f"{base}/api/tasks/visual/idphoto"] * 3 + [
        f"{base}/api/tasks/visual/idphoto/T1"
    ]


async def test_create_with_url_is_multipart_too() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=envelope({"task_id": "T2"}))

    client, _ = make_client(handler)
    async with client:
        await client.create(image_url="https://img.test/café.jpg", return_type="base64")
    fields = multipart_fields(seen[0])
    assert fields["image_url"] == (None, b"https://img.test/caf%C3%A9.jpg")
    assert fields["return_type"] == (None, b"2")
    assert "image_file" not in fields


async def test_sync_create_returns_result_and_bytes_source_works() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert multipart_fields(request)["sync"] == (None, b"1")
        return httpx.Response(
            200,
            json=envelope(
                {
                    "task_id": "T3",
                    "state": 1,
                    "progress": 100,
                    "image": "https://cdn.test/r.png",
                    "created_at": "1700000000",
                    "processed_at": "1700000001",
                    "completed_at": "1700000003",
                }
            ),
        )

    client, _ = make_client(handler)
    async with client:
        result = await client.create(png_bytes(), sync=True)
    assert isinstance(result, ia.TaskResult)
    assert result.is_done and result.is_url
    assert result.completed_at is not None and result.completed_at.timestamp() == 1700000003


async def test_sync_create_failed_state_raises_task_failed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=envelope({"task_id": "T4", "state": -7, "progress": 0}))

    client, _ = make_client(handler)
    async with client:
        with pytest.raises(ia.TaskFailedError) as info:
            await client.create(io.BytesIO(png_bytes()), sync=True)
    assert info.value.state == ia.TaskState.INVALID_IMAGE
    assert not info.value.retryable
    assert "T4" in str(info.value)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, ia.BadRequestError),
        (401, ia.AuthenticationError),
        (404, ia.NotFoundError),
        (413, ia.PayloadTooLargeError),
        (429, ia.RateLimitError),
        (500, ia.ServerError),
        (503, ia.ServerError),
    ],
)
async def test_every_status_maps_to_its_class(status: int, cls: type[ia.APIStatusError]) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(status, json=envelope(None, status=status, message="nope"))

    client, limiter = make_client(handler, max_retries=0)
    async with client:
        with pytest.raises(cls) as info:
            await client.get("T")
    assert info.value.status_code == status
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    assert calls == 1
    assert len(limiter.rate_limited) == (1 if status == 429 else 0)


async def test_json_status_inside_http_200_is_honoured() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=envelope(None, status=401, message="bad key"))

    client, _ = make_client(handler)
    async with client:
        with pytest.raises(ia.AuthenticationError, match="bad key"):
            await client.get("T")


async def test_429_slows_the_limiter_and_is_retried_even_for_create() -> None:
    answers = [
        httpx.Response(429, headers={"Retry-After": "2"}, json=envelope(None, 429, "slow")),
        httpx.Response(200, json=envelope({"task_id": "T5"})),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)

    client, limiter = make_client(handler)
    async with client:
        task = await client.create(png_bytes())
    assert task.task_id == "T5"
    assert limiter.rate_limited == [2.0]
    assert len(limiter.acquired) == 2


async def test_5xx_create_is_not_retried_by_default_but_query_is() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) in (1, 2):
            return httpx.Response(500, text="boom")
        return httpx.Response(200, json=envelope({"task_id": "T", "state": 4, "progress": 30}))

    client, _ = make_client(handler, max_retries=2)
    async with client:
        with pytest.raises(ia.ServerError, match="boom"):
            await client.create(png_bytes())
        assert calls == ["POST"]
        result = await client.get("T")
    assert calls == ["POST", "GET", "GET"]
    assert result.is_processing and result.progress == 30


async def test_retry_creates_allows_retrying_a_5xx_create() -> None:
    answers = [httpx.Response(502), httpx.Response(200, json=envelope({"task_id": "T6"}))]
    client, _ = make_client(lambda r: answers.pop(0), retry_creates=True)
    async with client:
        assert (await client.create(png_bytes())).task_id == "T6"


async def test_connect_error_is_retried_for_create() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json=envelope({"task_id": "T7"}))

    client, _ = make_client(handler)
    async with client:
        assert (await client.create(png_bytes())).task_id == "T7"
    assert calls == 2


async def test_read_error_on_create_is_not_retried() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("reset", request=request)

    client, _ = make_client(handler)
    async with client:
        with pytest.raises(ia.APIConnectionError):
            await client.create(png_bytes())


async def test_timeouts_map_to_api_timeout_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    client, _ = make_client(handler, max_retries=1)
    async with client:
        with pytest.raises(ia.APITimeoutError):
            await client.get("T")


@pytest.mark.parametrize(
    "body",
    [
        b"<html>oops</html>",
        b"[]",
        json.dumps({"status": 200, "message": "success"}).encode(),
        json.dumps(envelope({"task_id": 5, "state": 1})).encode(),
        json.dumps(envelope({"task_id": "T", "state": "done"})).encode(),
        json.dumps(envelope({"task_id": "T", "state": 1, "image": ""})).encode(),
    ],
)
async def test_malformed_answers_raise_typed_errors(body: bytes) -> None:
    client, _ = make_client(lambda r: httpx.Response(200, content=body), max_retries=0)
    async with client:
        with pytest.raises(ia.MalformedResponseError):
            await client.get("T")


async def test_validation_costs_no_request(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:  # pragma: no cover - must not run
        raise AssertionError("no request expected")

    client, limiter = make_client(handler)
    async with client:
        with pytest.raises(ia.ValidationError):
            await client.create(png_bytes(), size="50x50")
        with pytest.raises(ia.ValidationError):
            await client.create(png_bytes(), format="png", bg_color="FFFFFF")
        with pytest.raises(ia.ValidationError):
            await client.create()
        with pytest.raises(ia.ValidationError):
            await client.create(png_bytes(), image_url="https://x.test/a.jpg")
        with pytest.raises(ia.ValidationError):
            await client.create(b"not an image at all")
        with pytest.raises(ia.ValidationError):
            await client.get("")
    assert limiter.acquired == []


async def test_wait_polls_until_done_and_learns() -> None:
    states = [0, 4, 1]

    def handler(request: httpx.Request) -> httpx.Response:
        state = states.pop(0)
        data: dict[str, Any] = {
            "task_id": "T",
            "state": state,
            "progress": 100 if state == 1 else 10,
        }
        if state == 1:
            data["image"] = "https://cdn.test/x.png"
        return httpx.Response(200, json=envelope(data))

    client, limiter = make_client(handler)
    async with client:
        result = await client.wait("T")
    assert result.is_done
    assert limiter.acquired == [True, True, True]  # queries go first in the limiter


async def test_wait_raises_on_failed_state() -> None:
    client, _ = make_client(
        lambda r: httpx.Response(200, json=envelope({"task_id": "T", "state": -8}))
    )
    async with client:
        with pytest.raises(ia.TaskFailedError) as info:
            await client.wait(ia.Task("T"))
    assert info.value.state == ia.TaskState.TIMED_OUT
    assert info.value.retryable


async def test_wait_gives_up_after_its_timeout() -> None:
    client, _ = make_client(
        lambda r: httpx.Response(200, json=envelope({"task_id": "T", "state": 4}))
    )
    async with client:
        with pytest.raises(ia.TaskTimeoutError, match="still processing"):
            await client.wait("T", timeout=0.05)


async def test_download_url_streams_without_the_key(tmp_path: Path) -> None:
    image = png_bytes((300, 400))
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=image, headers={"Content-Length": str(len(image))})

    client, limiter = make_client(handler)
    result = ia.TaskResult(
        task_id="T", state=ia.TaskState.SUCCEEDED, image="https://cdn.test/r.png", image_kind="url"
    )
    async with client:
        path = await client.download(result, tmp_path / "out" / "r.png")
    assert path.read_bytes() == image
    assert "X-API-KEY" not in seen[0].headers
    assert limiter.acquired == []
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["r.png"]


async def test_truncated_download_leaves_nothing(tmp_path: Path) -> None:
    image = png_bytes((300, 400))

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=image[:50], headers={"Content-Length": str(len(image))})

    client, _ = make_client(handler, max_retries=0)
    result = ia.TaskResult(
        task_id="T", state=ia.TaskState.SUCCEEDED, image="https://cdn.test/r.png", image_kind="url"
    )
    async with client:
        with pytest.raises(ia.DownloadError):
            await client.download(result, tmp_path / "r.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_expired_url_raises_result_expired(tmp_path: Path, status: int) -> None:
    client, _ = make_client(lambda r: httpx.Response(status))
    result = ia.TaskResult(
        task_id="T", state=ia.TaskState.SUCCEEDED, image="https://cdn.test/r.png", image_kind="url"
    )
    async with client:
        with pytest.raises(ia.ResultExpiredError):
            await client.download(result, tmp_path / "r.png")


async def test_oversized_download_is_refused(tmp_path: Path) -> None:
    big = png_bytes() + b"\0" * 5000

    client, _ = make_client(
        lambda r: httpx.Response(200, content=big), max_download_bytes=1000, max_retries=0
    )
    result = ia.TaskResult(
        task_id="T", state=ia.TaskState.SUCCEEDED, image="https://cdn.test/r.png", image_kind="url"
    )
    async with client:
        with pytest.raises(ia.DownloadError, match="cap"):
            await client.download(result, tmp_path / "r.png")
    assert list(tmp_path.iterdir()) == []


async def test_redirect_to_http_from_https_is_refused(tmp_path: Path) -> None:
    client, _ = make_client(
        lambda r: httpx.Response(302, headers={"Location": "http://evil.test/x.png"}), max_retries=0
    )
    result = ia.TaskResult(
        task_id="T", state=ia.TaskState.SUCCEEDED, image="https://cdn.test/r.png", image_kind="url"
    )
    async with client:
        with pytest.raises(ia.DownloadError, match="scheme"):
            await client.download(result, tmp_path / "r.png")


async def test_redirect_to_other_https_host_is_followed_without_key(tmp_path: Path) -> None:
    image = png_bytes()
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "cdn.test":
            return httpx.Response(302, headers={"Location": "https://other.test/y.png"})
        return httpx.Response(200, content=image)

    client, _ = make_client(handler)
    result = ia.TaskResult(
        task_id="T", state=ia.TaskState.SUCCEEDED, image="https://cdn.test/r.png", image_kind="url"
    )
    async with client:
        await client.download(result, tmp_path / "r.png")
    assert [r.url.host for r in seen] == ["cdn.test", "other.test"]
    assert all("X-API-KEY" not in r.headers for r in seen)


async def test_download_base64(tmp_path: Path) -> None:
    image = png_bytes()
    client, _ = make_client(lambda r: httpx.Response(500))
    result = ia.TaskResult(
        task_id="T",
        state=ia.TaskState.SUCCEEDED,
        image=base64.b64encode(image).decode(),
        image_kind="base64",
    )
    async with client:
        path = await client.download(result, tmp_path / "r.png")
        assert path.read_bytes() == image
        bad = ia.TaskResult(
            task_id="T", state=ia.TaskState.SUCCEEDED, image="!!notbase64!!", image_kind="base64"
        )
        with pytest.raises(ia.DownloadError, match="base64"):
            await client.download(bad, tmp_path / "bad.png", max_retries=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.png"]


async def test_generate_does_create_wait_download(tmp_path: Path) -> None:
    image = png_bytes()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json=envelope({"task_id": "G"}))
        if request.url.path.endswith("/G"):
            return httpx.Response(
                200,
                json=envelope({"task_id": "G", "state": 1, "image": "https://cdn.test/g.png"}),
            )
        return httpx.Response(200, content=image)

    client, _ = make_client(handler)
    async with client:
        path = await client.generate(png_bytes(), tmp_path / "g.png", size=(300, 400))
    assert path.read_bytes() == image


def test_key_never_in_repr_and_is_required_for_the_vendor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IDPHOTO_API_KEY", raising=False)
    monkeypatch.delenv("IDPHOTO_BASE_URL", raising=False)
    with pytest.raises(ia.ValidationError, match="IDPHOTO_API_KEY"):
        AsyncIDPhotoClient()
    monkeypatch.setenv("IDPHOTO_API_KEY", KEY)
    client = AsyncIDPhotoClient()
    assert KEY not in repr(client) and KEY not in str(vars(client))
    assert client.base_url == "https://techhk.aoscdn.com"
    with pytest.raises(ia.ValidationError, match="base_url"):
        AsyncIDPhotoClient(KEY, "ftp://x")


async def test_queue_timeout_sheds_load_without_sending() -> None:
    import anyio

    sent = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        return httpx.Response(200, json=envelope({"task_id": f"T{sent}"}))

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = AsyncIDPhotoClient(KEY, BASE, qps=0.5, http_client=http, queue_timeout=0.2)
    errors: list[ia.LimiterTimeoutError] = []

    async def one() -> None:
        try:
            await client.create(png_bytes())
        except ia.LimiterTimeoutError as exc:
            errors.append(exc)

    with anyio.fail_after(2):
        async with client, anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(one)
    assert sent == 1
    assert len(errors) == 49
    assert all(e.retry_after is not None and e.retry_after > 0 for e in errors)
    assert "Retry-After" in str(errors[0])


async def test_on_send_fires_per_attempt_after_the_limiter() -> None:
    answers = [
        httpx.Response(429, json=envelope(None, 429, "slow")),
        httpx.Response(200, json=envelope({"task_id": "T8"})),
    ]
    events: list[str] = []

    class OrderLimiter(RecordingLimiter):
        async def acquire(self, *, timeout: float | None = None, priority: bool = False) -> None:
            events.append("acquire")

    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: answers.pop(0)))
    client = AsyncIDPhotoClient(KEY, BASE, limiter=OrderLimiter(), http_client=http)

    async def on_send() -> None:
        events.append("send")

    async with client:
        await client.create(png_bytes(), on_send=on_send)
    assert events == ["acquire", "send", "acquire", "send"]


async def test_wait_aims_late_when_requests_are_scarce() -> None:
    seen: list[bool] = []

    class Spy(PollSchedule):
        def first_delay(self, *, busy: bool = False) -> float:
            seen.append(busy)
            return 0.001

    answer = {"task_id": "T", "state": 1, "image": "https://cdn.test/x.png"}
    client, limiter = make_client(
        lambda r: httpx.Response(200, json=envelope(answer)), poll_schedule=Spy()
    )
    async with client:
        await client.wait("T")
        limiter.waiting = 999  # type: ignore[attr-defined]  # a short queue: latency matters
        await client.wait("T")
        limiter.waiting = 1000  # type: ignore[attr-defined]  # 1 s of requests queued
        await client.wait("T")
    assert seen == [False, False, True]


async def test_requests_on_the_wire_never_exceed_the_pool() -> None:
    import anyio
    import anyio.lowlevel

    active = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        active -= 1
        return httpx.Response(200, json=envelope({"task_id": "T", "state": 4}))

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = AsyncIDPhotoClient(
        KEY, BASE, limiter=RecordingLimiter(), http_client=http, max_connections=2
    )
    async with client, anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(client.get, "T")
    assert peak == 2


@pytest.mark.parametrize("cut", [False, True])
async def test_large_download_spills_to_disk_and_stays_atomic(tmp_path: Path, cut: bool) -> None:
    from idphoto_async._download import SPOOL_BYTES

    image = b"\xff\xd8\xff" + bytes(3 * SPOOL_BYTES) + b"\xff\xd9"  # over the memory buffer

    def handler(request: httpx.Request) -> httpx.Response:
        body = image[: SPOOL_BYTES * 2] if cut else image
        return httpx.Response(200, content=body, headers={"Content-Length": str(len(image))})

    client, _ = make_client(handler, max_retries=0)
    result = ia.TaskResult(
        task_id="T", state=ia.TaskState.SUCCEEDED, image="https://cdn.test/r.jpg", image_kind="url"
    )
    async with client:
        if cut:
            with pytest.raises(ia.DownloadError):
                await client.download(result, tmp_path / "out" / "r.jpg")
        else:
            path = await client.download(result, tmp_path / "out" / "r.jpg")
            assert path.read_bytes() == image
    expected = [] if cut else ["r.jpg"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == expected


def test_small_multipart_bodies_go_out_as_one_chunk() -> None:
    """httpx streams a multipart body part by part (one socket write each); a small one is
    joined first, a large one stays streamed instead of being copied whole."""
    from idphoto_async._transport import SMALL_BODY, _join_small_body

    def build(image: bytes) -> httpx.Request:
        fields = {"sync": (None, "0"), "size": (None, "295x413"), "image_file": ("a.jpg", image)}
        return httpx.Request("POST", BASE, files=fields)

    streamed = build(jpeg_bytes())
    assert len(list(streamed.stream)) > 5  # what httpx would write piece by piece
    small = build(jpeg_bytes())
    _join_small_body(small)
    (chunk,) = list(small.stream)
    assert len(chunk) == int(small.headers["Content-Length"]) == len(streamed.read())
    assert chunk.endswith(b"--\r\n") and b'name="image_file"' in chunk
    large = build(b"\xff" * (SMALL_BODY + 1))
    _join_small_body(large)
    assert len(list(large.stream)) > 5


async def test_wait_never_sheds_the_queries_of_a_paid_task() -> None:
    """queue_timeout sheds new work; a task already created is polled however long it waits."""
    done = {"task_id": "T1", "state": 1, "image": "https://cdn.test/r.jpg"}
    answers = {"POST": envelope({"task_id": "T1"}), "GET": envelope(done)}
    http = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=answers[r.method]))
    )
    schedule = PollSchedule(initial_guess=0.001, min_delay=0.001, max_delay=0.01)
    client = AsyncIDPhotoClient(
        KEY,
        BASE,
        http_client=http,
        limiter=ia.TokenBucketLimiter(5),  # a slot every ~0.2 s
        queue_timeout=0.05,
        poll_schedule=schedule,
    )
    async with http, client:
        task = await client.create(jpeg_bytes())
        with pytest.raises(ia.LimiterTimeoutError):  # one query: shed at once
            await client.get(task.task_id)
        result = await client.wait(task)  # waits its turn (~0.2 s) past the 0.05 s bound
        assert result.is_done
        with pytest.raises(ia.LimiterTimeoutError):  # and a per-call bound still applies
            await client.get(task.task_id, queue_timeout=0.01)
