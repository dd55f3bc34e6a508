"""Crash safety: a batch killed at random points (SIGKILL, a torn journal tail) loses nothing.

After the re-run: every output is complete (decodes at the requested size), no temp file is
left, and no task was created twice except creates that were on the wire at a kill (their id
never came back; the journal counts them as in doubt).

The journal is SQLite in WAL mode: a process killed mid-transaction loses only that
transaction, and a WAL torn inside its last frame (power loss) loses only the last one.

The seeded campaign runs ``IDPHOTO_CRASH_RUNS`` seeds (default 3) and is marked slow; the
torn-journal tests run in the default suite.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from _batch_helpers import make_images
from PIL import Image

from idphoto_async import AsyncIDPhotoClient
from idphoto_async._batch import BatchRunner
from idphoto_async._journal import JOURNAL_NAME, JournalWatch, journal_events, load_journal
from idphoto_async._polling import PollSchedule
from idphoto_async.testing import LocalServer

KEY = "crash-key"
SIZE = "150x200"
CRASH_RUNS = int(os.environ.get("IDPHOTO_CRASH_RUNS", "3"))
C = TypeVar("C", bound=AsyncIDPhotoClient)
WAL_HEADER = 32
WAL_FRAME_HEADER = 24


def check_outputs(src: Path, out: Path) -> None:
    expected = sorted(p.relative_to(src).with_suffix(".png").as_posix() for p in src.rglob("*.jpg"))
    outputs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert outputs == expected
    assert list(out.rglob("*.part")) == []
    for rel in outputs:
        with Image.open(out / rel) as img:
            img.load()
            assert img.size == (150, 200)


def page_size(journal: Path) -> int:
    with contextlib.closing(sqlite3.connect(journal)) as db:
        return int(db.execute("PRAGMA page_size").fetchone()[0])


def tear_wal_tail(journal: Path, rng: random.Random, frame: int = 4096 + WAL_FRAME_HEADER) -> bool:
    """Cut the WAL inside its last frame, as a power loss mid-write would (False: no frame)."""
    wal = journal.with_name(journal.name + "-wal")
    size = wal.stat().st_size if wal.exists() else 0
    if size < WAL_HEADER + frame:
        return False
    with wal.open("r+b") as f:
        f.truncate(size - rng.randint(1, frame - 1))
    return True


def rows(journal: Path) -> dict[str, tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(journal)) as db:
        found = db.execute("SELECT key, status, task_id FROM inputs").fetchall()
    return {key: (status, task_id) for key, status, task_id in found}


# -- killed and torn writers (default suite) ------------------------------------------------


_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import UTC, datetime
    import anyio
    from idphoto_async._journal import Journal

    async def main(path, mode):
        async with Journal(path) as journal:
            for i in range(3):
                await journal.created(f"k{i}", f"{i}.jpg", f"T{i}", datetime.now(UTC))
            if mode == "mid-transaction":
                conn = journal._conn
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("UPDATE inputs SET task_id = 'LOST' WHERE key = 'k0'")
                conn.execute("DELETE FROM inputs WHERE key = 'k1'")
            os.kill(os.getpid(), signal.SIGKILL)

    anyio.run(main, sys.argv[1], sys.argv[2])
    """
)


@pytest.mark.parametrize("mode", ["mid-transaction", "torn WAL tail"])
def test_a_killed_writer_loses_only_its_last_transaction(tmp_path: Path, mode: str) -> None:
    journal = tmp_path / JOURNAL_NAME
    done = subprocess.run([sys.executable, "-c", _WRITER, str(journal), mode], timeout=60)
    assert done.returncode == -9
    if mode == "torn WAL tail":
        assert tear_wal_tail(journal, random.Random(1), page_size(journal) + WAL_FRAME_HEADER)
        expected = {"k0": ("created", "T0"), "k1": ("created", "T1")}  # k2's commit is torn
    else:
        expected = {f"k{i}": ("created", f"T{i}") for i in range(3)}  # the open one is gone
    assert rows(journal) == expected
    assert journal_events(journal) == len(expected)


FAST_POLLS = PollSchedule(initial_guess=0.05, min_delay=0.05, max_delay=0.3)


def fast_client(server: LocalServer, cls: type[C] = AsyncIDPhotoClient, **kwargs: Any) -> C:  # type: ignore[assignment]
    return cls(api_key=KEY, base_url=server.base_url, qps=500, poll_schedule=FAST_POLLS, **kwargs)


