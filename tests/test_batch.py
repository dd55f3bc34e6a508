"""The batch runner over the real local server on loopback (asyncio and trio)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
import pytest
from _batch_helpers import make_bad_inputs, make_images

from idphoto_async._batch import (
    BatchOutcome,
    BatchOutcomes,
    BatchRunner,
    default_max_in_flight,
    run_batch,
)
from idphoto_async._batch._plans import PLAN_BATCH
from idphoto_async._client import AsyncIDPhotoClient
from idphoto_async._errors import AuthenticationError, TaskFailedError, ValidationError
from idphoto_async._journal import JOURNAL_NAME, journal_events, load_journal
from idphoto_async._paths import BatchItem, discover
from idphoto_async._polling import PollSchedule
from idphoto_async.testing import LocalServer, LocalServerProcess

pytestmark = pytest.mark.anyio

KEY = "test-key"


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[LocalServer]:
    """A local server started outside any event loop; knobs by indirect parametrisation.

    ``isolated=True`` runs it in its own process, for tests that check the strict rate-limit
    window (in a thread it shares the GIL with the client, which skews its clock under load).
    """
    knobs: dict[str, Any] = {"qps": None, "processing_time": "0"}
    knobs.update(getattr(request, "param", {}))
    if knobs.pop("isolated", False):
        with LocalServerProcess(**knobs) as process:
            yield process  # type: ignore[misc]  # the same base_url and stats()
        return
    with LocalServer(**knobs) as srv:
        yield srv


def knobs(**kwargs: Any) -> pytest.MarkDecorator:
    """Server knobs for one test."""
    return pytest.mark.parametrize("server", [kwargs], indirect=True, ids=["server"])


class StuckClient(AsyncIDPhotoClient):
    """A client whose wait() never returns: lets a test stop a batch once N tasks exist."""

    def __init__(self, *args: Any, stuck_after: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting = 0
        self.stuck_after = stuck_after
        self.all_waiting = anyio.Event()

    async def wait(self, task: Any, *, timeout: float | None = None) -> Any:
        self.waiting += 1
        if self.waiting >= self.stuck_after:
            self.all_waiting.set()
        await anyio.sleep_forever()


def fast_polls() -> PollSchedule:
    """Poll soon: the test server finishes tasks at once (keeps the suite fast)."""
    return PollSchedule(initial_guess=0.05, min_delay=0.05, max_delay=0.5)


def client_for(server: LocalServer, qps: float = 200.0, **kwargs: Any) -> AsyncIDPhotoClient:
    kwargs.setdefault("poll_schedule", fast_polls())
    return AsyncIDPhotoClient(api_key=KEY, base_url=server.base_url, qps=qps, **kwargs)


async def collect(batch: AbstractAsyncContextManager[BatchOutcomes]) -> list[BatchOutcome]:
    async with batch as outcomes:
        return [o async for o in outcomes]


def by_status(outcomes: list[BatchOutcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    return counts


# -- outcome and report --------------------------------------------------------------------


def test_report_record_shape() -> None:
    ok = BatchOutcome("a.jpg", "succeeded", "T1", Path("/o/a.png"))
    assert ok.report_record() == {
        "input": "a.jpg",
        "status": "succeeded",
        "task_id": "T1",
        "output": "/o/a.png",
        "error": None,
    }
    from idphoto_async._models import TaskState

    bad = BatchOutcome("b.jpg", "failed", "T2", error=TaskFailedError("T2", TaskState(-7)))
    record = bad.report_record()
    assert record["error"]["type"] == "TaskFailedError"
    assert record["error"]["state"] == -7
    assert "http_status" not in record["error"]
    auth = BatchOutcome("c", "failed", error=AuthenticationError("no", status_code=401))
    assert auth.report_record()["error"]["http_status"] == 401
    json.dumps(record)


def test_default_max_in_flight_is_bounded() -> None:
    assert default_max_in_flight(2.0) == 24  # ceil(2 * (5 + 5)) + 4
    assert default_max_in_flight(0.01) == 5  # the floor: ceil(0.1 * 7) + 4
    assert default_max_in_flight(10_000) == 256


# -- the main path ---------------------------------------------------------------------------


@knobs(qps=20, processing_time="fixed:0.05", isolated=True)
@pytest.mark.exclusive
async def test_200_photos_at_qps_20_without_429(
    server: LocalServer, tmp_path: Path, anyio_backend: str
) -> None:
    """200 tiny photos under a server limit of 20 QPS: all done, not one 429.

    Async mode on asyncio, sync mode on trio (each backend runs one of them: the QPS bound
    makes the async run take ~20 s).
    """
    mode = "async" if anyio_backend == "asyncio" else "sync"
    make_images(tmp_path / "in", 200, subdirs=4)
    inputs = discover([str(tmp_path / "in")])  # lazily walked, mirrored under out
    started = time.perf_counter()
    async with client_for(server, qps=20, poll_schedule=PollSchedule()) as client:
        outcomes = await collect(run_batch(client, inputs, out_dir=tmp_path / "out", mode=mode))
    elapsed = time.perf_counter() - started
    stats = server.stats()
    print(f"200 photos ({mode} mode, {anyio_backend}): {elapsed:.1f} s, stats {stats['creates']}")
    assert by_status(outcomes) == {"succeeded": 200}
    assert stats["responses_429"] == 0
    assert stats["creates"] == 200
    outputs = {o.output for o in outcomes}
    assert len(outputs) == 200
    assert all(p is not None and p.is_file() and p.suffix == ".png" for p in outputs)
    # The input tree is mirrored: in/d0/p00000.jpg -> out/d0/p00000.png
    first = next(o for o in outcomes if o.input.endswith("p00000.jpg"))
    assert first.output is not None
    assert first.output == (tmp_path / "out" / "d0" / "p00000.png").resolve()


async def test_resume_skips_done_and_polls_created(server: LocalServer, tmp_path: Path) -> None:
    inputs = make_images(tmp_path / "in", 30)
    out = tmp_path / "out"
    async with client_for(server) as client:
        async with run_batch(client, inputs, out_dir=out, max_in_flight=8) as it:
            seen = 0
            async for _ in it:
                seen += 1
                if seen == 10:
                    break  # interrupted: the ones in flight are cancelled
        state = load_journal(out / JOURNAL_NAME)
        created = sum(1 for e in state.entries.values() if e.task_id)
        assert created >= 10
        assert state.in_doubt == 0
        outcomes = await collect(run_batch(client, inputs, out_dir=out, max_in_flight=8))
    counts = by_status(outcomes)
    assert counts.get("failed", 0) == 0
    assert counts["skipped"] >= 10
    assert server.stats()["creates"] == 30  # no task was paid twice
    assert all((out / "in" / f"p{i:05d}.png").is_file() for i in range(30)) or all(
        o.output is not None and o.output.is_file() for o in outcomes
    )


async def test_rerun_without_outputs_downloads_again_without_creating(
    server: LocalServer, tmp_path: Path
) -> None:
    inputs = make_images(tmp_path / "in", 5)
    out = tmp_path / "out"
    async with client_for(server) as client:
        first = await collect(run_batch(client, inputs, out_dir=out))
        for o in first:
            assert o.output is not None
            o.output.unlink()
        second = await collect(run_batch(client, inputs, out_dir=out))
    assert by_status(second) == {"succeeded": 5}
    assert server.stats()["creates"] == 5
    assert {o.task_id for o in first} == {o.task_id for o in second}


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_a_photo_costs_three_journal_records(
    server: LocalServer, tmp_path: Path, mode: str
) -> None:
    """``creating``, ``created``, ``downloaded`` (which also marks the task done): no record
    of the task's success alone, which a re-run never used (it polls for the result URL)."""
    inputs = make_images(tmp_path / "in", 6)
    out = tmp_path / "out"
    async with client_for(server) as client:
        outcomes = await collect(run_batch(client, inputs, out_dir=out, mode=mode))
    assert by_status(outcomes) == {"succeeded": 6}
    journal = out / JOURNAL_NAME
    assert journal_events(journal) == 3 * 6
    entries = load_journal(journal).entries.values()
    assert all(e.done and e.output and e.task_id for e in entries) and len(entries) == 6


