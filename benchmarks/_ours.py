"""Our client: ``AsyncIDPhotoClient.batch`` in async or sync mode (defaults otherwise).

With ``concurrency`` (photos in flight) the client gets as many connections. ``one_pool``
injects a plain ``httpx.AsyncClient`` (one httpcore pool, what the client made for itself
before the sharded pool) to measure what the sharding saves; ``http_backend="aiohttp"``
measures the client on its optional aiohttp pool.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import anyio
import httpx

from idphoto_async import AsyncIDPhotoClient, HTTPBackend

from ._progress import Progress

__all__ = ["run_ours"]

DEFAULT_CONNECTIONS = 64
"""The client's default ``max_connections``."""


def run_ours(
    base_url: str,
    inputs: list[Path],
    out_dir: Path,
    progress: Progress,
    *,
    mode: str,
    qps: float,
    concurrency: int | None = None,
    one_pool: bool = False,
    http_backend: HTTPBackend = "httpx",
) -> None:
    """Run one batch over ``inputs`` (journal on, as for a user), marking each outcome."""

    connections = max(DEFAULT_CONNECTIONS, concurrency or 0)

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            http = None
            if one_pool:
                limits = httpx.Limits(
                    max_connections=connections, max_keepalive_connections=connections
                )
                http = await stack.enter_async_context(
                    httpx.AsyncClient(limits=limits, timeout=30.0, trust_env=False)
                )
            client = await stack.enter_async_context(
                AsyncIDPhotoClient(
                    base_url=base_url,
                    qps=qps,
                    max_connections=connections,
                    http_client=http,
                    http_backend=http_backend,
                )
            )
            outcomes = await stack.enter_async_context(
                client.batch(
                    (str(p) for p in inputs),
                    out_dir=out_dir,
                    mode=mode,
                    max_in_flight=concurrency,
                    format="jpg",
                )
            )
            async for outcome in outcomes:
                progress.done(outcome.ok)

    anyio.run(main)
