"""IDPhotoClient (the blocking client) against the real local server over loopback."""

from __future__ import annotations

import _thread
import gc
import inspect
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from _server_support import image_bytes
from PIL import Image

import idphoto_async as ia
from idphoto_async import AsyncIDPhotoClient, IDPhotoClient, PollSchedule
from idphoto_async.engine import EngineRequest, EngineResult
from idphoto_async.engine._basic import BasicEngine
from idphoto_async.testing import LocalServer

SYNC_ONLY_ARGS = {"backend", "backend_options"}
"""Constructor arguments of the loop thread, not of the async client."""
ASYNC_ONLY_ARGS = {"on_send"}
"""Callbacks awaited on the loop: not offered by the blocking client."""


def portrait(size: tuple[int, int] = (240, 320)) -> bytes:
    return image_bytes(size, "JPEG")


def fast_schedule() -> PollSchedule:
    return PollSchedule(initial_guess=0.02, min_delay=0.01, max_delay=0.05)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(qps=None, processing_time="fixed:0.05") as srv:
        yield srv


def client_for(srv: LocalServer, **kwargs: Any) -> IDPhotoClient:
    kwargs.setdefault("qps", 1000.0)
    kwargs.setdefault("poll_schedule", fast_schedule())
    return IDPhotoClient(None, srv.base_url, **kwargs)


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "idphoto-event-loop"]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_step_by_step_without_await(server: LocalServer, tmp_path: Path, backend: str) -> None:
    with client_for(server, backend=backend) as client:
        task = client.create(portrait(), size=(300, 400))
        assert isinstance(task, ia.Task)
        assert client.get(task.task_id).task_id == task.task_id
        result = client.wait(task)
        assert result.is_done
        path = client.download(result, tmp_path / "a" / "b.png")
        assert client.requests_sent >= 3
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (300, 400)


@pytest.mark.parametrize("sync", [False, True])
def test_generate_in_both_modes(server: LocalServer, tmp_path: Path, sync: bool) -> None:
    src = tmp_path / "in.jpg"
    src.write_bytes(portrait())
    with client_for(server) as client:
        out = client.generate(src, tmp_path / "out.jpg", sync=sync, size="295x413", format="jpg")
        result = client.create(src, sync=True, size="295x413")
    assert isinstance(result, ia.TaskResult) and result.is_done
    with Image.open(out) as image:
        assert image.format == "JPEG" and image.size == (295, 413)


def test_errors_reach_the_caller_with_their_class(server: LocalServer) -> None:
    with client_for(server) as client:
        before = server.stats()["requests"].get("create", 0)
        with pytest.raises(ia.ValidationError, match="size"):
            client.create(portrait(), size="5x5")
        with pytest.raises(ia.NotFoundError):
            client.get("no-such-task")
        assert server.stats()["requests"].get("create", 0) == before  # rejected: not sent


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_batch_as_a_context_manager_then_resumed(
    server: LocalServer, tmp_path: Path, mode: str
) -> None:
    inputs = []
    for i in range(5):
        path = tmp_path / "in" / f"p{i}.jpg"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(portrait((200 + i, 300)))
        inputs.append(path)
    out = tmp_path / "out"
    with client_for(server) as client:
        with client.batch(inputs, out_dir=out, mode=mode, format="jpg") as outcomes:
            first = list(outcomes)
        with client.batch(inputs, out_dir=out, mode=mode, format="jpg") as outcomes:
            second = [o.status for o in outcomes]
    assert sorted(o.status for o in first) == ["succeeded"] * 5
    assert all(o.output is not None and o.output.exists() for o in first)
    assert second == ["skipped"] * 5  # the journal: nothing paid twice


class FirstOnlyEngine:
    """The basic engine for the first task; later ones are held until ``release``."""

    name = "first-only"

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()
        self.release = threading.Event()

    def process(self, request: EngineRequest) -> EngineResult:
        with self.lock:
            self.calls += 1
            first = self.calls == 1
        if not first:
            self.release.wait(60)
        return BasicEngine().process(request)