async def test_rerun_removes_the_temporary_files_a_killed_run_left(
    server: LocalServer, tmp_path: Path
) -> None:
    """Seen in the SIGKILL campaign: a run killed while writing an output left its
    ``.<name>.<random>.part`` beside it for good; the run that stores the photo removes it."""
    inputs = make_images(tmp_path / "in", 3)
    out = tmp_path / "out"
    async with client_for(server) as client:
        first = await collect(run_batch(client, inputs, out_dir=out))
        killed = first[0].output
        assert killed is not None
        killed.unlink()  # the kill came before the rename...
        stale = killed.with_name(f".{killed.name}.0badf00d.part")
        stale.write_bytes(b"\x89PNG half an image")  # ...and left this
        other = first[1].output
        assert other is not None
        kept = other.with_name(f".{other.name}x.0badf00d.part")  # another name's: kept
        kept.write_bytes(b"")
        second = await collect(run_batch(client, inputs, out_dir=out))
    assert by_status(second) == {"succeeded": 1, "skipped": 2}
    assert killed.is_file() and not stale.exists() and kept.exists()
    assert server.stats()["creates"] == 3


async def test_a_folder_named_like_a_temporary_file_does_not_fail_the_photo(
    server: LocalServer, tmp_path: Path
) -> None:
    inputs = make_images(tmp_path / "in", 1)
    out = tmp_path / "out"
    async with client_for(server) as client:
        (first,) = await collect(run_batch(client, inputs, out_dir=out))
        assert first.output is not None
        first.output.unlink()
        folder = first.output.with_name(f".{first.output.name}.0badf00d.part")
        folder.mkdir()
        (second,) = await collect(run_batch(client, inputs, out_dir=out))
    assert second.status == "succeeded" and first.output.is_file() and folder.is_dir()
    assert server.stats()["creates"] == 1


