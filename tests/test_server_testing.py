"""idphoto_async.testing (LocalServer, local_server) and the server's command line."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time

import httpx
import psutil
import pytest
from _server_support import KEY_HEADERS, create

from idphoto_async.server import ServerConfig, create_app
from idphoto_async.server._cli import config_from_args, configure_parser
from idphoto_async.testing import LocalServer, local_server

pytestmark = pytest.mark.anyio


def _server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("idphoto-local-server")]


def test_sync_context_manager_and_clean_shutdown() -> None:
    with LocalServer(qps=None) as srv:
        assert srv.base_url.startswith("http://127.0.0.1:")
        assert srv.config.processing_time == "0"
        assert srv.config.engine == "basic"
        assert httpx.get(srv.base_url + "/_local/stats").json()["data"]["engine"] == "basic"
        assert _server_threads()
        start = time.monotonic()
    assert time.monotonic() - start < 2
    assert not _server_threads()


async def test_local_server_yields_a_base_url() -> None:
    async with (
        local_server(qps=None, engine="basic") as base_url,
        httpx.AsyncClient(base_url=base_url, headers=KEY_HEADERS) as c,
    ):
        assert (await create(c, sync="1")).json()["data"]["state"] == 1
    assert not _server_threads()


async def test_async_context_manager_stats_advance_reset() -> None:
    async with LocalServer(ServerConfig(qps=None, processing_time="0", engine="basic")) as srv:
        async with httpx.AsyncClient(base_url=srv.base_url, headers=KEY_HEADERS) as c:
            await create(c, sync="1")
        assert srv.stats()["creates"] == 1
        assert srv.advance(10) == 10
        assert srv.stats()["clock_offset"] == 10
        srv.reset_stats()
        assert srv.stats()["creates"] == 0


def test_stop_closes_the_port() -> None:
    with LocalServer(qps=None) as srv:
        port = int(srv.base_url.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_not_running_has_no_base_url() -> None:
    with pytest.raises(RuntimeError):
        _ = LocalServer().base_url


def test_create_app_is_a_starlette_app() -> None:
    from starlette.applications import Starlette

    assert isinstance(create_app(ServerConfig(engine="basic")), Starlette)


def test_bad_processing_time_is_refused() -> None:
    with pytest.raises(ValueError, match="processing_time"):
        ServerConfig(processing_time="gauss:1")


def test_cli_flags_make_a_config() -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(
        [
            "--api-key", "key-a-secret", "--api-key", "key-b-secret",
            "--qps", "0", "--rate-scope", "create",
            "--no-count-refused", "--no-retry-after", "--processing-time", "uniform:1,2",
            "--result-ttl", "60", "--workers", "3", "--engine", "basic", "--seed", "5",
            "--drop-rate", "0.1", "--fail-rate", "0.2", "--fail-states=-1,-9",
        ]
    )  # fmt: skip
    config = config_from_args(args)
    assert config.api_keys == ("key-a-secret", "key-b-secret")
    assert config.qps is None
    assert (config.rate_scope, config.count_refused, config.send_retry_after) == (
        "create",
        False,
        False,
    )
    assert (config.workers, config.engine, config.seed) == (3, "basic", 5)
    assert (config.drop_rate, config.fail_rate, config.fail_states) == (0.1, 0.2, (-1, -9))
    assert "secret" not in repr(config)
    with pytest.raises(SystemExit):
        parser.parse_args(["--slow-rate", "2"])


def test_python_m_server_runs() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "idphoto_async.server", "--port", str(port), "--engine", "basic"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/_local/stats")
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                assert proc.poll() is None
                time.sleep(0.05)
        assert response.json()["data"]["engine"] == "basic"
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0]
    assert "engine=basic" in output


def test_engine_can_be_named() -> None:
    with LocalServer(engine="basic") as srv:
        assert srv.config.engine == "basic"
        assert srv.stats()["engine"] == "basic"


def test_local_server_process_speaks_the_api_with_knobs() -> None:
    from idphoto_async.testing import LocalServerProcess

    with LocalServerProcess(qps=5, fail_states=(-1, -8), api_keys=("k",)) as srv:
        response = httpx.get(
            f"{srv.base_url}/api/tasks/visual/idphoto/nope", headers={"X-API-KEY": "k"}
        )
        assert response.status_code == 404
        assert srv.stats()["requests"]["query"] == 1
        srv.advance(10)
        assert srv.stats()["clock_offset"] == 10
        srv.reset_stats()
        assert srv.stats()["requests"].get("query", 0) == 0
        assert psutil.Process(srv.pid).cmdline()[1:3] == ["-m", "idphoto_async.server"]
    with pytest.raises(RuntimeError, match="not running"):
        srv.pid  # noqa: B018
    with pytest.raises(ValueError, match="qps"):
        LocalServerProcess(qps=-1)


def test_local_server_process_without_a_rate_limit() -> None:
    from idphoto_async.testing import LocalServerProcess

    with (
        LocalServerProcess(qps=None) as srv,
        httpx.Client(base_url=srv.base_url, headers=KEY_HEADERS) as http,
    ):
        codes = {http.get("/api/tasks/visual/idphoto/nope").status_code for _ in range(6)}
        assert codes == {404}  # never 429, however fast
        assert srv.stats()["rate_limited"] == 0


def test_serve_keeps_start_up_objects_out_of_full_collections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With hundreds of connections open a full collection of everything the imports made
    stalled the server's loop for up to 48 ms (arrivals bunched: a 429 for a client within
    its QPS); ``idphoto serve`` freezes those objects before it serves."""
    import gc

    import uvicorn

    from idphoto_async._gc_settings import SERVER_THRESHOLDS
    from idphoto_async.server._cli import serve_main

    served: list[tuple[int, tuple[int, int, int]]] = []
    monkeypatch.setattr(
        uvicorn,
        "run",
        lambda *args, **kwargs: served.append((gc.get_freeze_count(), gc.get_threshold())),
    )
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    before = gc.get_threshold()
    assert serve_main(parser.parse_args(["--engine", "basic"])) == 0
    assert served and served[0][0] > 10_000
    # Small young generations and (almost) no full scans while it serves: a 60 ms full
    # collection with hundreds of connections open earned a client within its QPS a 429.
    assert served[0][1] == SERVER_THRESHOLDS
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0  # restored after
