"""Baseline (a): the seed's recommended flow written naively.

``asyncio.gather`` over every input, an ``asyncio.Semaphore`` bounding photos in flight,
``aiolimiter`` at the key's QPS, a fixed 1 s poll, a 1 s sleep after a 429.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from aiolimiter import AsyncLimiter

from ._progress import Progress
from ._server import API_KEY

__all__ = ["run_gather"]

PATH = "/api/tasks/visual/idphoto"


def run_gather(
    base_url: str,
    inputs: list[Path],
    out_dir: Path,
    progress: Progress,
    *,
    qps: float,
    concurrency: int = 16,
    poll: float = 1.0,
) -> None:
    """Process every input; mark each photo done or failed."""

    async def call(http: httpx.AsyncClient, limiter: AsyncLimiter, **kw: object) -> httpx.Response:
        while True:
            async with limiter:
                response = await http.request(**kw)  # type: ignore[arg-type]
            if response.status_code != 429:
                return response
            await asyncio.sleep(1.0)

    async def one(
        http: httpx.AsyncClient, limiter: AsyncLimiter, sem: asyncio.Semaphore, path: Path
    ) -> None:
        async with sem:
            try:
                files = {"image_file": (path.name, path.read_bytes(), "image/jpeg")}  # noqa: ASYNC240 (naive)
                form = {"sync": "0", "format": "jpg"}
                created = await call(http, limiter, method="POST", url=PATH, files=files, data=form)
                task_id = created.json()["data"]["task_id"]
                while True:
                    await asyncio.sleep(poll)
                    answer = await call(http, limiter, method="GET", url=f"{PATH}/{task_id}")
                    data = answer.json()["data"]
                    if data["state"] == 1:
                        break
                    if data["state"] < 0:
                        raise RuntimeError(f"task {task_id} failed: {data['state']}")
                image = await http.get(data["image"])
                (out_dir / (path.stem + ".jpg")).write_bytes(image.content)
                progress.done(True)
            except Exception:
                progress.done(False)

    async def main() -> None:
        out_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
        limiter = AsyncLimiter(qps, 1.0)
        sem = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=max(concurrency, 10))
        headers = {"X-API-KEY": API_KEY}  # as in the vendor's curl examples
        async with httpx.AsyncClient(
            base_url=base_url, limits=limits, timeout=60, headers=headers
        ) as http:
            await asyncio.gather(*(one(http, limiter, sem, p) for p in inputs))

    asyncio.run(main())
