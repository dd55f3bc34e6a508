"""The Starlette app: the API's two endpoints, result downloads and the /_local controls."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._constants import API_KEY_HEADER, API_PATH
from ..engine import Engine
from ._config import ServerConfig
from ._envelope import ApiError, envelope
from ._faults import CutResponse
from ._params import read_create_params
from ._state import ServerState, key_label
from ._store import TaskRecord

__all__ = ["create_app", "server_state"]

RESULTS_PATH = "/results"


def server_state(app: Starlette) -> ServerState:
    """The `ServerState` behind an app made by `create_app`."""
    state: ServerState = app.state.idphoto
    return state


def _state(request: Request) -> ServerState:
    return server_state(request.app)


def _identity(request: Request) -> str:
    """Who is calling: the label of a valid ``X-API-KEY``, else 401 (as the real service).

    A request with no key is refused even when the server accepts any key; with
    ``api_keys`` configured, the key must be one of them.
    """
    state = _state(request)
    key = request.headers.get(API_KEY_HEADER)
    if not key:
        raise ApiError(401, f"missing {API_KEY_HEADER} header: every request needs an API key")
    if not state.config.api_keys:
        return key_label(key)
    identity = state.authenticate(key)
    if identity is None:
        raise ApiError(401, "unauthorized API key")
    return identity


async def _admit(
    request: Request, endpoint: Literal["create", "query"]
) -> tuple[str, Response | None]:
    """Auth, rate limit and request faults: the caller's identity, and maybe a cut response."""
    state = _state(request)
    config = state.config
    identity = _identity(request)
    now = state.clock.monotonic()
    state.stats.arrival(identity, now, endpoint)
    if state.limiter is not None and (config.rate_scope == "all" or endpoint == "create"):
        wait = state.limiter.check(identity, now)
        if wait is not None:
            state.stats.count("rate_limited")
            raise _too_many(
                config, wait, f"request frequency exceeds the QPS limit ({config.qps:g})"
            )
    if state.faults.hit("spurious_429", config.spurious_429_rate):
        raise _too_many(config, 1.0, "request frequency exceeds the QPS limit")
    if state.faults.hit("slow", config.slow_rate):
        await anyio.sleep(config.slow_seconds)
    if state.faults.hit("drop", config.drop_rate):
        body = json.dumps({"status": 200, "message": "success", "data": {}}).encode()
        return identity, CutResponse(body, "application/json", keep=len(body) // 2)
    return identity, None


def _too_many(config: ServerConfig, wait: float, message: str) -> ApiError:
    headers = {"Retry-After": str(max(1, math.ceil(wait)))} if config.send_retry_after else None
    return ApiError(429, message, headers)


def _task_data(request: Request, task: TaskRecord) -> dict[str, object]:
    return task.data(lambda name: str(request.url_for("result", name=name)))


async def create_task(request: Request) -> Response:
    """POST /api/tasks/visual/idphoto."""
    state = _state(request)
    state.stats.request("create")
    identity, cut = await _admit(request, "create")
    if cut is not None:
        return cut
    params = await read_create_params(request, state.config.max_upload_bytes)
    if state.faults.hit("create_error", state.config.error_rate):
        raise ApiError(500, "server-side exception (fault injected by the local server)")
    owner = identity if state.config.api_keys else None
    task = TaskRecord(return_type=params.return_type, created_at=state.clock.time(), owner=owner)
    state.store.add(task)
    state.stats.count("creates")
    state.processor.start(task, params)
    if state.faults.hit("create_error_after", state.config.create_error_after_rate):
        raise ApiError(500, "server-side exception (fault injected by the local server)")
    if not params.sync:
        return envelope(data={"task_id": task.task_id})
    await task.done.wait()
    return envelope(message=task.message, data=_task_data(request, task))


async def query_task(request: Request) -> Response:
    """GET /api/tasks/visual/idphoto/{task_id}."""
    state = _state(request)
    state.stats.request("query")
    identity, cut = await _admit(request, "query")
    if cut is not None:
        return cut
    if state.faults.hit("query_error", state.config.query_error_rate):
        raise ApiError(500, "server-side exception (fault injected by the local server)")
    task = state.store.get(request.path_params["task_id"], state.clock.time())
    if task is None or (task.owner is not None and task.owner != identity):
        # Another key's task is "not found", as on the real service: no existence leak.
        raise ApiError(404, "task not found: check the task_id (tasks are kept for 1 hour)")
    return envelope(message=task.message, data=_task_data(request, task))


async def download_result(request: Request) -> Response:
    """GET /results/{name}: a result image, until it expires (never rate limited)."""
    state = _state(request)
    state.stats.request("download")
    result = state.store.get_result(request.path_params["name"], state.clock.time())
    if result is None:
        raise ApiError(404, "result not found or expired (results are kept for 1 hour)")
    state.stats.count("downloads")
    if state.faults.hit("truncate", state.config.truncate_rate):
        return CutResponse(result.body, result.media_type, keep=len(result.body) // 2)
    return Response(result.body, media_type=result.media_type)


async def local_stats(request: Request) -> Response:
    """GET /_local/stats."""
    state = _state(request)
    state.stats.request("admin")
    return envelope(data=state.snapshot())


async def local_advance(request: Request) -> Response:
    """POST /_local/advance {"seconds": N}: move the server's clock forward (needs a key)."""
    state = _state(request)
    state.stats.request("admin")
    _identity(request)
    try:
        seconds = float((await request.json())["seconds"])
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, 'the body must be JSON like {"seconds": 3600}') from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ApiError(400, "seconds must be a finite number >= 0")
    return envelope(data={"offset": state.advance(seconds)})


async def local_reset(request: Request) -> Response:
    """POST /_local/reset: zero the stats (needs a key)."""
    state = _state(request)
    _identity(request)
    state.reset_stats()
    return envelope(data={})


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return envelope(exc.status, exc.message, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        _state(request).stats.request("unknown")
        return envelope(404, f"not found: {request.url.path}")
    return envelope(exc.status_code, str(exc.detail), headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    return envelope(500, "server-side exception")


class _CountStatuses:
    """Counts every response status in the stats."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.state.stats.status(int(message["status"]))
            await send(message)

        await self.app(scope, receive, counting_send)


def create_app(config: ServerConfig | None = None, *, engine: Engine | None = None) -> Starlette:
    """The ASGI app for ``config``; ``engine`` overrides ``config.engine`` (e.g. a fake)."""
    state = ServerState(config or ServerConfig(), engine)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with state.running():
            yield

    app = Starlette(
        routes=[
            Route(API_PATH, create_task, methods=["POST"]),
            Route(API_PATH + "/{task_id}", query_task, methods=["GET"]),
            Route(RESULTS_PATH + "/{name}", download_result, methods=["GET"], name="result"),
            Route("/_local/stats", local_stats, methods=["GET"]),
            Route("/_local/advance", local_advance, methods=["POST"]),
            Route("/_local/reset", local_reset, methods=["POST"]),
        ],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
        lifespan=lifespan,
    )
    app.state.idphoto = state
    app.add_middleware(_CountStatuses, state=state)
    return app
