"""The batch on the unhappy paths a new user walks into (issue 12), through the Python API.

Against the real local server on loopback, both anyio backends. Each test names the promise
it keeps: one photo is paid once, an output never replaces an input, a configuration error
is raised (as itself) before any request, a refused key or a dead origin stops the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from _batch_helpers import make_bad_inputs, make_images
from _fs_helpers import tmpfs
from redis_server import free_port  # a free loopback port

from idphoto_async import (
    APIConnectionError,
    AsyncIDPhotoClient,
    AuthenticationError,
    BatchConfigError,
    BatchOutcome,
    BatchRunner,
    IDPhotoError,
    TaskFailedError,
)
from idphoto_async._batch import run_batch
from idphoto_async._journal import (
    JOURNAL_NAME,
    Journal,
    JournalLockedError,
    JournalWriteError,
    load_journal,
)
from idphoto_async._polling import PollSchedule
from idphoto_async._retry import RetryPolicy
from idphoto_async.testing import LocalServer

pytestmark = pytest.mark.anyio

KEY = "unhappy-key"
FAST_RETRY = RetryPolicy(max_retries=2, initial=0.01, maximum=0.02)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[LocalServer]:
    knobs: dict[str, Any] = {"qps": None, "processing_time": "0"}
    knobs.update(getattr(request, "param", {}))
    with LocalServer(**knobs) as srv:
        yield srv


def knobs(**kwargs: Any) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("server", [kwargs], indirect=True, ids=["server"])


def client_for(server: LocalServer, key: str = KEY, **kwargs: Any) -> AsyncIDPhotoClient:
    kwargs.setdefault("poll_schedule", PollSchedule(initial_guess=0.05, min_delay=0.05))
    kwargs.setdefault("retry_policy", FAST_RETRY)
    return AsyncIDPhotoClient(api_key=key, base_url=server.base_url, qps=500, **kwargs)


async def drain(runner: BatchRunner, inputs: Any) -> list[BatchOutcome]:
    with anyio.fail_after(30):
        async with runner.outcomes(inputs) as outcomes:
            return [o async for o in outcomes]


async def run(client: AsyncIDPhotoClient, inputs: Any, **options: Any) -> list[BatchOutcome]:
    with anyio.fail_after(60):
        async with client.batch(inputs, **options) as outcomes:
            return [o async for o in outcomes]


# -- 1. one photo named several ways is one input -----------------------------------------


async def test_one_photo_named_several_ways_is_made_once(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    images = make_images(tmp_path / "img", 3)
    b = images[1]
    (tmp_path / "link.jpg").symlink_to(b)
    inputs = ["img/p00001.jpg", "img/p00001.jpg", "./img/p00001.jpg", str(b), "img", "link.jpg"]
    async with client_for(server) as client, client.batch(inputs, out_dir="out") as outcomes:
        done = [o async for o in outcomes]
        stats = outcomes.stats
    assert sorted(o.input for o in done) == ["img/p00000.jpg", "img/p00001.jpg", "img/p00002.jpg"]
    assert {o.status for o in done} == {"succeeded"}
    assert server.stats()["creates"] == 3
    assert stats.duplicates == 5
    assert len(list((tmp_path / "out").rglob("*.png"))) == 3


async def test_an_empty_input_is_refused_before_any_request(
    server: LocalServer, tmp_path: Path
) -> None:
    images = make_images(tmp_path / "in", 1)
    async with client_for(server) as client:
        with pytest.raises(BatchConfigError, match="empty"):
            await run(client, [*[""] * 100, images[0]], out_dir=tmp_path / "out")
    assert server.stats()["requests_total"] == 0


# -- 2. an output never replaces an input ---------------------------------------------------


@pytest.mark.parametrize("where", ["same", "parent", "file_inside"])
async def test_out_dir_overlapping_the_inputs_is_refused(
    server: LocalServer, tmp_path: Path, where: str
) -> None:
    images = make_images(tmp_path / "photos" / "in", 3)
    before = {p: p.read_bytes() for p in images}
    inputs: list[Any]
    if where == "same":
        inputs, out = [tmp_path / "photos" / "in"], tmp_path / "photos" / "in"
    elif where == "parent":
        inputs, out = [tmp_path / "photos" / "in"], tmp_path / "photos"
    else:
        inputs, out = [images[0]], tmp_path / "photos"
    async with client_for(server) as client:
        with pytest.raises(BatchConfigError, match="output directory"):
            await run(client, inputs, out_dir=out)
    assert server.stats()["requests_total"] == 0
    assert {p: p.read_bytes() for p in images} == before


async def test_out_dir_inside_the_input_folder_is_never_walked(
    server: LocalServer, tmp_path: Path
) -> None:
    images = make_images(tmp_path / "in", 3)
    out = tmp_path / "in" / "out"
    async with client_for(server) as client:
        first = await run(client, [tmp_path / "in"], out_dir=out, format="jpg")
        again = await run(client, [tmp_path / "in"], out_dir=out, format="jpg")
    assert {o.status for o in first} == {"succeeded"} and len(first) == 3
    assert {o.status for o in again} == {"skipped"} and len(again) == 3  # outputs not taken
    assert server.stats()["creates"] == 3
    assert all(p.is_file() for p in images)


# -- 3-4. configuration errors: raised as themselves, before any request ---------------------


async def test_a_journal_that_is_a_directory_or_an_input_is_refused(
    server: LocalServer, tmp_path: Path
) -> None:
    images = make_images(tmp_path / "in", 2)
    (tmp_path / "adir").mkdir()
    async with client_for(server) as client:
        with pytest.raises(BatchConfigError, match="directory"):
            await run(client, images, out_dir=tmp_path / "out", journal=tmp_path / "adir")
        with pytest.raises(BatchConfigError, match="one of the inputs"):
            await run(client, images, out_dir=tmp_path / "out", journal=images[0])
    assert server.stats()["requests_total"] == 0


async def test_an_out_dir_under_a_file_is_refused(server: LocalServer, tmp_path: Path) -> None:
    images = make_images(tmp_path / "in", 1)
    (tmp_path / "afile").write_text("x")
    async with client_for(server) as client:
        with pytest.raises(BatchConfigError, match="cannot create the output directory"):
            await run(client, images, out_dir=tmp_path / "afile" / "sub")
        with pytest.raises(BatchConfigError, match="not a directory"):
            await run(client, images, out_dir=tmp_path / "afile")
    assert server.stats()["requests_total"] == 0


async def test_a_read_only_out_dir_is_refused(server: LocalServer, tmp_path: Path) -> None:
    images = make_images(tmp_path / "in", 1)
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        async with client_for(server) as client:
            with pytest.raises(BatchConfigError, match="Read-only"):
                await run(client, images, out_dir=ro)
    assert server.stats()["requests_total"] == 0


async def test_a_journal_in_use_raises_itself(server: LocalServer, tmp_path: Path) -> None:
    images = make_images(tmp_path / "in", 2)
    out = tmp_path / "out"
    out.mkdir()
    async with Journal(out / JOURNAL_NAME), client_for(server) as client:
        with pytest.raises(JournalLockedError):  # not an ExceptionGroup
            await run(client, images, out_dir=out)
    assert server.stats()["requests_total"] == 0


async def test_an_error_in_the_callers_block_reaches_it_as_itself(
    server: LocalServer, tmp_path: Path
) -> None:
    images = make_images(tmp_path / "in", 4)

    async def consume(client: AsyncIDPhotoClient) -> None:
        async with client.batch(images, out_dir=tmp_path / "out") as outcomes:
            async for _ in outcomes:
                raise KeyError("mine")

    async with client_for(server) as client:
        with pytest.raises(KeyError, match="mine"):
            await consume(client)


# -- 5-6. errors of the run stop it at once ----------------------------------------------------


@knobs(api_keys=["the-right-key"])
async def test_a_wrong_key_stops_the_batch_and_the_right_one_just_works(
    server: LocalServer, tmp_path: Path
) -> None:
    images = make_images(tmp_path / "in", 40)
    out = tmp_path / "out"
    async with client_for(server, key="a-wrong-key") as client:
        runner = BatchRunner(client, out_dir=out, max_in_flight=4)
        with pytest.raises(AuthenticationError):
            await drain(runner, images)
    refused = server.stats()["requests"].get("create", 0)
    assert refused <= 4  # at most the creates already in flight, not one per photo
    assert runner.stats.failed == 0
    assert not any(e.failure for e in load_journal(out / JOURNAL_NAME).entries.values())
    async with client_for(server, key="the-right-key") as client:
        outcomes = await run(client, images, out_dir=out)
    assert {o.status for o in outcomes} == {"succeeded"} and len(outcomes) == 40
    assert server.stats()["creates"] == 40


async def test_a_403_refusal_of_the_key_stops_the_batch(tmp_path: Path) -> None:
    images = make_images(tmp_path / "in", 20)
    posts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal posts
        posts += 1
        return httpx.Response(403, json={"status": 403, "message": "key disabled"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with AsyncIDPhotoClient(
        api_key=KEY, base_url="https://api.example", http_client=http, qps=1000
    ) as client:
        with pytest.raises(IDPhotoError, match="403"):
            await run(client, images, out_dir=tmp_path / "out", max_in_flight=2)
    assert posts <= 2


async def test_a_dead_origin_stops_after_the_first_retries(tmp_path: Path) -> None:
    images = make_images(tmp_path / "in", 40)
    base_url = f"http://127.0.0.1:{free_port()}"
    async with AsyncIDPhotoClient(
        api_key=KEY, base_url=base_url, qps=500, retry_policy=FAST_RETRY
    ) as client:
        runner = BatchRunner(client, out_dir=tmp_path / "out", max_in_flight=4)
        with pytest.raises(APIConnectionError):
            await drain(runner, images)
    assert runner.stats.taken <= 5  # the first in flight, not all 40
    assert runner.stats.failed == 0


# -- 7. a journal that cannot be written stops the run, keeping the task ids -------------------


async def test_a_journal_write_error_stops_the_run_and_keeps_the_task_id(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from idphoto_async._batch import _run

    class FullDisk(Journal):
        async def created(self, key: str, input: str, task_id: str, created_at: Any) -> None:
            raise JournalWriteError.write_failed(self.path, None, task_id=task_id, kept=False)

    monkeypatch.setattr(_run, "Journal", FullDisk)
    images = make_images(tmp_path / "in", 10)
    async with client_for(server) as client:
        runner = BatchRunner(client, out_dir=tmp_path / "out", max_in_flight=1)
        with pytest.raises(JournalWriteError, match="disk full at"):
            await drain(runner, images)
    assert server.stats()["creates"] == 1  # stopped at the first: no photo after it
    assert len(runner.unjournaled_task_ids) == 1


# -- 9. counters and records ------------------------------------------------------------------


async def test_refused_inputs_are_not_creates(server: LocalServer, tmp_path: Path) -> None:
    bad = make_bad_inputs(tmp_path / "bad")
    good = make_images(tmp_path / "in", 2)
    async with (
        client_for(server) as client,
        client.batch([*bad.values(), *good], out_dir=tmp_path / "out") as outcomes,
    ):
        done = [o async for o in outcomes]
        stats = outcomes.stats
    assert len(done) == len(bad) + 2
    assert stats.creates == 2 == server.stats()["creates"]
    assert stats.rejected == len(bad) == stats.failed


async def test_a_failure_after_the_task_was_made_keeps_its_task_id(
    server: LocalServer, tmp_path: Path
) -> None:
    images = make_images(tmp_path / "in", 1)
    out = tmp_path / "out"
    (out / "p00000.png").mkdir(parents=True)  # the output path is taken by a folder
    async with client_for(server) as client:
        [outcome] = await run(client, images, out_dir=out)
    assert outcome.status == "failed" and outcome.task_id
    assert outcome.report_record()["task_id"] == outcome.task_id
    [entry] = load_journal(out / JOURNAL_NAME).entries.values()
    assert entry.task_id == outcome.task_id


# -- 10. the API walks folders like the CLI ---------------------------------------------------


async def test_client_batch_walks_folders(server: LocalServer, tmp_path: Path) -> None:
    make_images(tmp_path / "photos", 4, subdirs=2)
    async with client_for(server) as client:
        outcomes = await run(client, [str(tmp_path / "photos") + "/"], out_dir=tmp_path / "out")
    assert {o.status for o in outcomes} == {"succeeded"} and len(outcomes) == 4
    assert (tmp_path / "out" / "d0" / "p00000.png").is_file()
    assert (tmp_path / "out" / "d1" / "p00001.png").is_file()
    async with client_for(server) as client:  # one path, not a list: not its characters
        again = await run(client, tmp_path / "photos", out_dir=tmp_path / "out")
    assert {o.status for o in again} == {"skipped"} and len(again) == 4


# -- 12. the re-create policy -------------------------------------------------------------------


@knobs(create_error_after_rate=1.0)
async def test_a_create_in_doubt_is_not_paid_again_unless_asked(
    server: LocalServer, tmp_path: Path
) -> None:
    images = make_images(tmp_path / "in", 3)
    async with client_for(server) as client:
        async with client.batch(images, out_dir=tmp_path / "a") as outcomes:
            default = [o async for o in outcomes]
            assert outcomes.stats.possible_extra_charges == 0
        assert server.stats()["creates"] == 3  # one create per photo, never a second
        assert all(o.status == "failed" and o.possible_extra_charges == 0 for o in default)
        async with client.batch(images, out_dir=tmp_path / "b", create_retries=1) as outcomes:
            asked = [o async for o in outcomes]
            assert outcomes.stats.possible_extra_charges == 3
    assert server.stats()["creates"] == 9
    for o in asked:
        assert o.possible_extra_charges == 1
        assert o.report_record()["possible_extra_charges"] == 1


# -- 13. errors read back from the journal keep their fields -----------------------------------


@knobs(fail_rate=1.0, fail_states=[-7])
async def test_a_restored_task_failure_has_its_task_id_and_state(
    server: LocalServer, tmp_path: Path
) -> None:
    images = make_images(tmp_path / "in", 2)
    async with client_for(server) as client:
        first = await run(client, images, out_dir=tmp_path / "out")
        again = await run(client, images, out_dir=tmp_path / "out")
    assert server.stats()["creates"] == 2
    by_input = {o.input: o for o in first}
    for o in again:
        assert isinstance(o.error, TaskFailedError)
        assert o.error.task_id == by_input[o.input].task_id == o.task_id
        assert int(o.error.state) == -7
        assert str(o.error) == str(by_input[o.input].error)


async def test_run_batch_is_an_async_context_manager(server: LocalServer, tmp_path: Path) -> None:
    images = make_images(tmp_path / "in", 2)
    async with client_for(server) as client:
        batch = run_batch(client, images, out_dir=tmp_path / "out")
        assert hasattr(batch, "__aenter__") and not hasattr(batch, "__anext__")
        async with batch as outcomes:
            assert len([o async for o in outcomes]) == 2
    assert os.listdir(tmp_path / "out")