async def test_changed_options_make_new_tasks(server: LocalServer, tmp_path: Path) -> None:
    inputs = make_images(tmp_path / "in", 3)
    async with client_for(server) as client:
        await collect(run_batch(client, inputs, out_dir=tmp_path / "out", size="200x300"))
        again = await collect(
            run_batch(client, inputs, out_dir=tmp_path / "out", size="200x300", format="jpg")
        )
    assert by_status(again) == {"succeeded": 3}
    assert all(o.output is not None and o.output.suffix == ".jpg" for o in again)
    assert server.stats()["creates"] == 6


async def test_bad_inputs_fail_alone(server: LocalServer, tmp_path: Path) -> None:
    good = make_images(tmp_path / "in", 6)
    bad = make_bad_inputs(tmp_path / "bad")
    inputs: list[Any] = [*good[:3], *bad.values(), *good[3:], ("odd.jpg", {"size": "1x1"})]
    async with client_for(server) as client:
        outcomes = await collect(run_batch(client, inputs, out_dir=tmp_path / "out"))
    assert len(outcomes) == len(inputs)
    failed = {o.input: o for o in outcomes if o.status == "failed"}
    assert set(failed) == {str(p) for p in bad.values()} | {"odd.jpg"}
    for o in failed.values():
        assert isinstance(o.error, ValidationError)
        assert o.task_id is None
        assert str(o.error)
    assert "20" in str(failed[str(bad["big"])].error)
    assert "4096" in str(failed[str(bad["wide"])].error)
    assert "size" in str(failed["odd.jpg"].error)
    assert by_status(outcomes)["succeeded"] == 6
    assert server.stats()["creates"] == 6  # refused inputs cost nothing


@knobs(fail_rate=1.0, fail_states=[-7])
async def test_permanent_failures_are_reported_again_without_spending(
    server: LocalServer, tmp_path: Path
) -> None:
    inputs = make_images(tmp_path / "in", 4)
    out = tmp_path / "out"
    async with client_for(server) as client:
        first = await collect(run_batch(client, inputs, out_dir=out))
        second = await collect(run_batch(client, inputs, out_dir=out))
        assert server.stats()["creates"] == 4
        third = await collect(run_batch(client, inputs, out_dir=out, retry_failed=True))
    assert server.stats()["creates"] == 8
    for run in (first, second, third):
        assert by_status(run) == {"failed": 4}
        assert all(isinstance(o.error, TaskFailedError) for o in run)
    assert [o.report_record() for o in sorted(first, key=lambda o: o.input)] == [
        o.report_record() for o in sorted(second, key=lambda o: o.input)
    ]
    assert second[0].report_record()["error"]["state"] == -7


@knobs(fail_rate=1.0, fail_states=[-1])
async def test_retryable_failures_are_created_again(server: LocalServer, tmp_path: Path) -> None:
    inputs = make_images(tmp_path / "in", 3)
    async with client_for(server) as client:
        # task_retries=0: no new create within a run (see test_reliability_faults.py for those)
        await collect(run_batch(client, inputs, out_dir=tmp_path / "out", task_retries=0))
        again = await collect(run_batch(client, inputs, out_dir=tmp_path / "out", task_retries=0))
    assert by_status(again) == {"failed": 3}
    assert server.stats()["creates"] == 6


async def test_tasks_unknown_to_a_new_server_are_created_again(tmp_path: Path) -> None:
    inputs = make_images(tmp_path / "in", 12)
    out = tmp_path / "out"
    async with (
        LocalServer(qps=None, processing_time="0") as first_server,
        StuckClient(api_key=KEY, base_url=first_server.base_url, qps=200, stuck_after=12) as client,
    ):
        runner = BatchRunner(client, out_dir=out, max_in_flight=12)
        async with runner.outcomes(inputs):
            await client.all_waiting.wait()  # 12 tasks created and journaled: "crash"
    assert sum(1 for e in load_journal(out / JOURNAL_NAME).entries.values() if e.task_id) == 12
    async with LocalServer(qps=None, processing_time="0") as second_server:
        async with client_for(second_server) as client:
            outcomes = await collect(run_batch(client, inputs, out_dir=out))
        assert by_status(outcomes) == {"succeeded": 12}
        assert second_server.stats()["creates"] == 12


