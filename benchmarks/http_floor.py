"""Client CPU per HTTP request against the local server: the floor under scenario 2's figure.

Usage: ``python benchmarks/http_floor.py [--requests N]``; prints one markdown table.

One request at a time on one kept-alive connection (no concurrency, no rate limit), so each
row is the cheapest a request can be: bare httpx and requests calls, then the same calls
through our client (limiter, error mapping, validation, file I/O). Scenario 2 spends three
requests per photo (create, query, download) with hundreds of photos in flight.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import httpx
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._inputs import make_inputs
from benchmarks._server import API_KEY
from idphoto_async import AsyncIDPhotoClient
from idphoto_async.testing import LocalServerProcess

API = "/api/tasks/visual/idphoto"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(call: Callable[[int], Awaitable[object]], count: int) -> float:
    """CPU ms per call of ``call(i)``, after a warm-up of 20 calls."""
    for i in range(20):
        await call(i)
    start = cpu_seconds()
    for i in range(count):
        await call(i)
    return 1000 * (cpu_seconds() - start) / count


async def rows(base_url: str, work: Path, count: int) -> list[tuple[str, float]]:
    image = make_inputs(work / "in", 1)[0]
    data = image.read_bytes()
    out: list[tuple[str, float]] = []
    headers = {"X-API-KEY": API_KEY}
    async with httpx.AsyncClient(base_url=base_url, headers=headers) as http:
        created = await http.post(API, files={"sync": (None, "1"), "image_file": ("a.jpg", data)})
        task = created.json()["data"]
        result_url = task["image"]
        query = f"{API}/{task['task_id']}"

        async def get(_: int) -> object:
            return (await http.get(query)).json()

        async def post(_: int) -> object:
            files = {"sync": (None, "0"), "format": (None, "jpg"), "image_file": ("a.jpg", data)}
            return (await http.post(API, files=files)).json()

        async def fetch(_: int) -> object:
            return (await http.get(result_url)).content

        out.append(("httpx: GET query", await measure(get, count)))
        out.append(("httpx: POST multipart create", await measure(post, count)))
        out.append(("httpx: GET result", await measure(fetch, count)))

    async with AsyncIDPhotoClient(base_url=base_url, qps=1e6) as client:
        done = await client.get(task["task_id"])

        async def our_get(_: int) -> object:
            return await client.get(task["task_id"])

        async def our_create(_: int) -> object:
            return await client.create(image, format="jpg")

        async def our_download(i: int) -> object:
            return await client.download(done, work / "out" / f"{i % 10}.jpg")

        out.append(("ours: get()", await measure(our_get, count)))
        out.append(("ours: create() from a file", await measure(our_create, count)))
        out.append(("ours: download() to a file", await measure(our_download, count)))

    with requests.Session() as session:
        session.headers["X-API-KEY"] = API_KEY

        async def requests_get(_: int) -> object:
            return session.get(base_url + query).json()

        out.append(("requests: GET query", await measure(requests_get, count)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalServerProcess(qps=None, processing_time="fixed:0") as server,
    ):
        table = anyio.run(rows, server.base_url, Path(tmp), args.requests)
    print("| request (one at a time, one connection) | client CPU ms/request |")
    print("| --- | --- |")
    for label, ms in table:
        print(f"| {label} | {ms:.2f} |")


if __name__ == "__main__":
    main()