class StuckClient(AsyncIDPhotoClient):
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


async def batch(client: AsyncIDPhotoClient, inputs: list[Path], out: Path) -> list[Any]:
    runner = BatchRunner(client, out_dir=out, max_in_flight=len(inputs), size=SIZE)
    with anyio.fail_after(30):
        async with runner.outcomes(inputs) as stream:
            return [o async for o in stream]


@pytest.mark.anyio
async def test_lost_created_commit_is_counted_in_doubt(tmp_path: Path) -> None:
    """The last ``created`` commit lost (the disk lied about fsync): that input is created
    again, and counted."""
    inputs = make_images(tmp_path / "in", 4)
    out = tmp_path / "out"
    journal = out / JOURNAL_NAME
    with LocalServer(qps=None) as server:
        async with fast_client(server, StuckClient, stuck_after=4) as stuck:
            runner = BatchRunner(stuck, out_dir=out, max_in_flight=4, size=SIZE)
            with anyio.fail_after(30):
                async with runner.outcomes(inputs):
                    await stuck.all_waiting.wait()
        with contextlib.closing(sqlite3.connect(journal)) as db, db:  # undo one commit
            db.execute(
                "UPDATE inputs SET status = 'creating', task_id = NULL, created_at = NULL, "
                "pending_create = 1 WHERE key = (SELECT max(key) FROM inputs)"
            )
        assert load_journal(journal).in_doubt == 1
        async with fast_client(server) as client:
            outcomes = await batch(client, inputs, out)
        assert {o.status for o in outcomes} == {"succeeded"}
        assert server.stats()["creates"] == 5  # 4 + the one whose id was lost
        async with fast_client(server) as client:
            again = await batch(client, inputs, out)
        assert {o.status for o in again} == {"skipped"}
        assert server.stats()["creates"] == 5
    assert load_journal(journal).in_doubt == 1
    check_outputs(tmp_path / "in", out)


# -- the seeded SIGKILL campaign (slow) ---------------------------------------------------------


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDPHOTO_")}
    env["IDPHOTO_API_KEY"] = KEY
    return env


def _kill_at(proc: subprocess.Popen[bytes], journal: Path, events: int) -> bool:
    """SIGKILL ``proc`` once its journal has committed ``events`` records; False if it ended."""
    deadline = time.monotonic() + 120
    with JournalWatch(journal) as watch:
        while proc.poll() is None and time.monotonic() < deadline:
            if watch.events() >= events:
                proc.kill()
                proc.wait(timeout=60)
                return True
            time.sleep(0.002)  # watching a file written by another process
    proc.wait(timeout=60)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(CRASH_RUNS))
def test_seeded_sigkill_campaign(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    mode = "sync" if seed % 2 else "async"
    count, kills = 16, 4
    src = tmp_path / "in"
    make_images(src, count, subdirs=2)
    out = tmp_path / "out"
    journal = out / JOURNAL_NAME
    torn = killed = 0
    with LocalServer(qps=None, processing_time="uniform:0.02,0.2", seed=seed) as server:
        cmd = [sys.executable, "-m", "idphoto_async.cli", "batch", str(src), "-o", str(out),
               "--base-url", server.base_url, "--qps", "60", "--size", SIZE, "--mode", mode,
               "--max-in-flight", "6", "--no-progress"]  # fmt: skip
        per_input = 3 if mode == "sync" else 4
        for _ in range(kills):
            before = journal_events(journal)
            target = before + rng.randint(1, max(1, count * per_input // kills))
            proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)  # fmt: skip
            if _kill_at(proc, journal, target):
                killed += 1
                if rng.random() < 0.5 and tear_wal_tail(journal, rng):
                    torn += 1
        final = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
        assert final.returncode == 0, final.stderr
        stats = server.stats()
    check_outputs(src, out)
    state = load_journal(journal)
    # No input paid twice except creates whose id never reached the journal (on the wire at
    # a kill, or their `created` commit torn away): the journal counts those. A torn WAL tail
    # (power loss) loses the last transaction, which holds the writes made while the one
    # before it committed: at most one per photo in flight (6), `creating` records included.
    assert count <= stats["creates"] <= count + state.in_doubt + torn * 6
    assert state.in_doubt <= killed * 6 + torn * 6  # at most max-in-flight creates per kill
    print(f"seed {seed} ({mode}): {killed} kills, {torn} torn, creates {stats['creates']} "
          f"for {count} inputs, in doubt {state.in_doubt}")  # fmt: skip
