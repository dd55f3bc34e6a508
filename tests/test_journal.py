"""The resume journal (SQLite): steps, lookups, in-doubt creates, locking, bad paths."""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest

from idphoto_async._errors import BadRequestError, TaskFailedError, ValidationError
from idphoto_async._journal import (
    JOURNAL_NAME,
    BatchStore,
    ErrorInfo,
    Journal,
    JournalLockedError,
    JournalWriteError,
    NullJournal,
    error_info,
    input_key,
    journal_events,
    load_journal,
)
from idphoto_async._journal_sqlite import SYNC_GAP
from idphoto_async._models import TaskState

pytestmark = pytest.mark.anyio

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def rows(
    path: Path, sql: str = "SELECT input, status, task_id FROM inputs ORDER BY key"
) -> list[tuple[object, ...]]:
    """What a user sees with ``sqlite3 PATH "select ..."``."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


def test_input_key_depends_on_identity_and_options() -> None:
    a = input_key("/p/a.jpg|10|1", {"size": "300x400"})
    assert a == input_key("/p/a.jpg|10|1", {"size": "300x400"})
    assert a != input_key("/p/a.jpg|10|2", {"size": "300x400"})
    assert a != input_key("/p/a.jpg|10|1", {"size": "300x401"})
    assert input_key("u", {"a": "1", "b": "2"}) == input_key("u", {"b": "2", "a": "1"})


def test_error_info_for_each_kind() -> None:
    failed = error_info(TaskFailedError("t1", TaskState.INVALID_IMAGE))
    assert failed.type == "TaskFailedError"
    assert failed.state == -7
    assert failed.permanent
    assert failed.to_json().keys() == {"type", "state", "message"}
    status = error_info(BadRequestError("bad", status_code=400))
    assert status.to_json()["http_status"] == 400
    assert "state" not in status.to_json()
    plain = error_info(ValidationError("nope"))
    assert plain.to_json() == {"type": "ValidationError", "message": "nope"}
    assert not error_info(TaskFailedError("t", TaskState.TIMED_OUT)).permanent


async def test_steps_update_one_row_per_key(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_NAME
    async with Journal(path) as journal:
        assert await journal.lookup("k1") is None
        await journal.creating("k1", "a.jpg")
        entry = await journal.lookup("k1")
        assert entry is not None and entry.pending_create and entry.task_id is None
        await journal.created("k1", "a.jpg", "T1", NOW)
        entry = await journal.lookup("k1")
        assert entry is not None and not entry.done
        await journal.downloaded("k1", "a.jpg", "T1", "a.png")
        await journal.creating("k2", "b.jpg")
        info = ErrorInfo("BadRequestError", "bad", http_status=400, task_may_exist=True)
        await journal.failed("k2", "b.jpg", None, info)
        e1 = await journal.lookup("k1")
        e2 = await journal.lookup("k2")
    assert e1 is not None and e2 is not None
    assert (e1.task_id, e1.created_at, e1.done, e1.output) == ("T1", NOW, True, "a.png")
    assert not e1.pending_create and e1.failure is None
    assert e2.failure == info and not e2.pending_create
    assert rows(path) == [("a.jpg", "downloaded", "T1"), ("b.jpg", "failed", None)]
    assert journal_events(path) == 5
    state = load_journal(path)
    assert state.entries["k1"] == e1 and state.in_doubt == 0


async def test_failed_keeps_the_task_id(tmp_path: Path) -> None:
    """A failure after the task was made names it (the report's task_id is not null)."""
    async with Journal(tmp_path / "j.sqlite3") as journal:
        await journal.created("k", "a", "T1", NOW)
        await journal.failed("k", "a", "T1", ErrorInfo("TaskFailedError", "x", state=-7))
        entry = await journal.lookup("k")
        assert entry is not None and entry.task_id == "T1" and entry.failure is not None
        await journal.failed("k", "a", None, ErrorInfo("DownloadError", "disk"))
        entry = await journal.lookup("k")
        assert entry is not None and entry.task_id == "T1"  # not erased by a later failure
        assert entry.failure is not None and entry.failure.type == "DownloadError"


async def test_new_task_clears_an_old_failure_and_output(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.sqlite3") as journal:
        await journal.created("k", "a", "T1", NOW)
        await journal.downloaded("k", "a", "T1", "a.png")
        await journal.failed("k", "a", "T1", ErrorInfo("TaskFailedError", "x", state=-1))
        await journal.created("k", "a", "T2", NOW)
        entry = await journal.lookup("k")
    assert entry is not None
    assert (entry.task_id, entry.failure, entry.output, entry.done) == ("T2", None, None, False)


async def test_creating_without_answer_is_in_doubt(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    async with Journal(path) as journal:
        assert journal.in_doubt == 0
        await journal.creating("k1", "a.jpg")  # killed on the wire
        await journal.creating("k2", "b.jpg")
        await journal.created("k2", "b.jpg", "T2", NOW)
        assert journal.in_doubt == 0  # counted at open
    async with Journal(path) as journal:  # a re-run creates k1 again
        assert journal.in_doubt == 1
        await journal.creating("k1", "a.jpg")
        await journal.created("k1", "a.jpg", "T1", NOW)
    async with Journal(path) as journal:
        assert journal.in_doubt == 1  # still counted: it may have made a task
        await journal.creating("k1", "a.jpg")  # sent again, and killed again
    async with Journal(path) as journal:
        assert journal.in_doubt == 2
    assert load_journal(path).in_doubt == 2


async def test_concurrent_writes_all_commit(tmp_path: Path) -> None:
    """Writes queued while another commits share its successor's transaction; none is lost."""
    path = tmp_path / "j.sqlite3"
    async with Journal(path) as journal, anyio.create_task_group() as tg:
        for i in range(300):
            tg.start_soon(journal.created, f"k{i}", f"{i}.jpg", f"T{i}", NOW)
            tg.start_soon(journal.creating, f"n{i}", f"n{i}.jpg")
    assert journal_events(path) == 600
    assert len(rows(path)) == 600
    assert load_journal(path).in_doubt == 300


async def test_a_write_is_made_even_while_cancelled(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    async with Journal(path) as journal:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await journal.created("k", "a.jpg", "T1", NOW)  # shielded: it is written
            await anyio.lowlevel.checkpoint()
            pytest.fail("not cancelled")  # pragma: no cover
        entry = await journal.lookup("k")
    assert entry is not None and entry.task_id == "T1"


async def test_second_writer_is_refused_plainly(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_NAME
    async with Journal(path):
        with pytest.raises(JournalLockedError, match="in use by another idphoto batch"):
            async with Journal(path):
                pass  # pragma: no cover
        assert (tmp_path / f"{JOURNAL_NAME}-lock").exists()
    assert not (tmp_path / f"{JOURNAL_NAME}-lock").exists()  # removed with the lock
    async with Journal(path):  # released on close
        pass


async def test_open_makes_the_directory_and_leaves_one_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / JOURNAL_NAME
    async with Journal(path) as journal:
        await journal.created("k", "a", "T", NOW)
    assert [p.name for p in path.parent.iterdir()] == [JOURNAL_NAME]


async def test_in_doubt_count_at_open_uses_its_index(tmp_path: Path) -> None:
    """Opening never scans every row: the in-doubt count reads a partial index."""
    path = tmp_path / "j.sqlite3"
    async with Journal(path):
        pass
    plan = rows(
        path,
        "EXPLAIN QUERY PLAN SELECT coalesce(sum(pending_create + in_doubt), 0) FROM inputs "
        "WHERE pending_create + in_doubt > 0",
    )
    assert "USING INDEX inputs_in_doubt" in str(plan[0][-1])
    lookup = rows(path, "EXPLAIN QUERY PLAN SELECT task_id FROM inputs WHERE key = 'k'")
    assert "USING PRIMARY KEY (key=?)" in str(lookup[0][-1])


@pytest.mark.parametrize("kind", ["directory", "file parent", "not a journal"])
async def test_unusable_path_is_one_clear_error(tmp_path: Path, kind: str) -> None:
    if kind == "directory":
        path = tmp_path / "adir"
        path.mkdir()
        why = "it is a directory"
    elif kind == "file parent":
        (tmp_path / "afile").write_text("x")
        path = tmp_path / "afile" / "sub" / JOURNAL_NAME
        why = "Not a directory"
    else:
        path = tmp_path / "photo.jpg"
        path.write_bytes(b"\xff\xd8\xff\xe0 not a database")
        why = "not an idphoto journal"
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(JournalWriteError, match=why) as caught:
        async with Journal(path):
            pass  # pragma: no cover
    assert "\n" not in str(caught.value)
    assert "--journal" in str(caught.value)
    assert caught.value.path == path
    assert sorted(tmp_path.rglob("*")) == before  # nothing made, nothing touched
    if kind == "not a journal":
        assert path.read_bytes() == b"\xff\xd8\xff\xe0 not a database"


async def test_null_journal_keeps_nothing() -> None:
    async with NullJournal() as null:
        store: BatchStore = null
        await store.creating("k", "a")
        await store.created("k", "a", "T", NOW)
        await store.downloaded("k", "a", "T", "a.png")
        await store.failed("k", "a", "T", ErrorInfo("X", "y"))
        assert await store.lookup("k") is None
        assert store.in_doubt == 0


async def test_journal_is_a_batch_store(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.sqlite3") as journal:
        store: BatchStore = journal
        assert await store.lookup("k") is None


async def test_journal_of_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_NAME
    async with Journal(path) as journal:
        await journal.created("k", "a.jpg", "T", NOW)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE meta SET value = 99 WHERE name = 'schema'")
    with pytest.raises(JournalWriteError, match="written by a newer version"):
        async with Journal(path):
            pass  # pragma: no cover
    assert rows(path) == [("a.jpg", "created", "T")]


async def test_downloaded_joins_the_next_transaction(tmp_path: Path) -> None:
    """It costs a poll and a download if lost, never a charge: no commit of its own."""
    path = tmp_path / "j.sqlite3"
    async with Journal(path) as journal:
        await journal.created("k1", "a.jpg", "T1", NOW)
        await journal.downloaded("k1", "a.jpg", "T1", "a.png")
        assert journal_events(path) == 1  # not committed yet
        await journal.creating("k2", "b.jpg")  # the next record commits it with it
        assert rows(path) == [("a.jpg", "downloaded", "T1"), ("b.jpg", "creating", None)]
        assert journal_events(path) == 3
        await journal.downloaded("k3", "c.jpg", "T3", "c.png")
        entry = await journal.lookup("k3")  # a lookup of a waiting key commits it first
        assert entry is not None and entry.done and entry.output == "c.png"
        assert journal_events(path) == 4
        await journal.downloaded("k4", "d.jpg", "T4", "d.png")
    assert rows(path)[-1] == ("d.jpg", "downloaded", "T4")  # and the close


async def test_many_deferred_records_are_committed_anyway(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    async with Journal(path) as journal:
        for i in range(200):
            await journal.downloaded(f"k{i}", f"{i}.jpg", f"T{i}", f"{i}.png")
        assert 200 - 64 < journal_events(path) < 200


async def test_created_waits_for_its_own_sync_and_syncs_are_grouped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ``created`` returns after an fdatasync that covers it; syncs are at least
    `SYNC_GAP` apart, and concurrent ones share one."""
    syncs: list[float] = []
    real_sync = os.fdatasync

    def counted(fd: int) -> None:
        syncs.append(time.monotonic())
        real_sync(fd)

    monkeypatch.setattr(os, "fdatasync", counted)
    async with Journal(tmp_path / "j.sqlite3") as journal:
        for i in range(4):
            await journal.created(f"k{i}", "a.jpg", f"T{i}", NOW)
            assert len(syncs) == i + 1
        gaps = [b - a for a, b in itertools.pairwise(syncs)]
        assert min(gaps) >= SYNC_GAP * 0.9
        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(journal.created, f"c{i}", "a.jpg", f"C{i}", NOW)
        assert len(syncs) <= 4 + 2


async def test_the_wal_restarts_while_records_keep_coming(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commits wait for the checkpoint, so it copies every frame and the WAL starts over.

    A checkpoint racing the commits never caught up: the WAL grew with every record.
    """
    monkeypatch.setattr("idphoto_async._journal_sqlite._CHECKPOINT_EVERY", 20)
    checkpoint = Journal._checkpoint
    commits_during: list[int] = []

    def slow_checkpoint(journal: Journal) -> None:  # the loop may run on while it copies
        before = journal._committed
        for _ in range(20):
            anyio.from_thread.run(anyio.lowlevel.checkpoint)
        checkpoint(journal)
        commits_during.append(journal._committed - before)

    monkeypatch.setattr(Journal, "_checkpoint", slow_checkpoint)
    path = tmp_path / JOURNAL_NAME

    async def creates(journal: Journal, first: int) -> None:
        for i in range(first, first + 100):
            await journal.creating(f"{i:032x}", f"p{i:05d}.jpg")
            await anyio.lowlevel.checkpoint()

    async with Journal(path) as journal:
        async with anyio.create_task_group() as tg:
            for worker in range(16):
                tg.start_soon(creates, journal, worker * 100)
        wal = path.with_name(path.name + "-wal").stat().st_size
    assert len(rows(path)) == 1600
    assert len(commits_during) >= 50 and set(commits_during) == {0}, commits_during
    assert wal < 1_000_000, wal  # a few checkpoints' worth of frames, not 1 600 commits'
