"""FileWork: small file operations inline while the disk is fast, in worker threads after
a slow one; the client reads paths and writes results through it, file objects in threads."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import idphoto_async._client as client_module
import idphoto_async._download as download_module
from idphoto_async import AsyncIDPhotoClient, PollSchedule
from idphoto_async._file_work import SLOW_SECONDS, THREAD_SECONDS, FileWork
from idphoto_async.testing import LocalServer

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def no_cpu() -> float:
    """A CPU clock that never moves: the fake clock's time is all spent blocked."""
    return 0.0


def on_loop_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


async def test_fast_operations_run_on_the_event_loop_thread() -> None:
    clock = FakeClock()
    work = FileWork(clock, no_cpu)
    assert [await work.run(on_loop_thread) for _ in range(3)] == [True, True, True]
    assert work.inline


async def test_a_slow_operation_sends_the_next_ones_to_threads_for_a_while() -> None:
    clock = FakeClock()
    work = FileWork(clock, no_cpu)

    def slow() -> bool:
        clock.now += SLOW_SECONDS * 2  # this operation took two thresholds
        return on_loop_thread()

    assert await work.run(slow) is True  # it ran inline: only the next ones move
    assert not work.inline
    assert await work.run(on_loop_thread) is False
    clock.now += THREAD_SECONDS / 2
    assert await work.run(on_loop_thread) is False
    clock.now += THREAD_SECONDS / 2
    assert work.inline
    assert await work.run(on_loop_thread) is True


async def test_an_operation_just_under_the_threshold_stays_inline() -> None:
    clock = FakeClock()
    work = FileWork(clock, no_cpu)

    def almost_slow() -> None:
        clock.now += SLOW_SECONDS * 0.9

    await work.run(almost_slow)
    assert work.inline


async def test_a_long_computation_is_not_a_slow_disk() -> None:
    clock = FakeClock()
    cpu = FakeClock()
    work = FileWork(clock, cpu)

    def computes() -> None:  # e.g. the first Pillow import: CPU time, not a blocked disk
        clock.now += SLOW_SECONDS * 10
        cpu.now += SLOW_SECONDS * 10

    await work.run(computes)
    assert work.inline


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "thread"])
async def test_errors_pass_through_and_a_slow_failure_still_counts(inline: bool) -> None:
    clock = FakeClock()
    work = FileWork(clock, no_cpu)
    if not inline:
        work._threads_until = clock.now + THREAD_SECONDS

    def fails() -> None:
        clock.now += SLOW_SECONDS * 2
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        await work.run(fails)
    assert not work.inline


# -- the client: which thread reads an input and writes a result ---------------------------


def portrait() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (240, 320), (180, 140, 120)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(qps=None, processing_time="fixed:0.02") as srv:
        yield srv


@pytest.fixture
def threads_seen(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """Whether the client prepared each upload and wrote each result on the loop thread."""
    seen: dict[str, bool] = {}
    prepare = client_module.prepare_upload
    finish = download_module._Spool.finish

    def recording_prepare(image_file: Any) -> Any:
        seen["upload"] = on_loop_thread()
        return prepare(image_file)

    def recording_finish(self: Any, dest: str) -> None:
        seen["write"] = on_loop_thread()
        finish(self, dest)

    monkeypatch.setattr(client_module, "prepare_upload", recording_prepare)
    monkeypatch.setattr(download_module._Spool, "finish", recording_finish)
    return seen


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "in.jpg"
    path.write_bytes(portrait())
    return path


def client_for(server: LocalServer) -> AsyncIDPhotoClient:
    """A client whose file work never finds the disk slow (a frozen clock): the server's
    thread holding the GIL would otherwise count as a blocked operation now and then."""
    schedule = PollSchedule(initial_guess=0.02, min_delay=0.01, max_delay=0.05)
    client = AsyncIDPhotoClient(None, server.base_url, qps=1000, poll_schedule=schedule)
    client._files = FileWork(FakeClock(), no_cpu)
    return client


async def test_a_path_is_read_and_its_result_written_on_the_loop(
    server: LocalServer, src: Path, tmp_path: Path, threads_seen: dict[str, bool]
) -> None:
    async with client_for(server) as client:
        out = await client.generate(src, tmp_path / "out.jpg", format="jpg")
    assert out.read_bytes()[:3] == b"\xff\xd8\xff"
    assert threads_seen == {"upload": True, "write": True}


async def test_a_file_object_is_read_in_a_worker_thread(
    server: LocalServer, tmp_path: Path, threads_seen: dict[str, bool]
) -> None:
    async with client_for(server) as client:
        task = await client.create(io.BytesIO(portrait()))
        result = await client.wait(task)
        await client.download(result, tmp_path / "out.png")
    assert threads_seen == {"upload": False, "write": True}


async def test_a_slow_disk_moves_the_client_file_work_to_threads(
    server: LocalServer, src: Path, tmp_path: Path, threads_seen: dict[str, bool]
) -> None:
    async with client_for(server) as client:
        clock = FakeClock()
        client._files = FileWork(clock, no_cpu)
        prepare = client_module.prepare_upload

        def slow_read(image_file: Any) -> Any:
            clock.now += SLOW_SECONDS * 5  # a disk that took 5 ms for this read
            return prepare(image_file)

        client_module.prepare_upload = slow_read  # type: ignore[assignment]
        try:
            await client.generate(src, tmp_path / "out.jpg", format="jpg")
        finally:
            client_module.prepare_upload = prepare
    assert threads_seen["write"] is False  # the read was slow: the write went to a thread
