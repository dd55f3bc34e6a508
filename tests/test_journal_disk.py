"""The journal on a full or read-only disk, for real: a small tmpfs mounted for each test.

A full disk never loses a paid task id: the ``created`` commit is made from the reserve that
``PATH-lock`` holds, the run is told to stop (`JournalWriteError`), and the re-run polls the
task instead of creating it. Mounting needs root (CAP_SYS_ADMIN); elsewhere these tests skip.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from _batch_helpers import make_images

from idphoto_async import AsyncIDPhotoClient
from idphoto_async._batch import BatchRunner
from idphoto_async._journal import JOURNAL_NAME, Journal, JournalWriteError, load_journal
from idphoto_async._journal_sqlite import RESERVE_BYTES
from idphoto_async._polling import PollSchedule
from idphoto_async.testing import LocalServer

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
FS_BYTES = RESERVE_BYTES + (8 << 20)


def _mount(target: Path, *options: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(target)],
                   check=True, capture_output=True)  # fmt: skip


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of ``FS_BYTES`` (unmounted after the test)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    try:
        _mount(mount, f"size={FS_BYTES}")
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


def fill(fs: Path) -> Path:
    """Write a file until the filesystem has not a byte left."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for chunk in (1 << 20, 1 << 12, 1):
            while True:
                try:
                    os.write(fd, b"\0" * chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


@pytest.mark.anyio
async def test_disk_full_keeps_the_paid_task_id(small_fs: Path) -> None:
    path = small_fs / "out" / JOURNAL_NAME
    async with Journal(path) as journal:
        await journal.created("k0", "a.jpg", "T0", NOW)
        filler = fill(small_fs)
        with pytest.raises(JournalWriteError) as caught:
            await journal.created("k1", "b.jpg", "T1", NOW)  # committed from the reserve
        assert caught.value.kept and caught.value.task_id == "T1"
        assert str(caught.value) == (
            f"disk full at {path}: free space and run the same command again (task T1 is kept)"
        )
        with pytest.raises(JournalWriteError, match="T2 is kept"):  # the run is stopping:
            await journal.created("k2", "c.jpg", "T2", NOW)  # in-flight answers still land
        with pytest.raises(JournalWriteError, match=r"^disk full at") as stopped:
            await journal.creating("k3", "d.jpg")  # and no new create may start
        assert stopped.value.task_id is None
    filler.unlink()
    async with Journal(path) as journal:  # space freed: the re-run finds every paid id
        for key, task in (("k0", "T0"), ("k1", "T1"), ("k2", "T2")):
            entry = await journal.lookup(key)
            assert entry is not None and entry.task_id == task
        await journal.downloaded("k1", "b.jpg", "T1", "b.png")  # and writes again


@pytest.mark.anyio
async def test_disk_full_twice_names_the_task_it_could_not_save(small_fs: Path) -> None:
    path = small_fs / JOURNAL_NAME
    async with Journal(path) as journal:
        fill(small_fs)
        with pytest.raises(JournalWriteError, match="T1 is kept"):
            await journal.created("k1", "a.jpg", "T1", NOW)
        fill(small_fs)  # the reserve is spent too
        with pytest.raises(JournalWriteError) as caught:
            await journal.created("k2", "b.jpg", "T2", NOW)
    assert not caught.value.kept
    assert "task T2 could not be saved: fetch it with `idphoto wait T2`" in str(caught.value)


@pytest.mark.anyio
async def test_read_only_filesystem_is_one_clear_error(small_fs: Path) -> None:
    (small_fs / "out").mkdir()
    await anyio.run_process(["mount", "-o", "remount,ro", str(small_fs)])
    for path in (small_fs / "out" / JOURNAL_NAME, small_fs / "new" / JOURNAL_NAME):
        with pytest.raises(JournalWriteError, match="cannot use the journal") as caught:
            async with Journal(path):
                pass  # pragma: no cover
        assert "Read-only file system" in str(caught.value)
        assert "--journal" in str(caught.value)


class FillingClient(AsyncIDPhotoClient):
    """Fills the disk once the second create has answered (before it is journaled)."""

    def __init__(self, *args: Any, fs: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fs = fs
        self.answered = 0

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        created = await super().create(*args, **kwargs)
        self.answered += 1
        if self.answered == 2:
            fill(self.fs)
        return created


async def drain(runner: BatchRunner, inputs: list[Path]) -> None:
    with anyio.fail_after(30):
        async with runner.outcomes(inputs) as stream:
            async for _ in stream:
                pass


@pytest.mark.anyio
async def test_batch_on_a_full_disk_stops_and_the_rerun_pays_nothing_twice(
    tmp_path: Path, small_fs: Path
) -> None:
    inputs = make_images(tmp_path / "in", 6)
    out = small_fs / "out"
    schedule = PollSchedule(initial_guess=0.05, min_delay=0.05, max_delay=0.3)
    options: dict[str, Any] = {"api_key": "k", "qps": 500, "poll_schedule": schedule}
    with LocalServer(qps=None, processing_time="fixed:0.3") as server:
        options["base_url"] = server.base_url
        async with FillingClient(fs=small_fs, **options) as filling:
            runner = BatchRunner(filling, out_dir=out, max_in_flight=1)
            with pytest.raises(JournalWriteError) as caught:  # as itself, not in a group
                await drain(runner, inputs)
        assert caught.value.kept
        assert server.stats()["creates"] == 2  # the run stopped at the full disk
        entries = load_journal(out / JOURNAL_NAME).entries.values()
        kept = {e.task_id for e in entries if e.task_id and not e.output}
        assert len(kept) == 1  # the task created as the disk filled up: saved
        (small_fs / "filler").unlink()
        async with AsyncIDPhotoClient(**options) as client:
            runner = BatchRunner(client, out_dir=out, max_in_flight=6)
            with anyio.fail_after(30):
                async with runner.outcomes(inputs) as stream:
                    outcomes = [o async for o in stream]
        assert sorted(o.status for o in outcomes) == ["skipped"] + ["succeeded"] * 5
        assert kept <= {o.task_id for o in outcomes}  # polled, not created again
        assert server.stats()["creates"] == len(inputs)  # nothing paid twice
    assert len(load_journal(out / JOURNAL_NAME).entries) == len(inputs)
