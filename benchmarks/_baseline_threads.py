"""Baseline (b): a thread pool of ``requests`` calls like the vendor's curl examples.

Create with ``sync=0``, poll every 2 s, download; no client-side rate limit, a 1 s sleep
after a 429.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from ._progress import Progress
from ._server import API_KEY

__all__ = ["run_threads"]

PATH = "/api/tasks/visual/idphoto"


def run_threads(
    base_url: str,
    inputs: list[Path],
    out_dir: Path,
    progress: Progress,
    *,
    threads: int = 4,
    poll: float = 2.0,
) -> None:
    """Process every input with ``threads`` workers; mark each photo done or failed."""
    local = threading.local()
    out_dir.mkdir(parents=True, exist_ok=True)

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers["X-API-KEY"] = API_KEY  # as in the vendor's curl examples
        s: requests.Session = local.session
        return s

    def call(method: str, url: str, **kw: object) -> requests.Response:
        while True:
            response = session().request(method, url, timeout=60, **kw)  # type: ignore[arg-type]
            if response.status_code != 429:
                return response
            time.sleep(1.0)

    def one(path: Path) -> None:
        try:
            files = {"image_file": (path.name, path.read_bytes(), "image/jpeg")}
            form = {"sync": "0", "format": "jpg"}
            created = call("POST", base_url + PATH, files=files, data=form)
            task_id = created.json()["data"]["task_id"]
            while True:
                time.sleep(poll)
                data = call("GET", f"{base_url}{PATH}/{task_id}").json()["data"]
                if data["state"] == 1:
                    break
                if data["state"] < 0:
                    raise RuntimeError(f"task {task_id} failed: {data['state']}")
            image = session().get(data["image"], timeout=60)
            (out_dir / (path.stem + ".jpg")).write_bytes(image.content)
            progress.done(True)
        except Exception:
            progress.done(False)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, inputs))
