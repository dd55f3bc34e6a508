"""The engine in worker processes (what ``idphoto batch --local`` runs): same photos, same
errors, and a Ctrl-C that reaches the workers does not kill them."""

from __future__ import annotations

import os
import pickle
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from idphoto_async.engine import EngineError, EngineRequest
from idphoto_async.engine._pool import ProcessEngine

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def test_engine_error_pickles_with_its_state() -> None:
    error = pickle.loads(pickle.dumps(EngineError(-14, "no face found")))
    assert isinstance(error, EngineError)
    assert (error.state, error.message, str(error)) == (-14, "no face found", "no face found")


def test_processes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ProcessEngine("basic", 0)


def test_basic_engine_in_processes_matches_in_process() -> None:
    from idphoto_async.engine._basic import BasicEngine

    data = (SAMPLES / "01-head-and-shoulders.jpg").read_bytes()
    request = EngineRequest(data, (120, 160), "jpg")
    with ProcessEngine("basic", 2) as pool:
        assert pool.name == "basic"
        with ThreadPoolExecutor(4) as threads:
            results = list(threads.map(pool.process, [request] * 4))
    expected = BasicEngine().process(request)
    assert all(r == expected for r in results)


def test_errors_cross_the_process_boundary() -> None:
    with ProcessEngine("basic", 1) as pool, pytest.raises(EngineError) as caught:
        pool.process(EngineRequest(b"not an image", (120, 160), "jpg"))
    assert caught.value.state == -7


def _children() -> list[int]:
    """This process's child processes (Linux /proc), for signalling the workers."""
    pids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_workers_ignore_sigint() -> None:
    """A terminal's Ctrl-C reaches the workers too: they leave stopping to the CLI."""
    data = (SAMPLES / "01-head-and-shoulders.jpg").read_bytes()
    request = EngineRequest(data, (120, 160), "png")
    with ProcessEngine("basic", 2) as pool:
        before = set(_children())
        assert len(before) >= 2
        for pid in before:
            os.kill(pid, signal.SIGINT)
        for _ in range(4):
            assert pool.process(request).image.startswith(b"\x89PNG")
        assert before <= set(_children())


def test_local_engine_in_processes_matches_in_process() -> None:
    pytest.importorskip("ai_edge_litert")
    from idphoto_async.engine._local import LocalEngine

    data = (SAMPLES / "01-head-and-shoulders.jpg").read_bytes()
    request = EngineRequest(data, (295, 413), "jpg")
    with ProcessEngine("local", 1) as pool:
        assert pool.process(request) == LocalEngine().process(request)
