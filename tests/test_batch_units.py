"""The batch's small pieces on their own: restored errors, the re-create policy, the
seen set, URL identity and the side-file checks."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from idphoto_async import (
    APIStatusError,
    AuthenticationError,
    BatchConfigError,
    DownloadError,
    RecreatePolicy,
    ResultExpiredError,
    ServerError,
    TaskFailedError,
    ValidationError,
)
from idphoto_async._batch import check_side_files, restore_error
from idphoto_async._batch._inputs import InputPlanner, normalise_url
from idphoto_async._batch._layout import real
from idphoto_async._batch._outcome import BatchStats
from idphoto_async._batch._plans import PLAN_BATCH, plans
from idphoto_async._batch._policy import Attempts, Reason
from idphoto_async._batch._seen import SeenSet, fingerprint
from idphoto_async._journal import error_info
from idphoto_async._models import TaskState


@pytest.mark.parametrize(
    "error",
    [
        TaskFailedError("T1", TaskState(-7), "bad image"),
        AuthenticationError("no", status_code=401),
        ServerError("down", status_code=503),
        ResultExpiredError("T2"),
        DownloadError("Cannot write x.png.", task_id="T3", retryable=False),
        ValidationError("not an image"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_restored_errors_keep_class_fields_and_words(error: Exception) -> None:
    task_id = getattr(error, "task_id", None)
    restored = restore_error(error_info(error), task_id)
    assert type(restored) is type(error)
    assert str(restored) == str(error)
    for field in ("task_id", "state", "status_code", "retryable"):
        assert getattr(restored, field, None) == getattr(error, field, None), field


def test_the_policy_creates_again_only_where_asked() -> None:
    default = RecreatePolicy()
    in_doubt = ServerError("down", status_code=500, task_may_exist=True)
    retryable = TaskFailedError("T", TaskState(-1))
    attempts = Attempts()
    assert default.reason(in_doubt, attempts) is None  # a possible second charge: not by default
    assert default.reason(ResultExpiredError("T"), attempts) is None
    assert default.reason(retryable, attempts) is Reason.TASK_FAILED
    assert default.reason(TaskFailedError("T", TaskState(-7)), attempts) is None
    asked = RecreatePolicy(task_retries=0, create_retries=1, recreate_expired=True)
    assert asked.reason(in_doubt, attempts) is Reason.CREATE_IN_DOUBT
    attempts.note(Reason.CREATE_IN_DOUBT)
    assert asked.reason(in_doubt, attempts) is None  # its budget is spent
    assert attempts.possible_extra_charges == 1
    assert asked.reason(ServerError("x", status_code=500), attempts) is None  # made nothing
    assert asked.budget == 2
    with pytest.raises(ValidationError, match="task_retries"):
        RecreatePolicy(task_retries=-1)


def test_seen_set_remembers_every_text_exactly() -> None:
    texts = [f"/p/{n}" for n in range(10_000)] + ["", "\udcff", "/P/1", "/p/1 "]
    with SeenSet() as seen:
        assert all(seen.add(t) for t in texts)
        assert not any(seen.add(t) for t in texts)
        assert len(seen) == len(texts)
        assert "/p/9999" in seen and "/p/10000" not in seen
    assert fingerprint("x") == fingerprint("x") != fingerprint("y")


def test_seen_set_memory_is_flat() -> None:
    """200 000 names cost no more memory than the page cache (a set would take ~20 MB)."""
    tracemalloc.start()
    try:
        with SeenSet() as seen:
            for n in range(200_000):
                seen.add(f"/photos/batch/{n // 1000:04d}/p{n:07d}.jpg")
            assert len(seen) == 200_000
            python_bytes = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert python_bytes < 200_000  # SQLite's own cache is bounded by CACHE_KIB


def test_urls_are_one_identity_however_written() -> None:
    same = ["https://Example.COM/a.jpg", "https://example.com:443/a.jpg#top"]
    assert {normalise_url(u) for u in same} == {"https://example.com/a.jpg"}
    assert normalise_url("http://h/a.jpg?x=1") != normalise_url("http://h/a.jpg?x=2")


def test_a_report_on_the_journal_it_imports_is_refused(tmp_path: Path) -> None:
    out = Path(real(tmp_path / "out"))
    with pytest.raises(BatchConfigError, match="journal"):  # x.jsonl means x.sqlite3
        check_side_files(out, [], journal=tmp_path / "j.jsonl", report=tmp_path / "j.sqlite3")
    with pytest.raises(BatchConfigError, match="journal"):
        check_side_files(out, [], journal=tmp_path / "j.jsonl", report=tmp_path / "j.jsonl")
    with pytest.raises(BatchConfigError, match="journal"):
        check_side_files(
            out, [], journal=out / ".idphoto-journal.sqlite3", report=out / ".idphoto-journal.jsonl"
        )
    check_side_files(out, [], journal=out / "j.sqlite3", report=tmp_path / "report.jsonl")
    assert issubclass(BatchConfigError, ValidationError) and not issubclass(
        BatchConfigError, APIStatusError
    )


@pytest.mark.anyio
async def test_plans_are_taken_in_groups_and_an_error_comes_after_the_plans_before_it(
    tmp_path: Path,
) -> None:
    """Inputs are planned up to PLAN_BATCH ahead, one worker-thread hop per group; an input
    source that breaks mid-group still delivers the plans before it, then its error."""
    photos = []
    for i in range(40):
        photo = tmp_path / "in" / f"p{i:02}.jpg"
        photo.parent.mkdir(exist_ok=True)
        photo.write_bytes(b"\xff\xd8 not decoded here")
        photos.append(photo)
    delivered = 0
    ahead: list[int] = []

    def source() -> Iterator[Path]:
        for pulled, photo in enumerate(photos):
            ahead.append(pulled - delivered)
            yield photo
        raise RuntimeError("the input source broke")

    async def take_all() -> None:
        nonlocal delivered
        with InputPlanner(tmp_path / "out", {}) as planner:
            async for _plan in plans(planner, source(), BatchStats()):
                delivered += 1

    with pytest.raises(RuntimeError, match="source broke"):
        await take_all()
    assert delivered == 40
    assert max(ahead) >= PLAN_BATCH // 2  # planned in groups, not one hop per input
    assert max(ahead) <= PLAN_BATCH  # and never more than a group ahead