async def test_cancelled_run_resumes_by_polling(server: LocalServer, tmp_path: Path) -> None:
    """Cancel (as Ctrl-C does) while every task is in flight: the re-run pays nothing twice."""
    inputs = make_images(tmp_path / "in", 10)
    out = tmp_path / "out"
    async with StuckClient(api_key=KEY, base_url=server.base_url, qps=200, stuck_after=10) as c:

        async def consume() -> None:
            await collect(run_batch(c, inputs, out_dir=out, max_in_flight=10))

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await c.all_waiting.wait()
            tg.cancel_scope.cancel()
    assert server.stats()["creates"] == 10
    async with client_for(server) as client:
        outcomes = await collect(run_batch(client, inputs, out_dir=out))
    assert by_status(outcomes) == {"succeeded": 10}
    assert server.stats()["creates"] == 10


async def test_lazy_inputs(server: LocalServer, tmp_path: Path) -> None:
    pool = make_images(tmp_path / "in", 40)
    pulled = 0

    def huge() -> Iterator[BatchItem]:
        nonlocal pulled
        for i in range(10**9):
            pulled += 1
            yield BatchItem(str(pool[i % len(pool)]), PurePosixPath(f"o{i}"))

    async with client_for(server) as client:
        runner = BatchRunner(client, out_dir=tmp_path / "out", max_in_flight=4, journal=False)
        async with runner.outcomes(huge()) as outcomes:
            done = 0
            async for outcome in outcomes:
                done += 1
                assert outcome.status == "succeeded"
                # pulled = finished + in flight (at most 4) + 1 waiting for a slot + the
                # rest of the group planned in one worker-thread hop
                assert pulled <= done + 4 + 1 + PLAN_BATCH
                if done == 25:
                    break
    assert pulled <= 25 + 4 + 1 + PLAN_BATCH


async def test_async_iterable_inputs_and_sync_mode(server: LocalServer, tmp_path: Path) -> None:
    inputs = make_images(tmp_path / "in", 6)

    async def agen() -> AsyncIterator[Path]:
        for p in inputs:
            yield p

    async with client_for(server) as client:
        outcomes = await collect(
            run_batch(client, agen(), out_dir=tmp_path / "out", mode="sync", format="jpg")
        )
    assert by_status(outcomes) == {"succeeded": 6}
    stats = server.stats()
    assert stats["creates"] == 6
    assert stats["requests"].get("query", 0) == 0  # one request per photo
    assert stats["requests"]["create"] == 6


async def test_url_inputs(server: LocalServer, tmp_path: Path) -> None:
    inputs = make_images(tmp_path / "in", 2)
    async with client_for(server) as client:
        first = await collect(run_batch(client, inputs, out_dir=tmp_path / "a", return_type="url"))
        urls = []
        for o in first:
            assert o.task_id is not None
            result = await client.get(o.task_id)
            assert result.image is not None
            urls.append(result.image)
        outcomes = await collect(run_batch(client, urls, out_dir=tmp_path / "b"))
    assert by_status(outcomes) == {"succeeded": 2}
    for o in outcomes:
        assert o.output is not None
        assert o.output.parent == (tmp_path / "b").resolve()
        assert len(o.output.stem.rsplit("-", 1)[-1]) == 8  # the short hash


async def test_clashing_names_and_unsafe_names(server: LocalServer, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    names = ["same.jpg", "same.png", "sp ace ü.jpg"]
    for n in names:
        (src / n).write_bytes(make_images(tmp_path / "pool", 1)[0].read_bytes())
    items: list[Any] = [src / n for n in names]
    (src / "other.jpg").write_bytes((src / "same.jpg").read_bytes())
    items.append(BatchItem(str(src / "other.jpg"), PurePosixPath("../../escape")))
    out = tmp_path / "out"
    async with client_for(server) as client:
        outcomes = await collect(run_batch(client, items, out_dir=out))
        again = await collect(run_batch(client, items, out_dir=out))
    assert by_status(outcomes) == {"succeeded": 4}
    assert by_status(again) == {"skipped": 4}
    outputs = [o.output for o in outcomes]
    assert len(set(outputs)) == 4
    real_out = out.resolve()
    assert all(p is not None and p.resolve().is_relative_to(real_out) for p in outputs)


async def test_bad_batch_options_fail_fast(server: LocalServer, tmp_path: Path) -> None:
    async with client_for(server) as client:
        with pytest.raises(ValidationError, match="bg_color"):
            await collect(run_batch(client, [], out_dir=tmp_path, bg_color="FFFFFF"))
        with pytest.raises(TypeError, match="unknown"):
            await collect(run_batch(client, [], out_dir=tmp_path, colour="red"))
    assert server.stats()["requests_total"] == 0
