"""Helpers for the server tests: tiny images, fake engines, polling."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from typing import Any

import anyio
import httpx
from PIL import Image

from idphoto_async._constants import API_PATH
from idphoto_async.engine import EngineError, EngineRequest, EngineResult
from idphoto_async.engine._basic import BasicEngine

CLIENT_NICENESS = 10
"""How much lower the CPU priority of client processes in multi-process tests is.

The service runs on another machine; here the strict test server shares two cores with the
clients, and when they starve its event loop it stamps arrivals late (50 ms seen at load 4-9),
which looks like a burst no client sent. Clients at a lower priority leave the server's clock
honest; their own lag is what the limiters must absorb (they count from real departures).
"""


def lower_priority() -> None:
    """``preexec_fn`` for a client subprocess: run it at `CLIENT_NICENESS`."""
    os.nice(CLIENT_NICENESS)


def image_bytes(size: tuple[int, int] = (160, 120), fmt: str = "PNG", color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return buf.getvalue()


PNG = image_bytes()
KEY_HEADERS = {"X-API-KEY": "any-test-key"}
"""The local server accepts any key by default, but every API request needs one."""


async def create(
    client: httpx.AsyncClient,
    image: bytes | None = PNG,
    headers: dict[str, str] | None = None,
    **fields: str,
) -> httpx.Response:
    files = {"image_file": ("a.png", image, "image/png")} if image is not None else None
    return await client.post(API_PATH, data=fields, files=files, headers=headers)


async def query(client: httpx.AsyncClient, task_id: str, **kw: Any) -> httpx.Response:
    return await client.get(f"{API_PATH}/{task_id}", **kw)


async def wait_done(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    """Poll until the task ends (at most 10 s); returns its data."""
    with anyio.fail_after(10):
        while True:
            data: dict[str, Any] = (await query(client, task_id)).json()["data"]
            if data["state"] == 1 or data["state"] < 0:
                return data
            await anyio.sleep(0.01)


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll a condition the server's thread makes true (at most 5 s)."""
    with anyio.fail_after(5):
        while not predicate():  # noqa: ASYNC110 - set by another thread's event loop
            await anyio.sleep(0.01)


class BlockingEngine:
    """The basic engine, held until ``release`` is set."""

    name = "blocking"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def process(self, request: EngineRequest) -> EngineResult:
        self.entered.set()
        self.release.wait(10)
        return BasicEngine().process(request)


class FailingEngine:
    """Fails every task with ``state``, or crashes when ``state`` is None."""

    name = "failing"

    def __init__(self, state: int | None) -> None:
        self.state = state

    def process(self, request: EngineRequest) -> EngineResult:
        if self.state is None:
            raise RuntimeError("engine bug")
        raise EngineError(self.state, "no face found")
