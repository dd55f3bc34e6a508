"""Only a whole image is ever stored: lying and cut result hosts on loopback, base64 results,
and every error writing the destination as a DownloadError."""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.abc
import httpx
import pytest
from _raw_http import http_answer, jpeg, noisy_png, raw_server

import idphoto_async as ia
from idphoto_async._retry import RetryPolicy

pytestmark = pytest.mark.anyio

BACKEND: ia.HTTPBackend = "httpx"
"""The pool of the clients made here (each test runs on both: see ``conftest.py``)."""


@pytest.fixture(autouse=True)
def _each_http_backend(http_backend: ia.HTTPBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.BACKEND", http_backend)


PNG = noisy_png()
FAST = RetryPolicy(max_retries=2, initial=0.01, maximum=0.02)


def result_at(url: str, task_id: str = "T1") -> ia.TaskResult:
    return ia.TaskResult(task_id, ia.TaskState.SUCCEEDED, image=url, image_kind="url")


def client(base: str = "http://127.0.0.1:1", **kwargs: object) -> ia.AsyncIDPhotoClient:
    return ia.AsyncIDPhotoClient(
        "k", base, qps=1000, retry_policy=FAST, http_backend=BACKEND, **kwargs
    )  # type: ignore[arg-type]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def short_length(stream: anyio.abc.SocketStream, request: bytes) -> None:
    """Declares half the PNG's length (and sends it all: the rest is garbage to the client)."""
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(PNG) // 2}\r\n\r\n".encode()
    await stream.send(head + PNG)
    await stream.aclose()


async def no_length_cut(stream: anyio.abc.SocketStream, request: bytes) -> None:
    """No Content-Length: the body ends when the connection closes, here halfway."""
    await stream.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + PNG[: len(PNG) // 2])
    await stream.aclose()


@pytest.mark.parametrize("lie", [short_length, no_length_cut], ids=["short-length", "cut"])
async def test_a_cut_image_is_never_stored(tmp_path: Path, lie: object) -> None:
    out = tmp_path / "out"
    # aiohttp's parser refuses the bytes past a declared length itself; httpx stops at the
    # length, and the image check finds the PNG cut short.
    refused = "RemoteProtocolError" if BACKEND == "aiohttp" and lie is short_length else None
    async with raw_server(lie) as (base, requests), client() as c:  # type: ignore[arg-type]
        with pytest.raises(ia.DownloadError, match=refused or "incomplete PNG") as caught:
            await c.download(result_at(f"{base}/r.png"), out / "a.png")
    assert caught.value.retryable and caught.value.task_id == "T1"
    assert len(requests) == 1 + FAST.max_retries  # retried, then given up
    assert leftovers(out) == []  # not even a temporary file


async def test_a_cut_image_is_downloaded_again_until_whole(tmp_path: Path) -> None:
    served = 0

    async def lies_once(stream: anyio.abc.SocketStream, request: bytes) -> None:
        nonlocal served
        served += 1
        if served == 1:
            await short_length(stream, request)
        else:
            await stream.send(http_answer(PNG))

    async with raw_server(lies_once) as (base, requests), client() as c:
        path = await c.download(result_at(f"{base}/r.png"), tmp_path / "a.png")
    assert path.read_bytes() == PNG
    assert len(requests) == 2
    assert leftovers(tmp_path) == ["a.png"]


async def test_a_cut_jpeg_is_refused_and_a_whole_one_kept(tmp_path: Path) -> None:
    image = jpeg()

    async def cut_jpeg(stream: anyio.abc.SocketStream, request: bytes) -> None:
        body = image if b"whole" in request.split(b"\r\n")[0] else image[:-40]
        await stream.send(http_answer(body))

    async with raw_server(cut_jpeg) as (base, _), client() as c:
        with pytest.raises(ia.DownloadError, match="incomplete JPEG"):
            await c.download(result_at(f"{base}/cut.jpg"), tmp_path / "cut.jpg", max_retries=0)
        path = await c.download(result_at(f"{base}/whole.jpg"), tmp_path / "whole.jpg")
    assert path.read_bytes() == image
    assert leftovers(tmp_path) == ["whole.jpg"]


async def test_compressed_answers_are_decoded(tmp_path: Path) -> None:
    """A gzip-encoded API answer and result (most bodies are read as they came: not these)."""
    import gzip
    import json

    async def gzipped(stream: anyio.abc.SocketStream, request: bytes) -> None:
        if request.startswith(b"GET /r.png"):
            body = PNG
        else:
            data = {"task_id": "T1", "state": 1, "image": f"{base}/r.png"}
            body = json.dumps({"status": 200, "message": "ok", "data": data}).encode()
        await stream.send(http_answer(gzip.compress(body), headers={"Content-Encoding": "gzip"}))

    async with raw_server(gzipped) as (base, requests), client(base) as c:
        result = await c.get("T1")
        path = await c.download(result, tmp_path / "a.png")
    assert result.is_done and result.image == f"{base}/r.png"
    assert path.read_bytes() == PNG
    assert len(requests) == 2


async def test_a_cut_base64_result_is_queried_again(tmp_path: Path) -> None:
    whole = base64.b64encode(PNG).decode()
    cut = whole[: (len(whole) // 8) * 4]  # valid base64 of half the image
    answers = [cut, whole]
    queries: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        queries.append(request.url.path)
        data = {"task_id": "T1", "state": 1, "image": answers.pop(0)}
        return httpx.Response(200, json={"status": 200, "message": "ok", "data": data})

    http = httpx.AsyncClient(transport=httpx.MockTransport(api))
    async with client("https://api.test", http_client=http) as c:
        first = await c.get("T1")
        path = await c.download(first, tmp_path / "a.png")
    assert path.read_bytes() == PNG
    assert len(queries) == 2  # the first get, and one more for the retry
    # and when every answer is cut, nothing is written
    answers[:] = [cut] * 5
    http = httpx.AsyncClient(transport=httpx.MockTransport(api))
    async with client("https://api.test", http_client=http) as c:
        with pytest.raises(ia.DownloadError, match="incomplete PNG"):
            await c.download(await c.get("T1"), tmp_path / "b.png")
    assert leftovers(tmp_path) == ["a.png"]


async def test_a_folder_or_a_file_in_the_way_is_a_download_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_bytes(b"x")
    (tmp_path / "folder").mkdir()

    async def answer(stream: anyio.abc.SocketStream, request: bytes) -> None:
        await stream.send(http_answer(PNG))

    async with raw_server(answer) as (base, requests), client() as c:
        for dest in (tmp_path / "folder", tmp_path / "afile" / "sub.png"):
            with pytest.raises(ia.DownloadError) as caught:
                await c.download(result_at(f"{base}/r.png"), dest)
            assert not caught.value.retryable
            assert str(dest) in str(caught.value) and "downloaded again" in str(caught.value)
    # One transfer each, nothing retried: the folder is found when the result is written
    # (in the same worker-thread hop: a check of its own cost every download a hop).
    assert len(requests) == 2
    assert leftovers(tmp_path / "folder") == []


@contextlib.contextmanager
def tiny_filesystem(path: Path) -> Iterator[Path]:
    """A 16 KiB tmpfs at ``path`` (needs root and mount rights; skips otherwise)."""
    path.mkdir()
    mounted = os.geteuid() == 0 and (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )
    if not mounted:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


async def test_a_full_disk_is_a_download_error(tmp_path: Path) -> None:
    big_png = PNG[:-12] + PNG * 39 + PNG[-12:]  # still ends with IEND: whole to the checker
    big = ia.TaskResult(
        "T1", ia.TaskState.SUCCEEDED, image=base64.b64encode(big_png).decode(), image_kind="base64"
    )
    with tiny_filesystem(tmp_path / "full") as full:
        async with client() as c:
            with pytest.raises(ia.DownloadError, match="No space left") as caught:
                await c.download(big, full / "a.png")
        assert not caught.value.retryable
        assert leftovers(full) == []
