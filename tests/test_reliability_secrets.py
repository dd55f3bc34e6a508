"""The API key goes to the API origin in the X-API-KEY header, and nowhere else.

Not in any repr or str, not in logs at any level (httpx and httpcore included), not in error
text (even when the server echoes it), not in the report or the journal, not to the result
host (directly or after a redirect); and the client's own pool always verifies TLS.
"""

from __future__ import annotations

import json
import logging
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from _batch_helpers import make_images
from anyio.streams.tls import TLSListener

import idphoto_async as ia
from idphoto_async import AsyncIDPhotoClient, TokenBucketLimiter
from idphoto_async._batch import BatchRunner
from idphoto_async._errors import AuthenticationError, IDPhotoError
from idphoto_async._journal import JOURNAL_NAME, dump_journal
from idphoto_async._models import TaskResult, TaskState
from idphoto_async._polling import PollSchedule
from idphoto_async._retry import RetryPolicy
from idphoto_async.cli import main
from idphoto_async.testing import LocalServer

KEY = "sk-SECRET-0f1e2d3c4b5a69788796a5b4"
FAST = {
    "poll_schedule": PollSchedule(initial_guess=0.05, min_delay=0.05, max_delay=0.3),
    "retry_policy": RetryPolicy(max_retries=6, initial=0.01, maximum=0.05),
}


def leaks(text: str) -> bool:
    return KEY in text or KEY[3:20] in text


@pytest.fixture
def server() -> Iterator[LocalServer]:
    knobs: dict[str, Any] = {
        "api_keys": [KEY],
        "qps": None,
        "processing_time": "0",
        "seed": 7,
        "fail_rate": 0.3,
        "fail_states": [-7, -1],
        "query_error_rate": 0.2,
        "truncate_rate": 0.2,
    }
    with LocalServer(**knobs) as srv:
        yield srv


def test_reprs_never_show_the_key() -> None:
    client = AsyncIDPhotoClient(api_key=KEY, base_url="https://api.example")
    texts = [repr(client), str(client), repr(client.limiter), repr(client._api), str(vars(client))]
    texts.append(repr(client._api.api_key))
    result = TaskResult(task_id="t", state=TaskState(1), image="https://x/y.png")
    texts += [repr(result), str(result)]
    errors: list[IDPhotoError] = [
        ia.AuthenticationError("unauthorized", status_code=401),
        ia.TaskFailedError("t", TaskState(-7)),
        ia.ResultExpiredError("t"),
        ia.DownloadError("x"),
        ia.ValidationError("x"),
    ]
    texts += [repr(e) for e in errors] + [str(e) for e in errors]
    assert not any(leaks(t) for t in texts), [t for t in texts if leaks(t)]
    assert client._api.api_key is not None and client._api.api_key.reveal() == KEY


