"""Processing a task: fetch, engine in a worker thread, simulated latency, final state."""

from __future__ import annotations

import base64
import io
import logging
import random

import anyio
import httpx
from anyio.abc import TaskGroup
from PIL import Image

from .._constants import MAX_DIMENSION
from ..engine import Engine, EngineError, EngineRequest, EngineResult
from ._clock import Clock
from ._config import ServerConfig
from ._faults import Faults
from ._params import CreateParams
from ._stats import Stats
from ._store import TaskRecord, TaskStore

__all__ = ["Processor"]

logger = logging.getLogger("idphoto_async.server")

# (state, progress) after the engine ran; the simulated latency is spread over them.
_STAGES = ((4, 40), (6, 65), (5, 90))


class Processor:
    """Runs tasks in the background; at most ``workers`` engine calls at a time."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        engine: Engine,
        clock: Clock,
        store: TaskStore,
        stats: Stats,
        faults: Faults,
    ) -> None:
        self.config = config
        self.engine = engine
        self.clock = clock
        self.store = store
        self.stats = stats
        self.faults = faults
        self.latency = config.latency
        self.latency_rng = random.Random(None if config.seed is None else f"{config.seed}/latency")
        # Made in attach(), inside the server's own event loop: anyio picks the primitives'
        # backend when they are created, and the app may be built under a trio caller.
        self.workers: anyio.CapacityLimiter | None = None
        self._threads: anyio.CapacityLimiter | None = None
        self._task_group: TaskGroup | None = None
        self._http: httpx.AsyncClient | None = None

    def attach(self, task_group: TaskGroup, http: httpx.AsyncClient) -> None:
        """Use these for background work and image_url downloads (from the lifespan)."""
        self._task_group, self._http = task_group, http
        self.workers = anyio.CapacityLimiter(self.config.workers)
        self._threads = anyio.CapacityLimiter(self.config.workers)

    def start(self, task: TaskRecord, params: CreateParams) -> None:
        """Process ``task`` in the background; ``task.done`` is set when it ends."""
        if self._task_group is None:
            raise RuntimeError("the server's lifespan has not started")
        self._task_group.start_soon(self._run, task, params)

    async def _run(self, task: TaskRecord, params: CreateParams) -> None:
        fail_state: int | None = None
        if self.faults.hit("task_failure", self.config.fail_rate):
            fail_state = self.faults.choose(self.config.fail_states)
        delay = self.latency.sample(self.latency_rng)
        try:
            result = await self._work(task, params)
            for state, progress in _STAGES:
                task.state, task.progress = state, progress
                await self._sleep(task, delay / len(_STAGES))
            if fail_state is not None:
                raise EngineError(
                    fail_state, "processing failed (fault injected by the local server)"
                )
            self._succeed(task, result, params.format)
        except EngineError as exc:
            self._finish(task, exc.state, exc.message)
        except Exception:
            logger.exception("task %s failed unexpectedly", task.task_id)
            self._finish(task, -1, "processing failed")

    async def _work(self, task: TaskRecord, params: CreateParams) -> EngineResult:
        if self.workers is None or self._threads is None:
            raise RuntimeError("the server's lifespan has not started")
        async with self.workers:
            task.processed_at = self.clock.time()
            task.state, task.progress = 2, 10
            image = params.image
            if image is None:
                image = await self._fetch(params.image_url or "")
            task.state, task.progress = 3, 20
            request = EngineRequest(image, params.size, params.format, params.bg_color)
            result = await anyio.to_thread.run_sync(self._process, request, limiter=self._threads)
        self._check_deadline(task)
        return result

    def _process(self, request: EngineRequest) -> EngineResult:
        try:
            with Image.open(io.BytesIO(request.image)) as probe:
                width, height = probe.size
        except Exception:  # not an image: the engine says so with -7
            width = height = 0
        if width > MAX_DIMENSION or height > MAX_DIMENSION:
            raise EngineError(
                -7, f"the image is {width}x{height}, over the {MAX_DIMENSION}x{MAX_DIMENSION} limit"
            )
        return self.engine.process(request)

    async def _fetch(self, url: str) -> bytes:
        assert self._http is not None
        limit = self.config.max_url_bytes
        too_large = EngineError(-5, f"the image_url image exceeds {limit // (1024 * 1024)} MB")
        try:
            async with self._http.stream("GET", url) as response:
                if response.status_code != 200:
                    raise EngineError(-3, f"image_url answered HTTP {response.status_code}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise too_large
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise too_large
                return bytes(body)
        except httpx.HTTPError as exc:
            raise EngineError(-3, f"could not download image_url ({type(exc).__name__})") from None

    async def _sleep(self, task: TaskRecord, seconds: float) -> None:
        assert task.processed_at is not None
        remaining = task.processed_at + self.config.max_processing - self.clock.time()
        await anyio.sleep(max(0.0, min(seconds, remaining)))
        if seconds >= remaining:  # slept to the deadline (an event loop may wake a timer a
            raise self._timed_out()  # hair early: the clock alone can read just short of it)
        self._check_deadline(task)

    def _check_deadline(self, task: TaskRecord) -> None:
        assert task.processed_at is not None
        if self.clock.time() - task.processed_at >= self.config.max_processing:
            raise self._timed_out()

    def _timed_out(self) -> EngineError:
        return EngineError(-8, f"processing timed out after {self.config.max_processing:g} seconds")

    def _succeed(self, task: TaskRecord, result: EngineResult, fmt: str) -> None:
        if task.return_type == 2:
            task.image_base64 = base64.b64encode(result.image).decode("ascii")
        else:
            task.result_name = self.store.put_result(result.image, fmt, self.clock.time())
        if result.note:
            logger.debug("task %s: %s", task.task_id, result.note)
        self._finish(task, 1, "success")

    def _finish(self, task: TaskRecord, state: int, message: str) -> None:
        task.state = state
        if state == 1:
            task.progress = 100
        task.message = message
        task.completed_at = self.clock.time()
        self.stats.outcome(state)
        task.done.set()
