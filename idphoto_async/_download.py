"""Saving a result to disk: streamed, size-checked and atomic (temporary file + rename).

A URL result is streamed in chunks to a temporary file beside the destination, its length
checked against Content-Length and a cap, then renamed over the destination: a cut or
oversized download never survives under the final name. A base64 result is decoded and
written the same way. The API key is never sent to the result host.

File I/O runs in anyio worker threads (not aiofiles, which runs on asyncio's executor only:
this SDK must run unchanged on trio). A result is buffered in memory up to `SPOOL_BYTES` and
written, flushed and renamed in one thread hop; a larger one spills to the temporary file as
it streams.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import anyio
import anyio.to_thread
import httpx

from ._errors import DownloadError, ResultExpiredError
from ._models import TaskResult

__all__ = ["save_result"]

CHUNK_SIZE = 64 * 1024
SPOOL_BYTES = 256 * 1024
"""A result up to this size is written to disk in one go, at the end (one thread hop)."""
DOWNLOAD_DEADLINE_FACTOR = 4.0
"""A whole download attempt must end within this many read timeouts: httpx's read timeout
bounds each read only, so a host trickling a byte at a time would otherwise never time out."""
MAX_REDIRECTS = 5
_EXPIRED_STATUSES = frozenset({403, 404, 410})
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


async def save_result(
    http: httpx.AsyncClient,
    result: TaskResult,
    dest: str | os.PathLike[str],
    *,
    max_bytes: int,
    timeout: httpx.Timeout | None = None,
) -> Path:
    """Write ``result``'s image to ``dest`` atomically and return the path."""
    if not result.is_done or result.image is None:
        raise DownloadError(f"Task {result.task_id} has no image yet (state {int(result.state)}).")
    path = Path(dest)
    expires = result.expires_at
    if result.is_url and expires is not None and expires <= datetime.now(UTC):
        raise ResultExpiredError(result.task_id, f" (it expired at {expires.isoformat()})")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    spool = _Spool(tmp)
    try:
        if result.is_url:
            read = (timeout or http.timeout).read
            deadline = DOWNLOAD_DEADLINE_FACTOR * read if read else None
            try:
                with anyio.fail_after(deadline):
                    await _stream_url(http, result, spool, max_bytes=max_bytes, timeout=timeout)
            except TimeoutError:
                raise DownloadError(
                    f"The download of task {result.task_id} did not finish within "
                    f"{deadline:g} s (the result host trickled or stalled)."
                ) from None
        else:
            _decode_base64(result, spool, max_bytes=max_bytes)
        await anyio.to_thread.run_sync(spool.finish, path)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(spool.discard)
        raise
    return path


class _Spool:
    """The bytes of a result: kept in memory up to `SPOOL_BYTES`, then in ``tmp``.

    A result (tens of KB) thus costs one worker-thread hop, `finish`: create the directory,
    write, flush, rename over the destination. Larger ones spill to ``tmp`` as they come.
    """

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.file: BinaryIO | None = None

    def add(self, chunk: bytes) -> bool:
        """Keep ``chunk``; whether the buffer should now `spill` to disk."""
        self.chunks.append(chunk)
        self.buffered += len(chunk)
        return self.buffered >= SPOOL_BYTES

    def spill(self) -> None:
        """Write the buffered chunks to ``tmp`` (worker thread)."""
        if self.file is None:
            self.tmp.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.tmp, "wb")  # noqa: SIM115 - closed by finish or discard
        for chunk in self.chunks:
            self.file.write(chunk)
        self.chunks.clear()
        self.buffered = 0

    def finish(self, dest: Path) -> None:
        """Write the rest to ``tmp`` and rename it to ``dest`` (worker thread)."""
        self.spill()
        assert self.file is not None
        file, self.file = self.file, None
        with file:
            file.flush()
        os.replace(self.tmp, dest)

    def discard(self) -> None:
        """Drop what was written (worker thread)."""
        self.chunks.clear()
        if self.file is not None:
            file, self.file = self.file, None
            with contextlib.suppress(OSError):
                file.close()
        with contextlib.suppress(OSError):
            self.tmp.unlink()


