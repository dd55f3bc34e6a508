"""A raw HTTP/1.1 server on loopback for wire tests of misbehaving hosts (anyio, both backends).

Each connection's request is read (headers and a Content-Length body), then ``respond``
writes whatever it likes to the socket: a trickle, a lying Content-Length, a cut body.
"""

from __future__ import annotations

import contextlib
import io
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import anyio
import anyio.abc
from PIL import Image

Respond = Callable[[anyio.abc.SocketStream, bytes], Awaitable[None]]
"""Gets the connection and the raw request (head + body); writes the answer."""


async def read_request(stream: anyio.abc.SocketStream) -> bytes:
    """One whole request (head and Content-Length body), or b"" at EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return b""
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        body += await stream.receive()
    return head + b"\r\n\r\n" + body


@contextlib.asynccontextmanager
async def raw_server(respond: Respond) -> AsyncIterator[tuple[str, list[bytes]]]:
    """Serve on 127.0.0.1:<free port>; yields the base URL and the requests received."""
    requests: list[bytes] = []
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            while True:
                request = await read_request(stream)
                if not request:
                    return
                requests.append(request)
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await respond(stream, request)
                    continue
                return

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield f"http://127.0.0.1:{port}", requests
        tg.cancel_scope.cancel()


@contextlib.contextmanager
def thread_server(answer: bytes) -> Iterator[tuple[str, list[float]]]:
    """Serve ``answer`` to each request from a thread of its own, off the event loop, so a
    stalled loop does not delay it; yields the base URL and each request's arrival
    (`time.monotonic` when its headers were in: what a rate limit counts, as the local
    server's does)."""
    arrivals: list[float] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def read_one(conn: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        arrivals.append(time.monotonic())
        head, _, body = data.partition(b"\r\n\r\n")
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                while len(body) < int(value.strip()):
                    body += conn.recv(65536)
        return True

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5.0)
                with contextlib.suppress(OSError):
                    while read_one(conn):
                        conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", arrivals
    finally:
        stop.set()
        thread.join(5.0)
        listener.close()


def http_answer(
    body: bytes, *, status: str = "200 OK", headers: dict[str, str] | None = None
) -> bytes:
    """A full HTTP/1.1 answer with a true Content-Length (unless ``headers`` override it)."""
    fields = {"Content-Length": str(len(body)), "Content-Type": "application/octet-stream"}
    fields.update(headers or {})
    head = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return f"HTTP/1.1 {status}\r\n{head}\r\n".encode() + body


def noisy_png(size: tuple[int, int] = (24, 16)) -> bytes:
    """A real PNG whose pixels do not compress away (about a kilobyte)."""
    pixels = random.Random(7).randbytes(size[0] * size[1] * 3)
    image = Image.frombytes("RGB", size, pixels)
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def jpeg(size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 80, 60)).save(buf, "JPEG")
    return buf.getvalue()
