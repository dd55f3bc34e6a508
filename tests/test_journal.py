"""The resume journal: records, folding, torn lines, locking."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from idphoto_async._errors import BadRequestError, TaskFailedError, ValidationError
from idphoto_async._journal import (
    BatchStore,
    ErrorInfo,
    Journal,
    JournalLockedError,
    NullJournal,
    error_info,
    input_key,
    load_journal,
)
from idphoto_async._models import TaskState

pytestmark = pytest.mark.anyio

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


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


async def test_records_fold_into_entries(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    async with Journal(path) as journal:
        await journal.creating("k1", "a.jpg")
        await journal.created("k1", "a.jpg", "T1", NOW)
        await journal.done("k1", "a.jpg", "T1")
        await journal.downloaded("k1", "a.jpg", "T1", "a.png")
        await journal.creating("k2", "b.jpg")
        await journal.failed("k2", "b.jpg", None, ErrorInfo("ValidationError", "bad"))
    state = load_journal(path)
    e1 = state.entries["k1"]
    assert (e1.task_id, e1.created_at, e1.done, e1.output) == ("T1", NOW, True, "a.png")
    e2 = state.entries["k2"]
    assert e2.failure is not None
    assert e2.failure.type == "ValidationError"
    assert e2.failure.permanent
    assert state.in_doubt == 0
    lines = path.read_text().splitlines()
    assert len(lines) == 6
    first = json.loads(lines[0])
    assert first["event"] == "creating"
    assert first["v"] == 1
    assert {"key", "input", "ts"} <= first.keys()


async def test_torn_last_line_is_ignored_and_cut(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    async with Journal(path) as journal:
        await journal.created("k1", "a.jpg", "T1", NOW)
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"v":1,"event":"downloaded","key":"k1","out')
    state = load_journal(path)
    assert state.torn_lines == 1
    assert state.entries["k1"].output is None
    async with Journal(path) as journal:  # the torn tail is cut before appending
        assert journal.state.entries["k1"].task_id == "T1"
        await journal.downloaded("k1", "a.jpg", "T1", "a.png")
    assert path.read_bytes().startswith(whole)
    assert load_journal(path).entries["k1"].output == "a.png"
    assert load_journal(path).torn_lines == 0


async def test_whole_last_record_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    record = {"v": 1, "event": "created", "key": "k", "input": "x", "task_id": "T"}
    path.write_text(json.dumps(record))
    async with Journal(path) as journal:
        assert journal.state.entries["k"].task_id == "T"
        await journal.done("k", "x", "T")
    state = load_journal(path)
    assert state.entries["k"].done
    assert state.torn_lines == 0


def test_garbage_and_unknown_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    good = json.dumps({"v": 1, "event": "created", "key": "k", "input": "x", "task_id": "T"})
    path.write_text(f"not json\n[1,2]\n{{}}\n{good}\n\n")
    state = load_journal(path)
    assert state.entries["k"].task_id == "T"
    assert state.torn_lines == 1


def test_missing_journal_is_empty(tmp_path: Path) -> None:
    assert load_journal(tmp_path / "none.jsonl").entries == {}


async def test_creating_without_answer_is_in_doubt(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    async with Journal(path) as journal:
        await journal.creating("k1", "a.jpg")  # killed on the wire
        await journal.creating("k2", "b.jpg")
        await journal.created("k2", "b.jpg", "T2", NOW)
    assert load_journal(path).in_doubt == 1
    async with Journal(path) as journal:  # a re-run creates k1 again
        await journal.creating("k1", "a.jpg")
        await journal.created("k1", "a.jpg", "T1", NOW)
    assert load_journal(path).in_doubt == 1  # still counted: it may have made a task


async def test_new_task_clears_an_old_failure(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    async with Journal(path) as journal:
        await journal.created("k", "a", "T1", NOW)
        await journal.failed("k", "a", "T1", ErrorInfo("TaskFailedError", "x", state=-1))
        assert journal.state.entries["k"].failure is not None
        await journal.created("k", "a", "T2", NOW)
        entry = journal.state.entries["k"]
        assert entry.failure is None
        assert entry.task_id == "T2"


async def test_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    async with Journal(path):
        with pytest.raises(JournalLockedError, match="in use"):
            async with Journal(path):
                pass
    async with Journal(path):  # released on close
        pass


async def test_lookup_and_in_doubt_at_open(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    async with Journal(path) as journal:
        assert await journal.lookup("k1") is None
        await journal.creating("k1", "a.jpg")  # killed on the wire
        await journal.created("k2", "b.jpg", "T2", NOW)
        assert journal.in_doubt == 0
    async with Journal(path) as journal:
        assert journal.in_doubt == 1
        entry = await journal.lookup("k2")
        assert entry is not None and entry.task_id == "T2"
        await journal.creating("k1", "a.jpg")
        await journal.created("k1", "a.jpg", "T1", NOW)
        assert journal.in_doubt == 1  # counted at open


async def test_null_journal_keeps_nothing() -> None:
    async with NullJournal() as null:
        store: BatchStore = null
        await store.creating("k", "a")
        await store.created("k", "a", "T", NOW)
        await store.done("k", "a", "T")
        await store.downloaded("k", "a", "T", "a.png")
        await store.failed("k", "a", "T", ErrorInfo("X", "y"))
        assert await store.lookup("k") is None
        assert store.in_doubt == 0
