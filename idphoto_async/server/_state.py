"""Everything one running server holds, and the controls tests use (stats, clock)."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx

from ..engine import Engine, get_engine
from ._clock import Clock
from ._config import ServerConfig
from ._faults import Faults, quiet_intentional_aborts
from ._ratelimit import SlidingWindowLimiter
from ._stats import Stats
from ._store import TaskStore
from ._worker import Processor

__all__ = ["ServerState"]

logger = logging.getLogger("idphoto_async.server")

_SWEEP_SECONDS = 5.0


class ServerState:
    """Config, clock, store, limiter, faults, stats and the background processor."""

    def __init__(self, config: ServerConfig, engine: Engine | None = None) -> None:
        self.config = config
        self.engine = engine if engine is not None else get_engine(config.engine)
        self.clock = Clock()
        self.stats = Stats(self.engine.name)
        self.store = TaskStore(config.result_ttl)
        self.faults = Faults(config.seed, self.stats)
        self.limiter = (
            SlidingWindowLimiter(config.qps, count_refused=config.count_refused)
            if config.qps
            else None
        )
        self._key_labels = {key_label(k): k.encode() for k in config.api_keys}
        self.processor = Processor(
            config,
            engine=self.engine,
            clock=self.clock,
            store=self.store,
            stats=self.stats,
            faults=self.faults,
        )
        if config.any_abort_faults:
            quiet_intentional_aborts()

    def snapshot(self) -> dict[str, Any]:
        """The stats as JSON-ready data (safe from any thread)."""
        now = self.clock.time()
        return self.stats.snapshot(self.store.state_counts(now), self.clock.offset)

    def advance(self, seconds: float) -> float:
        """Move the server's time forward (expiring results); returns the total offset."""
        offset = self.clock.advance(seconds)
        self.store.sweep(self.clock.time())
        return offset

    def reset_stats(self) -> None:
        """Zero the counters."""
        self.stats.reset()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The lifespan: background task group, image_url client, expiry sweeps."""
        config = self.config
        logger.info(
            "idphoto local server: engine=%s, qps=%s (%s), processing_time=%s, workers=%d, "
            "result_ttl=%gs, api keys: %s",
            self.engine.name,
            config.qps or "unlimited",
            config.rate_scope,
            config.processing_time,
            config.workers,
            config.result_ttl,
            f"{len(config.api_keys)} configured" if config.api_keys else "any accepted",
        )
        async with (
            httpx.AsyncClient(timeout=config.fetch_timeout, follow_redirects=True) as http,
            anyio.create_task_group() as task_group,
        ):
            self.processor.attach(task_group, http)
            task_group.start_soon(self._sweep_forever)
            try:
                yield
            finally:
                task_group.cancel_scope.cancel()

    async def _sweep_forever(self) -> None:
        while True:
            await anyio.sleep(_SWEEP_SECONDS)
            self.store.sweep(self.clock.time())
            if self.limiter is not None:
                self.limiter.forget_idle(self.clock.monotonic())

    def authenticate(self, key: str | None) -> str | None:
        """The label of the configured key equal to ``key`` (never the key itself), else None."""
        if key is None:
            return None
        given = key.encode()
        match = None
        for label, accepted in self._key_labels.items():
            if hmac.compare_digest(given, accepted):
                match = label
        return match


def key_label(key: str) -> str:
    """A stable, non-reversible name for a key (in stats and rate limits)."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:10]