def test_leaving_a_batch_early_cancels_the_rest(tmp_path: Path) -> None:
    inputs = [tmp_path / f"p{i}.jpg" for i in range(6)]
    for path in inputs:
        path.write_bytes(portrait())
    engine = FirstOnlyEngine()
    with LocalServer(qps=None, engine=engine) as srv, client_for(srv) as client:
        try:
            start = time.monotonic()
            with client.batch(inputs, out_dir=tmp_path / "out", max_in_flight=6) as outcomes:
                statuses = []
                for outcome in outcomes:
                    statuses.append(outcome.status)
                    break
            assert statuses == ["succeeded"]
            assert time.monotonic() - start < 30  # not held by the tasks still processing
            assert client.get(client.create(portrait()).task_id).task_id  # still usable
        finally:
            engine.release.set()


def test_shared_between_threads_keeps_the_qps(tmp_path: Path) -> None:
    """8 threads hammer one client; the server refuses any request over its QPS."""
    qps = 20.0
    with (
        LocalServer(qps=qps, processing_time="0") as srv,
        IDPhotoClient(None, srv.base_url, qps=qps) as client,
    ):
        image = portrait()

        def one(_: int) -> bool:
            return client.create(image, sync=True).is_done

        with ThreadPoolExecutor(8) as pool:
            done = list(pool.map(one, range(50)))
        stats = srv.stats()
    assert all(done) and len(done) == 50
    assert stats["rate_limited"] == 0
    assert stats["requests"]["create"] == 50
    assert stats["peak_requests_per_second"] <= qps


def test_closed_client_says_so_and_close_is_idempotent(server: LocalServer) -> None:
    client = client_for(server)
    client.close()
    client.close()
    assert client.closed
    with pytest.raises(ia.ClientClosedError, match="closed"):
        client.get("x")
    with pytest.raises(ia.ClientClosedError, match="closed"), client.batch([], out_dir="unused"):
        pass


def test_constructor_error_leaves_no_thread() -> None:
    before = len(loop_threads())
    with pytest.raises(ia.ValidationError, match="base_url"):
        IDPhotoClient(base_url="ftp://example.com")
    assert len(loop_threads()) == before


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(LookupError):
        IDPhotoClient(base_url="http://127.0.0.1:9", backend="curio")  # type: ignore[arg-type]


def test_a_dropped_client_stops_its_thread(server: LocalServer) -> None:
    before = len(loop_threads())
    client = client_for(server)
    assert len(loop_threads()) == before + 1
    http = client.async_client._http
    del client
    gc.collect()
    assert len(loop_threads()) == before
    assert http.is_closed  # its connection pool was closed first


def test_a_script_that_never_closes_still_exits(server: LocalServer) -> None:
    script = (
        "import idphoto_async as ia\n"
        f"client = ia.IDPhotoClient(base_url={server.base_url!r})\n"
        "client.get\n"
        "print('end')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "end"


def test_ctrl_c_while_waiting_cancels_the_call() -> None:
    # `interrupt_main` does nothing while SIGINT is ignored or at its default: CI once found
    # it so in an xdist worker after other tests (wait() then ran its whole 60 s). Ctrl-C in a
    # program means Python's own handler: install it for this test.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _ctrl_c_while_waiting()
    finally:
        signal.signal(signal.SIGINT, previous)


def _ctrl_c_while_waiting() -> None:
    with (
        LocalServer(qps=None, processing_time="fixed:60") as srv,
        client_for(srv) as client,
    ):
        task = client.create(portrait())
        timer = threading.Timer(0.3, _thread.interrupt_main)
        timer.start()
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            client.wait(task)
        timer.join()
        assert time.monotonic() - start < 30
    assert not any(t.is_alive() for t in loop_threads() if t is not threading.current_thread())


def _names(func: Any) -> list[str]:
    return [p for p in inspect.signature(func).parameters if p != "self"]


def test_same_arguments_as_the_async_client() -> None:
    sync_args = [n for n in _names(IDPhotoClient.__init__) if n not in SYNC_ONLY_ARGS]
    assert sync_args == _names(AsyncIDPhotoClient.__init__)
    for method in ("create", "get", "wait", "download", "generate"):
        expected = [
            n for n in _names(getattr(AsyncIDPhotoClient, method)) if n not in ASYNC_ONLY_ARGS
        ]
        assert _names(getattr(IDPhotoClient, method)) == expected, method
