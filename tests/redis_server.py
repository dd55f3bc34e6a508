"""A real ``redis-server`` for tests: loopback, free port, temp dir, no persistence.

Use the context manager (``with running_redis_server() as url: ...``) or import the
``redis_server_url`` fixture into a test module. Skips the test when the binary is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest
import redis

__all__ = ["free_port", "redis_server_url", "running_redis_server"]

_START_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_ready(proc: subprocess.Popen[bytes], url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                if client.ping():
                    return True
            except redis.exceptions.RedisError:
                time.sleep(0.02)
        return False
    finally:
        client.close()


@contextlib.contextmanager
def running_redis_server() -> Iterator[str]:
    """Start ``redis-server`` on a free loopback port; yield its URL; stop it afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(
            "redis-server not found on PATH: install it (e.g. `apt-get install redis-server`) "
            "to run the Redis limiter tests"
        )
    with tempfile.TemporaryDirectory(prefix="idphoto-redis-") as tmp:
        log = os.path.join(tmp, "redis.log")
        for _ in range(3):  # the port may be taken between free_port() and the bind
            port = free_port()
            args = ["--bind", "127.0.0.1", "--port", str(port), "--dir", tmp]
            args += ["--save", "", "--appendonly", "no", "--loglevel", "warning"]
            args += ["--logfile", log]
            proc = subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL)
            url = f"redis://127.0.0.1:{port}/0"
            try:
                if _wait_until_ready(proc, url):
                    yield url
                    return
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        try:
            with open(log, errors="replace") as f:
                tail = f.read()[-2000:]
        except OSError:
            tail = "(no log)"
        pytest.fail(f"redis-server did not start (3 attempts on free ports); its log:\n{tail}")


@pytest.fixture(scope="module")
def redis_server_url() -> Iterator[str]:
    """The URL of a ``redis-server`` started for the test module."""
    with running_redis_server() as url:
        yield url