def _decode_base64(result: TaskResult, spool: _Spool, *, max_bytes: int) -> None:
    text = result.image or ""
    if text.startswith("data:"):
        text = text.partition(",")[2]
    if len(text) * 3 // 4 > max_bytes:
        raise DownloadError(
            f"The base64 result of task {result.task_id} is over the {max_bytes} byte cap."
        )
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise DownloadError(
            f"The result of task {result.task_id} is not valid base64 image data."
        ) from None
    _check_image(data[:16], result.task_id)
    spool.add(data)


async def _stream_url(
    http: httpx.AsyncClient,
    result: TaskResult,
    spool: _Spool,
    *,
    max_bytes: int,
    timeout: httpx.Timeout | None,
) -> None:
    try:
        url = httpx.URL(result.image or "")
    except (httpx.InvalidURL, ValueError):
        raise DownloadError(
            f"The result URL of task {result.task_id} is not a valid URL."
        ) from None
    for _ in range(MAX_REDIRECTS + 1):
        # A fresh request: no API key header ever goes to the result host.
        request = http.build_request("GET", url, timeout=timeout or http.timeout)
        try:
            response = await http.send(request, stream=True, follow_redirects=False)
        except httpx.InvalidURL:  # httpx parses a redirect's Location even when not following
            raise DownloadError(
                f"The result host of task {result.task_id} redirected to an invalid URL."
            ) from None
        except httpx.HTTPError as exc:
            raise DownloadError(
                f"Downloading the result of task {result.task_id} failed ({type(exc).__name__})."
            ) from None
        try:
            if response.is_redirect:
                url = _redirect_target(url, response, result.task_id)
                continue
            if response.status_code in _EXPIRED_STATUSES:
                raise ResultExpiredError(
                    result.task_id, f" (the result host answered {response.status_code})"
                )
            if response.status_code != 200:
                raise DownloadError(
                    f"The result host answered HTTP {response.status_code} for task "
                    f"{result.task_id}."
                )
            await _write_stream(response, spool, max_bytes=max_bytes, task_id=result.task_id)
            return
        finally:
            await response.aclose()
    raise DownloadError(f"Too many redirects downloading the result of task {result.task_id}.")


def _redirect_target(url: httpx.URL, response: httpx.Response, task_id: str) -> httpx.URL:
    location = response.headers.get("Location", "")
    try:
        target = url.join(location)
    except (httpx.InvalidURL, ValueError):
        raise DownloadError(
            f"The result of task {task_id} redirected to an invalid URL ({location[:80]!r})."
        ) from None
    if target.scheme not in ("http", "https") or (
        url.scheme == "https" and target.scheme != "https"
    ):
        raise DownloadError(
            f"The result of task {task_id} redirected to a refused URL scheme ({target.scheme})."
        )
    return target


async def _write_stream(
    response: httpx.Response, spool: _Spool, *, max_bytes: int, task_id: str
) -> None:
    declared_header = response.headers.get("Content-Length")
    declared = int(declared_header) if declared_header and declared_header.isdigit() else None
    if response.headers.get("Content-Encoding", "identity") != "identity":
        declared = None  # the length is of the encoded body
    if declared is not None and declared > max_bytes:
        raise DownloadError(f"The result of task {task_id} is {declared} bytes, over the cap.")
    received = 0
    head = b""
    try:
        async for chunk in response.aiter_bytes(CHUNK_SIZE):
            received += len(chunk)
            if received > max_bytes:
                raise DownloadError(
                    f"The result of task {task_id} is over the {max_bytes} byte cap."
                )
            if len(head) < 16:
                head += chunk[: 16 - len(head)]
            if spool.add(chunk):
                await anyio.to_thread.run_sync(spool.spill)
    except httpx.HTTPError as exc:
        raise DownloadError(
            f"The download of task {task_id} was cut short after {received} bytes "
            f"({type(exc).__name__})."
        ) from None
    if declared is not None and received != declared:
        raise DownloadError(f"The download of task {task_id} got {received} of {declared} bytes.")
    _check_image(head, task_id)


def _check_image(head: bytes, task_id: str) -> None:
    if not head.startswith(_IMAGE_MAGIC):
        raise DownloadError(f"The result of task {task_id} is not a PNG or JPEG image.")
