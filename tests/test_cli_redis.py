"""`idphoto batch --redis-url`: several CLI processes share one key's QPS through a real Redis."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _batch_helpers import make_images
from _server_support import lower_priority
from redis_server import free_port, running_redis_server

from idphoto_async.testing import LocalServer, LocalServerProcess

KEY = "cli-redis-test-key"

pytestmark = pytest.mark.exclusive  # strict rate windows on the wall clock


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with running_redis_server() as url:
        yield url


def batch_process(inputs: Path, out: Path, base_url: str, redis_url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "idphoto_async.cli", "batch", str(inputs), "-o", str(out),
         "--base-url", base_url, "--qps", "4", "--redis-url", redis_url, "--mode", "sync",
         "--no-progress"],
        env={"PATH": "/usr/bin:/bin", "IDPHOTO_API_KEY": KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lower_priority,
    )  # fmt: skip


def test_three_processes_share_one_budget(tmp_path: Path, redis_url: str) -> None:
    with LocalServerProcess(qps=4, count_refused=True, processing_time="fixed:0.05") as server:
        procs = []
        for n in range(3):
            make_images(tmp_path / f"in{n}", 6, prefix=f"w{n}-")
            procs.append(batch_process(tmp_path / f"in{n}", tmp_path / f"out{n}",
                                       server.base_url, redis_url))  # fmt: skip
        results = [proc.communicate(timeout=120) for proc in procs]
        stats = server.stats()
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    assert stats["creates"] == 18
    assert stats["rate_limited"] == 0
    assert stats["peak_requests_per_second"] <= 4
    assert sum(len(list((tmp_path / f"out{n}").glob("*.png"))) for n in range(3)) == 18


def test_unreachable_redis_is_a_clear_config_error(tmp_path: Path) -> None:
    make_images(tmp_path / "in", 1)
    with LocalServer(qps=None) as server:
        url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
        proc = batch_process(tmp_path / "in", tmp_path / "out", server.base_url, url)
        _, err = proc.communicate(timeout=60)
        creates = server.stats()["creates"]
    assert proc.returncode == 2
    assert "Redis" in err and "hunter2" not in err
    assert creates == 0
