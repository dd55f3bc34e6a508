"""Saving a result to disk: streamed, checked whole, atomic (temporary file + rename).

A URL result is streamed in chunks to a temporary file beside the destination, its length
checked against Content-Length and a cap, and the image checked whole (it starts with the
PNG or JPEG signature and ends with the format's end marker: PNG's ``IEND`` chunk, JPEG's
EOI), then renamed over the destination: a cut, lying or oversized download never survives
under the final name. A base64 result is decoded, checked and written the same way. Every
phase of a download is bounded in time (`idphoto_async._timeouts.PhaseDeadline`). The API
key is never sent to the result host. Any failure to write the destination (a folder, a
read-only path, a full disk) is a `DownloadError` with ``retryable=False``.

The file work of a result up to `SPOOL_BYTES` (check for a folder in the way, write, flush,
rename) is one `idphoto_async._file_work.FileWork` operation: on the event loop while the
disk is fast, in an anyio worker thread otherwise (not aiofiles, which runs on asyncio's
executor only: this SDK must run unchanged on trio). A larger result spills to the
temporary file in worker threads as it streams.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import glob
import os
import secrets
from datetime import UTC, datetime
from typing import BinaryIO

import anyio
import anyio.to_thread
import httpx

from ._errors import DownloadError, ResultExpiredError
from ._file_work import FileWork
from ._models import TaskResult
from ._timeouts import PhaseDeadline
from ._transport import body_chunks

__all__ = ["remove_stale_parts", "save_file"]

CHUNK_SIZE = 64 * 1024
SPOOL_BYTES = 256 * 1024
"""A result up to this size is written to disk in one go, at the end (one thread hop)."""
DOWNLOAD_DEADLINE_FACTOR = 4.0
"""A result's body must arrive within this many read timeouts (and its headers within one):
httpx's read timeout bounds each read only, so a host trickling a byte at a time would
otherwise never time out."""
MAX_REDIRECTS = 5
_EXPIRED_STATUSES = frozenset({403, 404, 410})
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
"""The IEND chunk (length 0, type, CRC) that ends every PNG."""
JPEG_END = b"\xff\xd9"
"""The EOI marker that ends a JPEG (trailing NUL padding is tolerated)."""
TAIL_BYTES = len(PNG_END)
_WRITE_ADVICE = (
    "Pass a file path in a writable folder with free space. The result can be downloaded "
    "again (get(task_id), then download) until it expires, 1 hour after the task ended."
)


async def save_file(
    http: httpx.AsyncClient,
    result: TaskResult,
    path: str,
    *,
    max_bytes: int,
    files: FileWork,
    timeout: httpx.Timeout | None = None,
) -> str:
    """Write ``result``'s image to ``path`` atomically (the file work through ``files``) and
    return ``path``, given as text, normalised as ``str(Path(dest))`` is (the batch's
    outputs: it never parses a per-input path with pathlib, see
    `idphoto_async._paths.posix_text`)."""
    if not result.is_done or result.image is None:
        raise DownloadError(
            f"Task {result.task_id} has no image yet (state {int(result.state)}).",
            task_id=result.task_id,
            retryable=False,
            advice="wait() for the task first.",
        )
    expires = result.expires_at
    if result.is_url and expires is not None and expires <= datetime.now(UTC):
        raise ResultExpiredError(result.task_id, f" (it expired at {expires.isoformat()})")
    tmp = os.path.join(os.path.dirname(path), f"{_part_prefix(path)}{secrets.token_hex(4)}.part")
    spool = _Spool(tmp)
    try:
        try:
            if result.is_url:
                await _stream_url(http, result, spool, max_bytes=max_bytes, timeout=timeout)
            else:
                _decode_base64(result, spool, max_bytes=max_bytes)
            await files.run(spool.finish, path)
        except IsADirectoryError:
            raise DownloadError(
                f"Cannot save the result of task {result.task_id}: {path!r} is a folder.",
                task_id=result.task_id,
                retryable=False,
                advice=_WRITE_ADVICE,
            ) from None
        except OSError as exc:
            raise DownloadError(
                f"Cannot save the result of task {result.task_id} to {path!r}: "
                f"{exc.strerror or type(exc).__name__}.",
                task_id=result.task_id,
                retryable=False,
                advice=_WRITE_ADVICE,
            ) from None
    except BaseException:
        with anyio.CancelScope(shield=True):
            await files.run(spool.discard)
        raise
    return path


def _part_prefix(path: str) -> str:
    name = os.path.basename(path)
    if name in ("", "."):  # as Path.with_name refuses it
        raise ValueError(f"{path!r} has an empty name")
    return f".{name}."


def remove_stale_parts(path: str | os.PathLike[str]) -> None:
    """Remove the temporary files of ``path`` that a killed writer left.

    Only for a path no one else is writing (the batch's outputs: one writer per journal).
    Best effort: the photo is stored already, so a name it cannot remove stays.
    """
    text = os.fspath(path)
    folder = os.path.dirname(text)
    pattern = f"{glob.escape(_part_prefix(text))}*.part"
    for part in glob.glob(pattern, root_dir=folder or os.curdir, include_hidden=True):
        with contextlib.suppress(OSError):  # e.g. a folder of that name
            os.unlink(os.path.join(folder, part))


class _Spool:
    """The bytes of a result: kept in memory up to `SPOOL_BYTES`, then in ``tmp``.

    A result (tens of KB) thus costs one worker-thread hop, `finish`: create the directory,
    write, flush, rename over the destination. Larger ones spill to ``tmp`` as they come.
    """

    def __init__(self, tmp: str) -> None:
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
            os.makedirs(os.path.dirname(self.tmp) or os.curdir, exist_ok=True)
            self.file = open(self.tmp, "wb")  # noqa: SIM115 - closed by finish or discard
        for chunk in self.chunks:
            self.file.write(chunk)
        self.chunks.clear()
        self.buffered = 0

    def finish(self, dest: str) -> None:
        """Write the rest to ``tmp`` and rename it to ``dest`` (worker thread); a folder at
        ``dest`` raises `IsADirectoryError` (checked here, not in a thread hop of its own)."""
        if os.path.isdir(dest):
            raise IsADirectoryError(errno.EISDIR, "is a folder", dest)
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
            os.unlink(self.tmp)


def _decode_base64(result: TaskResult, spool: _Spool, *, max_bytes: int) -> None:
    text = result.image or ""
    if text.startswith("data:"):
        text = text.partition(",")[2]
    if len(text) * 3 // 4 > max_bytes:
        raise DownloadError(
            f"The base64 result of task {result.task_id} is over the {max_bytes} byte cap.",
            task_id=result.task_id,
            retryable=False,
        )
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise DownloadError(
            f"The result of task {result.task_id} is not valid base64 image data.",
            task_id=result.task_id,
        ) from None
    _check_image(data[:16], data[-TAIL_BYTES:], result.task_id)
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
            f"The result URL of task {result.task_id} is not a valid URL.",
            task_id=result.task_id,
            retryable=False,
        ) from None
    timeout = timeout or http.timeout
    for _ in range(MAX_REDIRECTS + 1):
        # A fresh request: no API key header ever goes to the result host.
        deadline = PhaseDeadline(timeout, body_factor=DOWNLOAD_DEADLINE_FACTOR)
        request = http.build_request(
            "GET", url, timeout=timeout, extensions={"trace": deadline.trace}
        )
        target: httpx.URL | None = None
        with deadline.scope:
            try:
                response = await http.send(request, stream=True, follow_redirects=False)
            except httpx.InvalidURL:  # httpx parses a redirect's Location even when not following
                raise DownloadError(
                    f"The result host of task {result.task_id} redirected to an invalid URL.",
                    task_id=result.task_id,
                ) from None
            except httpx.HTTPError as exc:
                raise DownloadError(
                    f"Downloading the result of task {result.task_id} failed "
                    f"({type(exc).__name__}).",
                    task_id=result.task_id,
                ) from None
            try:
                if response.is_redirect:
                    target = _redirect_target(url, response, result.task_id)
                else:
                    _check_status(response, result.task_id)
                    deadline.reading_body()
                    await _write_stream(
                        response, spool, max_bytes=max_bytes, task_id=result.task_id
                    )
            finally:
                await response.aclose()
        if deadline.expired:
            raise DownloadError(
                f"The download of task {result.task_id} did not finish in time: "
                f"{deadline.describe()} (the result host trickled or stalled).",
                task_id=result.task_id,
            )
        if target is None:
            return
        url = target
    raise DownloadError(
        f"Too many redirects downloading the result of task {result.task_id}.",
        task_id=result.task_id,
    )


def _check_status(response: httpx.Response, task_id: str) -> None:
    if response.status_code in _EXPIRED_STATUSES:
        raise ResultExpiredError(task_id, f" (the result host answered {response.status_code})")
    if response.status_code != 200:
        raise DownloadError(
            f"The result host answered HTTP {response.status_code} for task {task_id}.",
            task_id=task_id,
        )


def _redirect_target(url: httpx.URL, response: httpx.Response, task_id: str) -> httpx.URL:
    location = response.headers.get("Location", "")
    try:
        target = url.join(location)
    except (httpx.InvalidURL, ValueError):
        raise DownloadError(
            f"The result of task {task_id} redirected to an invalid URL ({location[:80]!r}).",
            task_id=task_id,
            retryable=False,
        ) from None
    if target.scheme not in ("http", "https") or (
        url.scheme == "https" and target.scheme != "https"
    ):
        raise DownloadError(
            f"The result of task {task_id} redirected to a refused URL scheme ({target.scheme}).",
            task_id=task_id,
            retryable=False,
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
        raise DownloadError(
            f"The result of task {task_id} is {declared} bytes, over the cap.",
            task_id=task_id,
            retryable=False,
        )
    received = 0
    head = tail = b""
    try:
        async for chunk in body_chunks(response, CHUNK_SIZE):
            received += len(chunk)
            if received > max_bytes:
                raise DownloadError(
                    f"The result of task {task_id} is over the {max_bytes} byte cap.",
                    task_id=task_id,
                    retryable=False,
                )
            if len(head) < 16:
                head += chunk[: 16 - len(head)]
            tail = (tail + chunk)[-TAIL_BYTES:]
            if spool.add(chunk):
                await anyio.to_thread.run_sync(spool.spill)
    except httpx.HTTPError as exc:
        raise DownloadError(
            f"The download of task {task_id} was cut short after {received} bytes "
            f"({type(exc).__name__}).",
            task_id=task_id,
        ) from None
    if declared is not None and received != declared:
        raise DownloadError(
            f"The download of task {task_id} got {received} of {declared} bytes.",
            task_id=task_id,
        )
    _check_image(head, tail, task_id)


def _check_image(head: bytes, tail: bytes, task_id: str) -> None:
    """A whole PNG or JPEG: its signature first and its end marker last."""
    if head.startswith(PNG_SIGNATURE):
        whole = tail.endswith(PNG_END)
        kind, marker = "PNG", "IEND chunk"
    elif head.startswith(JPEG_SIGNATURE):
        whole = tail.rstrip(b"\x00").endswith(JPEG_END)
        kind, marker = "JPEG", "end-of-image marker"
    else:
        raise DownloadError(
            f"The result of task {task_id} is not a PNG or JPEG image.", task_id=task_id
        )
    if not whole:
        raise DownloadError(
            f"The result of task {task_id} is an incomplete {kind} (no {marker} at its end: "
            "the transfer was cut short or the host sent a wrong length).",
            task_id=task_id,
        )
