"""Saving a result to disk: streamed, size-checked and atomic (temporary file + rename).

A URL result is streamed in chunks to a temporary file beside the destination, its length
checked against Content-Length and a cap, then renamed over the destination: a cut or
oversized download never survives under the final name. A base64 result is decoded and
written the same way. The API key is never sent to the result host.

File I/O goes through anyio's thread-backed file API rather than aiofiles: aiofiles runs on
asyncio's executor only, and this SDK must run unchanged on trio.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

import anyio
import httpx

from ._errors import DownloadError, ResultExpiredError
from ._models import TaskResult

__all__ = ["save_result"]

CHUNK_SIZE = 64 * 1024
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
    await anyio.Path(path.parent).mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        if result.is_url:
            read = (timeout or http.timeout).read
            deadline = DOWNLOAD_DEADLINE_FACTOR * read if read else None
            try:
                with anyio.fail_after(deadline):
                    await _stream_url(http, result, tmp, max_bytes=max_bytes, timeout=timeout)
            except TimeoutError:
                raise DownloadError(
                    f"The download of task {result.task_id} did not finish within "
                    f"{deadline:g} s (the result host trickled or stalled)."
                ) from None
        else:
            await _write_base64(result, tmp, max_bytes=max_bytes)
        await anyio.Path(tmp).replace(path)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _remove_quietly(tmp)
        raise
    return path


async def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        await anyio.Path(path).unlink()


async def _write_base64(result: TaskResult, tmp: Path, *, max_bytes: int) -> None:
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
    async with await anyio.open_file(tmp, "wb") as f:
        await f.write(data)
        await f.flush()


async def _stream_url(
    http: httpx.AsyncClient,
    result: TaskResult,
    tmp: Path,
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
            await _write_stream(response, tmp, max_bytes=max_bytes, task_id=result.task_id)
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
    response: httpx.Response, tmp: Path, *, max_bytes: int, task_id: str
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
        async with await anyio.open_file(tmp, "wb") as f:
            async for chunk in response.aiter_bytes(CHUNK_SIZE):
                received += len(chunk)
                if received > max_bytes:
                    raise DownloadError(
                        f"The result of task {task_id} is over the {max_bytes} byte cap."
                    )
                if len(head) < 16:
                    head += chunk[: 16 - len(head)]
                await f.write(chunk)
            await f.flush()
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
