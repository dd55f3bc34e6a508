"""Run an engine in worker processes: no GIL shared with the server, models loaded once each.

`ProcessEngine` is an `Engine` whose ``process`` hands the request to a pool of spawned
processes started once; each builds the named engine and loads its models when it starts.
The server's threads wait on it, so their GIL is free for HTTP while the photos are made.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.synchronize import Barrier
from types import TracebackType

from ._base import Engine, EngineRequest, EngineResult

__all__ = ["ProcessEngine"]

_engine: Engine | None = None
"""The engine of this worker process (set by `_start`)."""


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
START_TIMEOUT = 120.0
"""Seconds every worker gets to build its engine."""


def _start(name: str, everyone: Barrier) -> None:
    """A worker's initializer: ignore Ctrl-C (the parent stops gracefully), build the engine,
    then wait for the other workers (so `ProcessEngine.start` returns when all are ready)."""
    global _engine
    for number in _STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # blocked by the parent while it started us
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    # At exit skip the interpreter's teardown of numpy and LiteRT (~0.3 s per worker):
    # a worker holds nothing to flush.
    atexit.register(os._exit, 0)
    from . import get_engine

    _engine = get_engine(name)
    warm = getattr(_engine, "warm_up", None)
    if warm is not None:
        warm()
    everyone.wait(START_TIMEOUT)


def _process(request: EngineRequest) -> EngineResult:
    assert _engine is not None, "the worker's initializer did not run"
    return _engine.process(request)


def _ready() -> bool:
    return _engine is not None


class ProcessEngine:
    """The engine called ``name`` in ``processes`` worker processes (thread-safe ``process``).

    Use it as a context manager (`start` on entry, `close` on exit), or call `launch`, do
    other work while the workers start and load their models, then `ready`.
    """

    def __init__(self, name: str, processes: int) -> None:
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        self.name = name
        self.processes = processes
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(
            processes,
            mp_context=context,
            initializer=_start,
            initargs=(name, context.Barrier(processes)),
        )
        self._starting: list[Future[bool]] = []
        self._fallback: Engine | None = None

    def launch(self) -> None:
        """Start every worker process; returns at once (see `ready`)."""
        # The workers inherit this thread's signal mask: a Ctrl-C while they import does
        # not kill them (their initializer ignores it, then unblocks it).
        blocking = hasattr(signal, "pthread_sigmask")
        if blocking:
            previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            # Each submit with no idle worker starts one more process, up to ``processes``.
            for _ in range(self.processes):
                self._starting.append(self._pool.submit(_ready))
        except Exception as exc:  # a worker died already: `ready` reports it
            failed: Future[bool] = Future()
            failed.set_exception(exc)
            self._starting.append(failed)
        finally:
            if blocking:
                signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def ready(self) -> Exception | None:
        """Wait until every worker has its engine; None, or the error that kept one from
        starting: then the workers are stopped and `process` runs the engine in the calling
        thread (as the server's threads did before)."""
        try:
            for future in self._starting:
                future.result()
        except Exception as exc:
            self.close()
            from . import get_engine

            self._fallback = get_engine(self.name)
            return exc
        return None

    def start(self) -> None:
        """`launch` and wait until every worker has its engine (raises if one fails)."""
        self.launch()
        problem = self.ready()
        if problem is not None:
            raise problem

    def process(self, request: EngineRequest) -> EngineResult:
        """Make the ID photo in a worker process (blocks this thread until it is done)."""
        if self._fallback is not None:
            return self._fallback.process(request)
        return self._pool.submit(_process, request).result()

    def close(self) -> None:
        """Stop the workers (pending photos are cancelled)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ProcessEngine:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
