"""Shared fixtures: every async test runs on asyncio and on trio; a test that asks for
``http_backend`` runs on httpx's pool (asyncio and trio) and on aiohttp's (asyncio only).

Under pytest-xdist, tests marked ``exclusive`` (a strict rate window on the wall clock) run
while no other test does: a writer-preferring readers-writer lock over two files, shared
by the workers of one run.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


HTTP_BACKEND_RUNS = [("asyncio", "httpx"), ("trio", "httpx"), ("asyncio", "aiohttp")]
"""(event loop, connection pool) pairs for the tests that ask for ``http_backend``."""


@pytest.hookimpl(tryfirst=True)  # before the anyio_backend fixture's own parametrization
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "http_backend" in metafunc.fixturenames:
        metafunc.parametrize(
            ("anyio_backend", "http_backend"),
            HTTP_BACKEND_RUNS,
            ids=[f"{loop}-{pool}" for loop, pool in HTTP_BACKEND_RUNS],
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked slow first (in their order), so xdist does not start one at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _lock_paths() -> tuple[Path, Path]:
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", "solo")
    base = Path(tempfile.gettempdir()) / f"idphoto-tests-{run}"
    return base.with_suffix(".turnstile"), base.with_suffix(".running")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Hold the run's lock, shared or (for ``exclusive`` tests) alone, around each test.

    The turnstile makes it writer-preferring: an exclusive test that waits stops new tests
    from starting, so it waits only for the tests already running.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    mode = fcntl.LOCK_EX if item.get_closest_marker("exclusive") else fcntl.LOCK_SH
    turnstile_path, running_path = _lock_paths()
    with turnstile_path.open("a") as turnstile, running_path.open("a") as running:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(running, mode)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(running, fcntl.LOCK_UN)
