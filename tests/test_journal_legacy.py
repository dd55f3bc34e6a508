"""The JSON-lines journal of earlier versions: read (torn lines too), imported once, kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from _batch_helpers import make_images

from idphoto_async import AsyncIDPhotoClient
from idphoto_async._batch import BatchRunner
from idphoto_async._journal import (
    JOURNAL_NAME,
    LEGACY_JOURNAL_NAME,
    Journal,
    load_journal,
)
from idphoto_async._polling import PollSchedule
from idphoto_async.testing import LocalServer

pytestmark = pytest.mark.anyio

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def record(event: str, key: str, input: str = "x.jpg", **fields: Any) -> str:
    body = {"v": 1, "event": event, "key": key, "input": input, **fields, "ts": NOW.isoformat()}
    return json.dumps(body, separators=(",", ":"))


def legacy_lines() -> list[str]:
    """An old journal: one photo done, one in doubt twice, one failed after its task."""
    error = {"type": "TaskFailedError", "state": -7, "message": "invalid image"}
    return [
        record("creating", "k1", "a.jpg"),
        record("created", "k1", "a.jpg", task_id="T1", created_at=NOW.isoformat()),
        record("done", "k1", "a.jpg", task_id="T1"),
        record("downloaded", "k1", "a.jpg", task_id="T1", output="a.png"),
        record("creating", "k2", "b.jpg"),
        record("creating", "k2", "b.jpg"),  # killed on the wire, twice
        record("creating", "k3", "c.jpg"),
        record("created", "k3", "c.jpg", task_id="T3", created_at=NOW.isoformat()),
        record("failed", "k3", "c.jpg", task_id="T3", error=error, permanent=True),
    ]


def test_fold_skips_torn_and_garbage_lines(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    good = record("created", "k", task_id="T", created_at=NOW.isoformat())
    path.write_text(f'not json\n[1,2]\n{{}}\n{good}\n\n{{"v":1,"event":"down')
    state = load_journal(path)
    assert state.entries["k"].task_id == "T"
    assert state.torn_lines == 2
    assert load_journal(tmp_path / "none.jsonl").entries == {}


async def test_old_journal_beside_the_default_is_imported_once(tmp_path: Path) -> None:
    legacy = tmp_path / LEGACY_JOURNAL_NAME
    legacy.write_text("\n".join(legacy_lines()) + "\n")
    before = legacy.read_bytes()
    async with Journal(tmp_path / JOURNAL_NAME) as journal:
        assert journal.imported == 3
        assert journal.in_doubt == 2  # both creates of k2
        e1, e2, e3 = [await journal.lookup(k) for k in ("k1", "k2", "k3")]
    assert e1 is not None
    assert (e1.task_id, e1.created_at, e1.done, e1.output) == ("T1", NOW, True, "a.png")
    assert e2 is not None and e2.pending_create and e2.task_id is None
    assert e3 is not None and e3.task_id == "T3"
    assert e3.failure is not None and (e3.failure.type, e3.failure.state) == ("TaskFailedError", -7)
    assert legacy.read_bytes() == before  # left as it is
    with legacy.open("a") as f:  # an old version wrote more: not imported again
        f.write(record("created", "k9", task_id="T9", created_at=NOW.isoformat()) + "\n")
    async with Journal(tmp_path / JOURNAL_NAME) as journal:
        assert journal.imported == 0
        assert await journal.lookup("k9") is None
        assert journal.in_doubt == 2


async def test_journal_option_naming_a_jsonl_file_imports_it(tmp_path: Path) -> None:
    legacy = tmp_path / "old-run.jsonl"
    legacy.write_text("\n".join(legacy_lines()))  # no final newline: the last record counts
    journal = Journal(legacy)
    assert journal.path == tmp_path / "old-run.sqlite3"
    async with journal:
        assert journal.imported == 3
        entry = await journal.lookup("k3")
        assert entry is not None and entry.failure is not None


async def test_a_custom_journal_name_imports_nothing_beside_it(tmp_path: Path) -> None:
    (tmp_path / LEGACY_JOURNAL_NAME).write_text("\n".join(legacy_lines()))
    async with Journal(tmp_path / "mine.sqlite3") as journal:
        assert journal.imported == 0
        assert await journal.lookup("k1") is None


async def test_batch_resumes_from_an_old_journal_without_paying(tmp_path: Path) -> None:
    """An earlier version's finished run, re-run with this one: all skipped, nothing created."""
    inputs = make_images(tmp_path / "in", 5)
    out = tmp_path / "out"
    schedule = PollSchedule(initial_guess=0.05, min_delay=0.05, max_delay=0.3)
    with LocalServer(qps=None) as server:
        async with AsyncIDPhotoClient(
            api_key="k", base_url=server.base_url, qps=500, poll_schedule=schedule
        ) as client:

            async def run() -> set[str]:
                runner = BatchRunner(client, out_dir=out, max_in_flight=5)
                with anyio.fail_after(30):
                    async with runner.outcomes(inputs) as stream:
                        return {o.status async for o in stream}

            assert await run() == {"succeeded"}
            state = load_journal(out / JOURNAL_NAME)
            lines = []  # the same run as the old version journaled it
            for key, entry in state.entries.items():
                name = state.inputs[key]
                assert entry.created_at is not None and entry.output is not None
                lines += [
                    record("creating", key, name),
                    record(
                        "created",
                        key,
                        name,
                        task_id=entry.task_id,
                        created_at=entry.created_at.isoformat(),
                    ),
                    record("done", key, name, task_id=entry.task_id),
                    record("downloaded", key, name, task_id=entry.task_id, output=entry.output),
                ]
            (out / JOURNAL_NAME).unlink()
            (out / LEGACY_JOURNAL_NAME).write_text("\n".join(lines) + "\n")
            assert await run() == {"skipped"}
        assert server.stats()["creates"] == 5
    assert load_journal(out / JOURNAL_NAME).entries == state.entries
