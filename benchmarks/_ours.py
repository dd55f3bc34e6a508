"""Our client: ``AsyncIDPhotoClient.batch`` in async or sync mode (defaults otherwise)."""

from __future__ import annotations

from pathlib import Path

import anyio

from idphoto_async import AsyncIDPhotoClient

from ._progress import Progress

__all__ = ["run_ours"]


def run_ours(
    base_url: str,
    inputs: list[Path],
    out_dir: Path,
    progress: Progress,
    *,
    mode: str,
    qps: float,
    concurrency: int | None = None,
) -> None:
    """Run one batch over ``inputs`` (journal on, as for a user), marking each outcome."""

    async def main() -> None:
        async with (
            AsyncIDPhotoClient(base_url=base_url, qps=qps) as client,
            client.batch(
                (str(p) for p in inputs),
                out_dir=out_dir,
                mode=mode,
                max_in_flight=concurrency,
                format="jpg",
            ) as outcomes,
        ):
            async for outcome in outcomes:
                progress.done(outcome.ok)

    anyio.run(main)
