"""Reliability under faults: a batch against the local server with each fault knob, alone and
all together; expired results; load shedding.

The end state is what is checked, whatever the order things happened in:

- every input has exactly one outcome;
- every output that can exist exists, decodes, and has the requested size; nothing truncated
  sits under a final name, and no ``*.part`` file is left;
- credits spent (server ``successes``) minus outputs is 0, except for creates that may have
  made a task whose id never came back (``BatchStats.creates_in_doubt``), which are counted
  and reported;
- failed task states are retried with a new create only where ``TaskState.retryable`` says a
  new task may succeed, and at most ``task_retries`` times.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from _batch_helpers import make_images
from PIL import Image

from idphoto_async import AsyncIDPhotoClient
from idphoto_async._batch import BatchOutcome, BatchRunner, BatchStats
from idphoto_async._constants import RESULT_TTL
from idphoto_async._errors import (
    APIError,
    LimiterTimeoutError,
    ResultExpiredError,
    TaskFailedError,
)
from idphoto_async._journal import JOURNAL_NAME, load_journal
from idphoto_async._models import TaskResult, TaskState
from idphoto_async._polling import PollSchedule
from idphoto_async._retry import RetryPolicy
from idphoto_async.testing import LocalServer

KEY = "reliability-key"
SIZE = (150, 200)
N = 10
FAST_RETRY = RetryPolicy(max_retries=8, initial=0.01, maximum=0.05)
RETRYABLE = sorted(s.value for s in TaskState if s.is_failed and s.retryable)
PERMANENT = sorted(s.value for s in TaskState if s.is_failed and not s.retryable)


def fast_polls() -> PollSchedule:
    return PollSchedule(initial_guess=0.05, min_delay=0.05, max_delay=0.3)


def client_for(server: LocalServer, **kwargs: Any) -> AsyncIDPhotoClient:
    kwargs.setdefault("poll_schedule", fast_polls())
    kwargs.setdefault("retry_policy", FAST_RETRY)
    kwargs.setdefault("qps", 500.0)
    return AsyncIDPhotoClient(api_key=KEY, base_url=server.base_url, **kwargs)


async def run(
    client: AsyncIDPhotoClient, inputs: list[Path], out: Path, **options: Any
) -> tuple[list[BatchOutcome], BatchStats]:
    options.setdefault("size", f"{SIZE[0]}x{SIZE[1]}")
    options.setdefault("max_in_flight", len(inputs))
    runner = BatchRunner(client, out_dir=out, **options)
    with anyio.fail_after(60):
        async with runner.outcomes(inputs) as stream:
            outcomes = [o async for o in stream]
    return outcomes, runner.stats


def check_outputs(outcomes: list[BatchOutcome], out: Path, size: tuple[int, int] = SIZE) -> int:
    """Every succeeded output decodes at ``size``; no temp file anywhere. Returns the count."""
    done = 0
    for o in outcomes:
        if o.status == "succeeded":
            assert o.output is not None and o.output.is_file(), o
            with Image.open(o.output) as img:
                img.load()  # a truncated file fails here
                assert img.size == size
            done += 1
        else:
            assert o.output is None
    assert list(out.rglob("*.part")) == []
    files = [p for p in out.rglob("*.png") if p.is_file()]
    assert len(files) == done  # nothing under a final name but the outputs
    return done


# -- the fault matrix ---------------------------------------------------------------------

ALL_TOGETHER = {
    "error_rate": 0.1,
    "create_error_after_rate": 0.1,
    "query_error_rate": 0.1,
    "drop_rate": 0.1,
    "slow_rate": 0.1,
    "slow_seconds": 0.1,
    "spurious_429_rate": 0.05,
    "fail_rate": 0.15,
    "truncate_rate": 0.15,
}

MATRIX = [
    # (id, server knobs, backend)
    ("none", {}, "asyncio"),
    ("error", {"error_rate": 0.3}, "trio"),
    ("create_error_after", {"create_error_after_rate": 0.3}, "asyncio"),
    ("query_error", {"query_error_rate": 0.3}, "trio"),
    ("drop", {"drop_rate": 0.3}, "asyncio"),
    ("slow", {"slow_rate": 0.3, "slow_seconds": 0.2}, "trio"),
    ("spurious_429", {"spurious_429_rate": 0.08}, "asyncio"),
    ("fail_retryable", {"fail_rate": 0.4}, "trio"),
    ("truncate", {"truncate_rate": 0.3}, "asyncio"),
    ("all_asyncio", ALL_TOGETHER, "asyncio"),
    ("all_trio", ALL_TOGETHER, "trio"),
]


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[LocalServer]:
    knobs: dict[str, Any] = {"qps": None, "processing_time": "0", "seed": 1234}
    knobs.update(getattr(request, "param", {}))
    with LocalServer(**knobs) as srv:
        yield srv


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("server", "anyio_backend"),
    [(knobs, backend) for _, knobs, backend in MATRIX],
    ids=[name for name, _, _ in MATRIX],
    indirect=["server"],
)
@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_fault_matrix(server: LocalServer, tmp_path: Path, mode: str) -> None:
    inputs = make_images(tmp_path / "in", N)
    out = tmp_path / "out"
    async with client_for(server) as client:
        outcomes, stats = await run(
            client, inputs, out, mode=mode, task_retries=6, create_retries=6
        )
    server_stats = server.stats()
    assert len(outcomes) == N and len({o.input for o in outcomes}) == N
    done = check_outputs(outcomes, out)
    # Generous retries against independent 10-40 % faults: every photo is made.
    assert done == N, [o.error for o in outcomes if o.error]
    faults = server_stats["faults"]
    # Credits: one per output, plus at most one per create that may have made a task.
    charged = server_stats["successes"]
    assert 0 <= charged - done <= stats.creates_in_doubt
    # Only the create_error_after fault makes a task without giving its id: with the basic
    # engine that task succeeds and is charged (unless fail_rate failed it too).
    leaked = faults.get("create_error_after", 0)
    if not server.config.fail_rate:
        assert charged - done == leaked
    assert stats.creates_in_doubt >= leaked
    # Retryable task failures were all retried, each with one new create (a task whose id
    # never came back may fail unseen).
    failed_tasks = sum(v for k, v in server_stats["outcomes"].items() if int(k) < 0)
    assert stats.retried <= failed_tasks <= stats.retried + leaked
    # Creates: one per input, one per retry, one per create that failed in doubt (the server
    # counts only those that made a task).
    assert server_stats["creates"] <= N + stats.retried + stats.creates_in_doubt
    assert server_stats["creates"] >= N + stats.retried
    if not any(k in faults for k in ("create_error", "create_error_after", "drop", "slow")):
        assert stats.creates_in_doubt == 0
    print(f"{mode}: faults {faults}, in doubt {stats.creates_in_doubt}, retried {stats.retried}")


@pytest.mark.anyio
@pytest.mark.parametrize("server", [{"create_error_after_rate": 1.0}], indirect=True)
async def test_create_error_after_without_create_retries_is_reported(
    server: LocalServer, tmp_path: Path
) -> None:
    """``create_retries=0``: never risk a second charge; the loss is counted and reported."""
    inputs = make_images(tmp_path / "in", 4)
    out = tmp_path / "out"
    async with client_for(server) as client:
        outcomes, stats = await run(client, inputs, out, create_retries=0)
    assert {o.status for o in outcomes} == {"failed"}
    assert stats.creates_in_doubt == 4
    for o in outcomes:
        assert isinstance(o.error, APIError) and o.error.task_may_exist
        record = o.report_record()
        assert record["error"]["http_status"] == 500
        assert record["error"]["task_may_exist"] is True
    with anyio.fail_after(10):
        while server.stats()["successes"] < 4:  # noqa: ASYNC110 - the server's own thread
            await anyio.sleep(0.01)
    assert server.stats()["creates"] == 4


@pytest.mark.anyio
@pytest.mark.parametrize("server", [{"fail_rate": 1.0, "fail_states": PERMANENT}], indirect=True)
async def test_permanent_states_are_reported_not_retried(
    server: LocalServer, tmp_path: Path
) -> None:
    inputs = make_images(tmp_path / "in", 8)
    async with client_for(server) as client:
        outcomes, stats = await run(client, inputs, tmp_path / "out", task_retries=5)
    assert {o.status for o in outcomes} == {"failed"}
    for o in outcomes:
        assert isinstance(o.error, TaskFailedError)
        assert int(o.error.state) in PERMANENT and not o.error.retryable
        assert o.report_record()["error"]["state"] == int(o.error.state)
    assert stats.retried == 0
    assert server.stats()["creates"] == 8
    assert server.stats()["successes"] == 0


@pytest.mark.anyio
@pytest.mark.parametrize("server", [{"fail_rate": 1.0, "fail_states": RETRYABLE}], indirect=True)
@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_retryable_states_are_retried_a_bounded_number_of_times(
    server: LocalServer, tmp_path: Path, mode: str
) -> None:
    inputs = make_images(tmp_path / "in", 4)
    async with client_for(server) as client:
        outcomes, stats = await run(client, inputs, tmp_path / "out", task_retries=2, mode=mode)
    assert {o.status for o in outcomes} == {"failed"}
    assert all(isinstance(o.error, TaskFailedError) and o.error.retryable for o in outcomes)
    assert stats.retried == 8  # 2 new creates per input
    assert server.stats()["creates"] == 12
    assert server.stats()["successes"] == 0  # failed tasks cost nothing


def test_retry_table_matches_the_seed() -> None:
    """The per-state decision documented in docs/reliability.md."""
    assert RETRYABLE == [-15, -13, -11, -9, -8, -2, -1]
    assert PERMANENT == [-17, -16, -14, -10, -7, -5, -3]
    assert TaskState(-99).retryable  # an unknown failure: one more task may succeed


# -- expiry ---------------------------------------------------------------------------------


class LateClient(AsyncIDPhotoClient):
    """Moves the server clock past the result TTL before the first download to each path."""

    def __init__(self, *args: Any, server: LocalServer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.server = server
        self.delayed: set[str] = set()

    async def _download_to(self, result: TaskResult, dest: str, **kwargs: Any) -> str:
        # The batch's download (download() itself goes through it too).
        if dest not in self.delayed:
            self.delayed.add(dest)
            self.server.advance(RESULT_TTL + 1)
        return await super()._download_to(result, dest, **kwargs)


def late_client(server: LocalServer) -> LateClient:
    return LateClient(
        api_key=KEY,
        base_url=server.base_url,
        qps=500,
        server=server,
        poll_schedule=fast_polls(),
        retry_policy=FAST_RETRY,
    )


@pytest.mark.anyio
async def test_expired_result_is_reported_and_not_recreated_by_default(
    server: LocalServer, tmp_path: Path
) -> None:
    inputs = make_images(tmp_path / "in", 3)
    out = tmp_path / "out"
    async with late_client(server) as client:
        outcomes, stats = await run(client, inputs, out, max_in_flight=1)
        assert {o.status for o in outcomes} == {"failed"}
        assert all(isinstance(o.error, ResultExpiredError) for o in outcomes)
        assert all(o.task_id for o in outcomes)
        assert stats.recreated == 0
        assert server.stats()["creates"] == 3
        journal = load_journal(out / JOURNAL_NAME)
        assert {e.failure.type for e in journal.entries.values() if e.failure} == {
            "ResultExpiredError"
        }
        # Re-run: reported again from the journal, nothing paid.
        again, _ = await run(client, inputs, out)
    assert {o.status for o in again} == {"failed"}
    assert all(isinstance(o.error, ResultExpiredError) for o in again)
    assert server.stats()["creates"] == 3
    check_outputs(outcomes, out)


@pytest.mark.anyio
async def test_expired_result_is_recreated_when_allowed(
    server: LocalServer, tmp_path: Path
) -> None:
    inputs = make_images(tmp_path / "in", 3)
    out = tmp_path / "out"
    async with late_client(server) as client:
        outcomes, stats = await run(client, inputs, out, max_in_flight=1, recreate_expired=True)
    assert {o.status for o in outcomes} == {"succeeded"}
    assert stats.recreated == 3
    assert server.stats()["creates"] == 6  # the price of an expired result: a second credit
    assert check_outputs(outcomes, out) == 3


@pytest.mark.anyio
async def test_downloads_do_not_wait_for_the_consumer(server: LocalServer, tmp_path: Path) -> None:
    """A consumer that reads nothing yet: every finished task is downloaded all the same."""
    inputs = make_images(tmp_path / "in", 6)
    out = tmp_path / "out"
    async with client_for(server) as client:
        runner = BatchRunner(client, out_dir=out, max_in_flight=6, size="150x200")
        with anyio.fail_after(30):
            async with runner.outcomes(inputs) as stream:
                while len(list(out.glob("*.png"))) < 6:  # noqa: ASYNC110 - files, not events
                    await anyio.sleep(0.02)
                outcomes = [o async for o in stream]
    assert check_outputs(outcomes, out) == 6


def _age_journal(journal: Path, age: float) -> None:
    """Rewrite every ``created_at`` to ``age`` seconds ago (the journal of an old run)."""
    when = (datetime.now(UTC) - timedelta(seconds=age)).isoformat()
    with contextlib.closing(sqlite3.connect(journal)) as db, db:
        db.execute("UPDATE inputs SET created_at = ? WHERE created_at IS NOT NULL", (when,))


class StuckClient(AsyncIDPhotoClient):
    """wait() never returns: the batch is stopped once every task is created."""

    def __init__(self, *args: Any, stuck_after: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stuck_after = stuck_after
        self.waiting = 0
        self.all_waiting = anyio.Event()

    async def wait(self, task: Any, *, timeout: float | None = None) -> Any:
        self.waiting += 1
        if self.waiting >= self.stuck_after:
            self.all_waiting.set()
        await anyio.sleep_forever()


@pytest.mark.anyio
@pytest.mark.parametrize(("age", "polled"), [(RESULT_TTL - 60, False), (RESULT_TTL - 600, True)])
async def test_resume_skips_tasks_too_close_to_expiry(
    server: LocalServer, tmp_path: Path, age: float, polled: bool
) -> None:
    inputs = make_images(tmp_path / "in", 4)
    out = tmp_path / "out"
    async with StuckClient(api_key=KEY, base_url=server.base_url, qps=500, stuck_after=4) as c:
        runner = BatchRunner(c, out_dir=out, max_in_flight=4)
        with anyio.fail_after(30):
            async with runner.outcomes(inputs):
                await c.all_waiting.wait()
    _age_journal(out / JOURNAL_NAME, age)
    async with client_for(server) as client:
        outcomes, stats = await run(client, inputs, out, size=None)
    assert {o.status for o in outcomes} == {"succeeded"}
    if polled:
        assert stats.resumed == 4
        assert server.stats()["creates"] == 4
    else:  # within RESUME_MARGIN of the TTL: not worth polling, made anew
        assert stats.resumed == 0
        assert server.stats()["creates"] == 8


# -- load -------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("server", [{"qps": 2.0, "processing_time": "fixed:0.1"}], indirect=True)
async def test_fifty_callers_one_client_excess_shed_fast(
    server: LocalServer, tmp_path: Path
) -> None:
    """50 web-handler-like callers at once through one client at the key's 2 QPS.

    With ``queue_timeout`` the callers that cannot get a slot soon are refused at once with
    ``LimiterTimeoutError`` (a 503 for the web app), the admitted ones succeed, and the
    server never answers 429.
    """
    [image] = make_images(tmp_path / "in", 1)
    ok: list[Path] = []
    shed: list[float] = []
    other: list[BaseException] = []
    async with AsyncIDPhotoClient(
        api_key=KEY,
        base_url=server.base_url,
        qps=2.0,
        queue_timeout=1.0,
        poll_schedule=PollSchedule(initial_guess=0.2, min_delay=0.1, max_delay=0.5),
    ) as client:

        async def handler(i: int) -> None:
            start = anyio.current_time()
            try:
                ok.append(await client.generate(image, tmp_path / "out" / f"{i}.png"))
            except LimiterTimeoutError:
                shed.append(anyio.current_time() - start)
            except Exception as exc:  # pragma: no cover - reported below
                other.append(exc)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for i in range(50):
                    tg.start_soon(handler, i)
    stats = server.stats()
    assert other == []
    assert len(ok) + len(shed) == 50
    assert 1 <= len(ok) <= 6, len(ok)
    assert max(shed) < 1.5  # refused within the queue timeout, not hung
    assert stats["responses_429"] == 0
    assert stats["creates"] == len(ok) == stats["successes"]  # every admitted caller got its photo
    for path in ok:
        with Image.open(path) as img:
            img.load()