@pytest.mark.anyio
async def test_no_key_in_logs_errors_journal_or_report_across_a_run(
    server: LocalServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inputs = make_images(tmp_path / "in", 8)
    out = tmp_path / "out"
    caplog.set_level(logging.DEBUG)  # root: httpx, httpcore, idphoto_async, everything
    for name in ("httpx", "httpcore", "idphoto_async"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        async with AsyncIDPhotoClient(api_key=KEY, base_url=server.base_url, qps=500, **FAST) as c:
            runner = BatchRunner(c, out_dir=out, max_in_flight=8, task_retries=3)
            with anyio.fail_after(60):
                async with runner.outcomes(inputs) as stream:
                    outcomes = [o async for o in stream]
        # An injected httpx client keeps httpx's own send, and its "HTTP Request" log line
        # (the client's own pool goes straight to its transport).
        async with (
            httpx.AsyncClient() as injected,
            AsyncIDPhotoClient(
                api_key=KEY + "x", base_url=server.base_url, http_client=injected
            ) as wrong,
        ):
            with pytest.raises(AuthenticationError) as caught:
                await wrong.get("nope")
    finally:
        for name in ("httpx", "httpcore", "idphoto_async"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    assert any(r.name.startswith("httpx") for r in caplog.records)  # the loggers were on
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    ours = {r.levelname for r in caplog.records if r.name == "idphoto_async"}
    assert {"DEBUG", "INFO"} <= ours  # requests and retries (of the injected faults) logged
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + repr(getattr(record, "__dict__", ""))
        assert not leaks(text), text
    assert any(o.status == "failed" for o in outcomes)  # error text was produced
    report = "\n".join(json.dumps(o.report_record()) for o in outcomes)
    assert not leaks(report)
    assert not leaks(str(caught.value)) and not leaks(repr(caught.value))
    assert not leaks(dump_journal(out / JOURNAL_NAME))


def test_cli_report_journal_and_output_hold_no_key(
    server: LocalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_images(tmp_path / "in", 6)
    monkeypatch.setenv("IDPHOTO_API_KEY", KEY)
    report = tmp_path / "report.jsonl"
    code = main(
        ["batch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--base-url",
         server.base_url, "--qps", "200", "--report", str(report), "--no-progress"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code in (0, 1)
    for text in (captured.out, captured.err, report.read_text()):
        assert not leaks(text)
    assert not leaks(dump_journal(tmp_path / "out" / JOURNAL_NAME))


@pytest.mark.anyio
async def test_server_echoing_the_key_is_masked() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        key = request.headers["X-API-KEY"]
        if request.method == "POST":
            return httpx.Response(401, text=f"bad key {key}")  # not even JSON
        return httpx.Response(401, json={"status": 401, "message": f"unauthorized key {key}"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with AsyncIDPhotoClient(
        api_key=KEY, base_url="https://api.example", http_client=http
    ) as c:
        with pytest.raises(AuthenticationError) as on_get:
            await c.get("t")
        with pytest.raises(AuthenticationError) as on_create:
            await c.create(image_url="https://img.example/a.jpg")
    for exc in (on_get.value, on_create.value):
        assert not leaks(str(exc)) and not leaks(exc.api_message) and "***" in str(exc)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "redirect", [None, "https://other-cdn.example/moved.png", "/same-host.png"]
)
async def test_key_never_sent_to_the_result_host(tmp_path: Path, redirect: str | None) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 32 + b"\x00\x00\x00\x00IEND\xaeB`\x82"
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.url.host == "api.example":
            assert request.headers["X-API-KEY"] == KEY
            data = {"task_id": "T", "state": 1, "image": "https://cdn.example/r.png"}
            return httpx.Response(200, json={"status": 200, "message": "success", "data": data})
        if redirect and request.url.path == "/r.png":
            return httpx.Response(302, headers={"Location": redirect})
        return httpx.Response(200, content=png)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with AsyncIDPhotoClient(
        api_key=KEY, base_url="https://api.example", http_client=http
    ) as c:
        result = await c.get("T")
        await c.download(result, tmp_path / "r.png")
    downloads = [r for r in sent if r.url.host != "api.example"]
    assert len(downloads) == (1 if redirect is None else 2)
    for request in downloads:
        assert "X-API-KEY" not in request.headers
        assert not any(leaks(v) for v in request.headers.values())
        assert not leaks(str(request.url))


@pytest.mark.anyio
async def test_key_never_sent_to_local_result_urls(tmp_path: Path) -> None:
    """Against the real local server too (results on the same origin, other path)."""
    seen: list[httpx.Request] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(request)

    with LocalServer(api_keys=[KEY], qps=None) as srv:
        async with (
            httpx.AsyncClient(event_hooks={"request": [hook]}) as http,
            AsyncIDPhotoClient(api_key=KEY, base_url=srv.base_url, http_client=http, **FAST) as c,
        ):
            [image] = make_images(tmp_path / "in", 1)
            await c.generate(image, tmp_path / "o.png")
    results = [r for r in seen if "/results/" in r.url.path]
    api = [r for r in seen if "/api/" in r.url.path]
    assert results and api
    assert all(r.headers.get("X-API-KEY") == KEY for r in api)
    assert all("X-API-KEY" not in r.headers for r in results)


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no trust store knows, and its key (made by openssl)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.mark.anyio
async def test_own_client_verifies_tls_and_ignores_the_environment(
    self_signed: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client's own pool refuses an unknown certificate, whatever the environment says
    (SSL_CERT_FILE naming that very certificate, a proxy); an injected client is used as
    given (here one trusting the certificate)."""
    cert, key = self_signed
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    answer = b'{"status": 200, "message": "ok", "data": {"task_id": "T", "state": 0}}'
    reached: list[bool] = []

    async def serve(stream: anyio.abc.ByteStream) -> None:
        async with stream:
            await stream.receive()
            reached.append(True)
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(answer)}\r\n\r\n"
            await stream.send(head.encode() + answer)

    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # nothing listens there
    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = tcp.extra(anyio.abc.SocketAttribute.local_port)
    listener = TLSListener(tcp, server_ctx, standard_compatible=False)
    base = f"https://127.0.0.1:{port}"
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        own = AsyncIDPhotoClient(api_key=KEY, base_url=base, max_retries=0)
        async with own:
            with pytest.raises(ia.APIConnectionError) as caught:
                await own.get("T")
        assert not reached and not leaks(str(caught.value))
        trusting = httpx.AsyncClient(
            verify=ssl.create_default_context(cafile=str(cert)), trust_env=False
        )
        async with (
            trusting,
            AsyncIDPhotoClient(api_key=KEY, base_url=base, http_client=trusting) as injected,
        ):
            assert (await injected.get("T")).task_id == "T"
        assert reached
        tg.cancel_scope.cancel()


def test_limiter_knows_no_key() -> None:
    limiter = TokenBucketLimiter(2.0)
    assert not leaks(repr(limiter))
    client = AsyncIDPhotoClient(api_key=KEY, base_url="https://api.example", limiter=limiter)
    assert not leaks(repr(client.limiter))
