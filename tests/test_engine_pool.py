"""The engine in worker processes (what ``idphoto batch --local`` runs): same photos, same
errors, and a Ctrl-C that reaches the workers does not kill them."""

from __future__ import annotations

import os
import pickle
import re
import signal
import subprocess
import sys
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


def _batch_local(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    inputs = sorted(SAMPLES.glob("0[12]-*.jpg"))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IDPHOTO_")}
    command = [sys.executable, "-m", "idphoto_async.cli", "batch", *map(str, inputs)]
    command += ["-o", str(out), "--local", "--size", "295x413", "--format", "jpg"]
    command += ["--no-progress", *extra]
    return subprocess.run(command, capture_output=True, text=True, env=environ, timeout=300)


def test_batch_local_defaults_to_one_request_per_photo(tmp_path: Path) -> None:
    """With --local the default is sync mode (the in-process tasks end with the run anyway);
    the local engine runs in worker processes, whose native log goes to the engine log."""
    pytest.importorskip("ai_edge_litert")
    done = _batch_local(tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert "2 succeeded" in done.stdout and "2 API requests" in done.stdout
    assert "threads" not in done.stderr  # the worker processes started
    assert "TensorFlow Lite" not in done.stderr
    assert "TensorFlow Lite" in (tmp_path / "out" / ".idphoto-engine.log").read_text()
    asked = _batch_local(tmp_path / "again", "--mode", "async")
    assert asked.returncode == 0, asked.stderr
    requests = int(re.search(r"(\d+) API requests", asked.stdout).group(1))  # type: ignore[union-attr]
    assert requests >= 4  # create and query per photo


@pytest.mark.parametrize(
    "script",
    [
        ["engine_throughput.py", "--photos", "4", "--processes", "1"],
        ["cli_throughput.py", "--photos", "6", "--rounds", "1"],
    ],
)
def test_throughput_scripts_print_their_row(script: list[str]) -> None:
    pytest.importorskip("ai_edge_litert")
    path = Path(__file__).resolve().parents[1] / "benchmarks" / script[0]
    done = subprocess.run(
        [sys.executable, str(path), *script[1:]], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    row = done.stdout.strip().splitlines()[-1]
    assert row.startswith("| ") and "photos/s" not in row and row.count("|") >= 8


def test_workers_that_cannot_start_leave_the_engine_in_this_process() -> None:
    """`ready` reports why (the CLI then says so) and `process` runs the engine in-thread."""
    import multiprocessing
    from multiprocessing import resource_tracker

    from idphoto_async.engine._basic import BasicEngine

    resource_tracker.ensure_running()  # with the real interpreter, before the swap below
    spawn = multiprocessing.get_context("spawn")
    spawn.set_executable("/bin/false")  # every worker dies at once
    try:
        pool = ProcessEngine("basic", 2)
        pool.launch()
        problem = pool.ready()
    finally:
        spawn.set_executable(sys.executable)
    try:
        assert problem is not None
        request = EngineRequest((SAMPLES / "01-head-and-shoulders.jpg").read_bytes(), (60, 80))
        assert pool.process(request) == BasicEngine().process(request)
    finally:
        pool.close()
