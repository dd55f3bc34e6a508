"""Hostile input: malformed answers, absurd results, redirects, trickling bodies, file names.

Whatever a server (or a man in the middle of a plain-http test setup) sends, the SDK answers
with a typed ``IDPhotoError`` in bounded time: never another exception, never a hang, never a
crashed batch. Whatever the input names, outputs land inside ``out_dir``.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
import httpx
import pytest
from _batch_helpers import make_images, tiny_jpeg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idphoto_async import AsyncIDPhotoClient
from idphoto_async._batch import BatchRunner
from idphoto_async._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    DownloadError,
    IDPhotoError,
    MalformedResponseError,
    ResultExpiredError,
)
from idphoto_async._models import Task, TaskResult, TaskState
from idphoto_async._paths import BatchItem, output_path, to_item
from idphoto_async._retry import RetryPolicy
from idphoto_async.testing import LocalServer

KEY = "hostile-key-0123456789"
API = "https://api.example"
NO_RETRY = RetryPolicy(max_retries=0)
PNG_HEAD = b"\x89PNG\r\n\x1a\n"

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
FIELDS = ["task_id", "state", "progress", "image", "created_at", "processed_at", "completed_at"]
data_objects = st.dictionaries(st.sampled_from(FIELDS), json_values) | st.dictionaries(
    st.sampled_from(FIELDS),
    st.sampled_from(
        [
            "T1",
            "",
            "1",
            "-7",
            "99",
            "1e400",
            "nan",
            1,
            -1,
            -999,
            10**20,
            1.5,
            1e308,
            -1e308,
            True,
            None,
            [],
            {},
            "http://x/y.png",
            "data:,",
            "!!!",
            "9999999999999999999",
            "2024-13-45T99:99:99",
        ]
    ),
)


def mock_client(handler: Callable[[httpx.Request], Any], **kwargs: Any) -> AsyncIDPhotoClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    kwargs.setdefault("retry_policy", NO_RETRY)
    return AsyncIDPhotoClient(api_key=KEY, base_url=API, http_client=http, qps=1000, **kwargs)


# -- response parsers ----------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(data_objects | json_values)
def test_parsers_accept_or_raise_malformed(data: Any) -> None:
    for parse in (TaskResult.from_api, Task.from_api):
        try:
            parsed = parse(data)
        except MalformedResponseError:
            continue
        assert isinstance(parsed.task_id, str) and 0 < len(parsed.task_id) <= 256
        if isinstance(parsed, TaskResult):
            assert isinstance(parsed.state, TaskState)
            assert 0 <= parsed.progress <= 100
            if parsed.is_done:
                assert parsed.image
            parsed.expires_at  # noqa: B018 - must not raise either
            repr(parsed)


def test_unknown_states_follow_the_sign_rule() -> None:
    for raw, done, failed in [(7, False, False), (-42, False, True), (1, True, False)]:
        result = TaskResult.from_api({"task_id": "t", "state": raw, "image": "https://x/y"})
        assert (result.is_done, result.is_failed) == (done, failed)
    with pytest.raises(MalformedResponseError):
        TaskResult.from_api({"task_id": "t", "state": 10**9})


# -- the transport ---------------------------------------------------------------------------


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    status=st.sampled_from([200, 200, 200, 201, 204, 301, 302, 400, 401, 404, 413, 500, 503]),
    body=st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.builds(
            lambda status, message, data: json.dumps(
                {"status": status, "message": message, "data": data}
            ).encode(),
            json_values,
            json_values,
            data_objects | json_values,
        ),
    ),
    headers=st.dictionaries(
        st.sampled_from(["Retry-After", "Content-Type", "Location"]),
        st.sampled_from(["1", "-5", "1e999", "Wed, 21 Oct 2015 07:28:00 GMT", "nope", ""]),
    ),
)
def test_any_answer_is_a_result_or_a_typed_error(
    status: int, body: bytes, headers: dict[str, str]
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, content=body, headers=headers)

    async def main() -> None:
        async with mock_client(handler) as client:
            with anyio.fail_after(5):
                for call in (client.get("T1"), client.create(tiny_jpeg())):
                    try:
                        await call
                    except IDPhotoError as exc:
                        assert str(exc)
                        assert KEY not in str(exc)

    anyio.run(main)
    # Never followed a redirect, never retried (max_retries=0) except the 429 limiter path.
    assert all(r.url.host == "api.example" for r in seen)


@pytest.mark.parametrize("location", ["https://evil.example/steal", "https://[::1", "data:x,y"])
def test_api_redirect_is_not_followed(location: str) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(307, headers={"Location": location})

    async def main() -> None:
        async with mock_client(handler) as client:
            with pytest.raises((APIStatusError, MalformedResponseError, APIConnectionError)):
                await client.get("T1")

    anyio.run(main)
    assert seen == [f"{API}/api/tasks/visual/idphoto/T1"]


# -- results: base64, caps, redirects, endless bodies ------------------------------------------


def done_result(image: str) -> TaskResult:
    return TaskResult.from_api({"task_id": "T", "state": 1, "image": image})


@pytest.mark.anyio
@pytest.mark.parametrize(
    "image",
    [
        "!!!not base64!!!",
        "data:image/png;base64,@@@@",
        base64.b64encode(b"GIF89a not an id photo").decode(),
        base64.b64encode(b"").decode() + "=",
        "A" * 5_000_000,  # decodes to 3.75 MB, over the test's 1 MB cap
        "file:///etc/passwd",  # not a URL the SDK fetches: treated as (invalid) base64
    ],
    ids=["garbage", "data-url", "not-an-image", "padding", "over-cap", "file-url"],
)
async def test_absurd_base64_results_are_download_errors(tmp_path: Path, image: str) -> None:
    async with mock_client(lambda r: httpx.Response(500), max_download_bytes=1_000_000) as client:
        with pytest.raises(DownloadError):
            await client.download(done_result(image), tmp_path / "o.png", max_retries=0)
    assert list(tmp_path.iterdir()) == []


async def endless(chunk: bytes = b"\0" * 65536) -> AsyncIterator[bytes]:
    yield PNG_HEAD
    while True:
        yield chunk
        await anyio.lowlevel.checkpoint()


@pytest.mark.anyio
@pytest.mark.parametrize("declared", [None, "999999999999"])
async def test_result_over_the_cap_or_endless_is_refused(
    tmp_path: Path, declared: str | None
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Length": declared} if declared else {}
        return httpx.Response(200, content=endless(), headers=headers)

    async with mock_client(handler, max_download_bytes=2_000_000) as client:
        with anyio.fail_after(10), pytest.raises(DownloadError, match="cap"):
            await client.download(done_result("https://cdn.example/r.png"), tmp_path / "o.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    "location",
    [
        "file:///etc/passwd",
        "ftp://cdn.example/r.png",
        "http://cdn.example/r.png",  # https -> http downgrade
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "https://[::1",
        "http://exa mple.com/\x00",
    ],
)
async def test_redirects_to_other_schemes_are_refused(tmp_path: Path, location: str) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"Location": location})

    async with mock_client(handler) as client:
        with pytest.raises(DownloadError, match=r"scheme|invalid|failed"):
            await client.download(done_result("https://cdn.example/r.png"), tmp_path / "o.png")
    assert len(seen) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
async def test_redirect_loop_ends(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "/again"})

    async with mock_client(handler) as client:
        with anyio.fail_after(5), pytest.raises(DownloadError, match="redirects"):
            await client.download(done_result("https://cdn.example/r.png"), tmp_path / "o.png")


# -- trickling servers (real sockets: httpx's timeouts live in the transport) ----------------


class TrickleServer:
    """Answers every request with headers, then one byte every 50 ms, forever."""

    def __init__(self, content_type: bytes, first: bytes) -> None:
        self.content_type = content_type
        self.first = first
        self.stop = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> TrickleServer:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self.threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.sock.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: " + self.content_type + b"\r\n"
                    b"Content-Length: 1000000\r\n\r\n" + self.first
                )
                while not self.stop.wait(0.05):  # the hostile server's pace, not a test timer
                    conn.sendall(b" ")
            except OSError:
                return


@pytest.mark.anyio
async def test_trickling_api_answer_times_out() -> None:
    with TrickleServer(b"application/json", b'{"status": 200, "data": {') as srv:
        async with AsyncIDPhotoClient(
            api_key=KEY, base_url=f"http://127.0.0.1:{srv.port}", timeout=0.3, max_retries=0
        ) as client:
            with anyio.fail_after(10), pytest.raises(APITimeoutError, match="trickled"):
                await client.get("T1")


@pytest.mark.anyio
async def test_trickling_result_download_times_out(tmp_path: Path) -> None:
    with TrickleServer(b"image/png", PNG_HEAD) as srv:
        async with AsyncIDPhotoClient(
            api_key=KEY, base_url="http://127.0.0.1:9", timeout=0.3, max_retries=0
        ) as client:
            result = done_result(f"http://127.0.0.1:{srv.port}/r.png")
            with anyio.fail_after(10), pytest.raises(DownloadError, match="did not finish"):
                await client.download(result, tmp_path / "o.png")
    assert list(tmp_path.iterdir()) == []


# -- a hostile server never crashes a batch ----------------------------------------------------

HOSTILE_QUERIES: list[Any] = [
    {"state": "abc"},
    {"state": 1},  # done without an image
    {"state": 1, "image": "file:///etc/passwd"},
    {"state": 1, "image": "https://cdn.example/gone.png"},  # 404 at the result host
    {"state": 1, "image": "http://cdn.example/not-an-image.png"},
    {"state": -999},
    {"task_id": ["list"], "state": 1},
    "not an object",
]


@pytest.mark.anyio
async def test_hostile_answers_fail_single_inputs_not_the_batch(tmp_path: Path) -> None:
    inputs = make_images(tmp_path / "in", len(HOSTILE_QUERIES))
    ids = iter(range(10**6))
    answers: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "cdn.example":
            if "gone" in request.url.path:
                return httpx.Response(404)
            return httpx.Response(200, content=b"<html>not an image</html>")
        if request.method == "POST":
            task_id = f"T{next(ids)}"
            answers[task_id] = HOSTILE_QUERIES[len(answers) % len(HOSTILE_QUERIES)]
            return httpx.Response(200, json={"status": 200, "data": {"task_id": task_id}})
        task_id = request.url.path.rsplit("/", 1)[-1]
        data = answers[task_id]
        if isinstance(data, dict):
            data = {"task_id": task_id, **data}
        return httpx.Response(200, json={"status": 200, "message": "success", "data": data})

    async with mock_client(handler, max_retries=0) as client:
        from idphoto_async._polling import PollSchedule

        client.poll_schedule = PollSchedule(initial_guess=0.01, min_delay=0.01)
        runner = BatchRunner(client, out_dir=tmp_path / "out", max_in_flight=1, task_retries=0)
        with anyio.fail_after(30):
            async with runner.outcomes(inputs) as stream:
                outcomes = [o async for o in stream]
    assert len(outcomes) == len(inputs)
    assert {o.status for o in outcomes} == {"failed"}
    kinds = {type(o.error).__name__ for o in outcomes}
    assert all(isinstance(o.error, IDPhotoError) for o in outcomes), kinds
    assert any(isinstance(o.error, ResultExpiredError) for o in outcomes)
    assert any(isinstance(o.error, DownloadError) for o in outcomes)
    assert any(isinstance(o.error, MalformedResponseError) for o in outcomes)
    assert not list((tmp_path / "out").rglob("*.png"))


# -- names: outputs never leave out_dir --------------------------------------------------------

name_parts = st.sampled_from(
    ["..", ".", "", "a b", "ü", "日本", "..hidden", "x..y", "/", "\\", "C:", "nul\x00", "\n",
     "con", "~", "$HOME", "a" * 300, "%2e%2e", " ", "-rf"]
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(name_parts | st.text(max_size=12), min_size=1, max_size=6), st.booleans())
def test_output_paths_stay_inside_out_dir(parts: list[str], absolute: bool) -> None:
    out = Path("/srv/out")
    raw = ("/" if absolute else "") + "/".join(parts)
    if "\x00" in raw:
        raw = raw.replace("\x00", "_")
    for item in (to_item(raw), BatchItem(raw, PurePosixPath(raw or "x"))):
        text = output_path(out, item, ".png")
        dest = Path(text)
        assert dest.is_relative_to(out) and dest != out
        assert ".." not in dest.parts
        assert os.path.normpath(dest) == str(dest) == text


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(qps=None, processing_time="0") as srv:
        yield srv


@pytest.mark.anyio
async def test_names_and_symlinks_out_of_the_tree(server: LocalServer, tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    jpeg = tiny_jpeg()
    names = ["a b.jpg", "ü 日本.jpg", "..dots..jpg", "sub/inner.jpg"]
    for name in names:
        (src / name).write_bytes(jpeg)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outside_file = tmp_path / "outside.jpg"
    outside_file.write_bytes(jpeg)
    (src / "link.jpg").symlink_to(outside_file)  # a link to a file outside: fine, output inside
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(elsewhere, target_is_directory=True)  # a trap inside out_dir
    from idphoto_async._paths import discover

    async with AsyncIDPhotoClient(api_key=KEY, base_url=server.base_url, qps=500) as client:
        items: list[Any] = [*discover([str(src)]), str(tmp_path / "in" / ".." / "outside.jpg")]
        items.append(BatchItem(str(outside_file), PurePosixPath("../../../../tmp/escape")))
        runner = BatchRunner(client, out_dir=out, max_in_flight=4)
        with anyio.fail_after(30):
            async with runner.outcomes(items) as stream:
                outcomes = {o.input: o for o in [o async for o in stream]}
    assert list(elsewhere.iterdir()) == []  # nothing went through the link
    trapped = outcomes[str(src / "sub" / "inner.jpg")]
    assert trapped.status == "failed" and "outside" in str(trapped.error)
    real_out = out.resolve()
    for o in outcomes.values():
        if o.status == "succeeded":
            assert o.output is not None
            assert Path(os.path.realpath(o.output)).is_relative_to(real_out)
    # outside.jpg is named three ways (through the link, with "..", and as an item): it is
    # one photo, made once; the trapped one cost nothing.
    assert str(tmp_path / "in" / ".." / "outside.jpg") not in outcomes
    assert sum(o.status == "succeeded" for o in outcomes.values()) == len(items) - 3
    assert server.stats()["creates"] == len(items) - 3
