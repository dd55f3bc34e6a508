"""The journal at scale: open time at 1 M rows, peak RSS per 1 000 inputs, CPU per photo.

``python -m benchmarks.journal_scale [--rows N] [--photos N] [--warmup N] [--cpu-photos N]``
prints a markdown table (each figure measured in a process of its own):

- **open**: a journal of ``--rows`` rows made directly in the store (1 % of them in doubt)
  is opened (``async with Journal(...)``, which counts the creates in doubt) and one key is
  looked up, in a fresh process;
- **RSS** (peak, ``VmHWM``): a real batch of ``--photos`` inputs against the local server
  (in a process of its own, zero processing time, no rate limit) in a process of its own,
  run once (first run) and again (resume: every input skipped after its journal lookup). The
  peak is read every ``--photos`` / 20 outcomes; the growth per 1 000 inputs is the slope
  of a least-squares line through the readings past ``--warmup`` inputs, and the warm-up
  (the peak at ``--warmup`` minus the one at the first reading) is shown beside it, with
  the same slope of the current RSS (``VmRSS``: live memory, without transient peaks).
  The warm-up holds the one-off steps of a young process: the page caches filling to their
  caps (256 KiB per `SeenSet`, 1 MiB for the journal), code and data pages of the libraries
  touched for the first time, the allocator's arenas reaching their working size (the batch
  parses no per-input path with pathlib, which would intern every part: the inputs are
  text here too);
- **CPU**: the journal's writes and lookup for ``--cpu-photos`` photos started at 200 a
  second (as at QPS 200: lookup, creating, created, downloaded), process CPU time
  (all threads) minus the same run on `NullJournal`, per photo (median of 3 pairs).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from idphoto_async import AsyncIDPhotoClient
from idphoto_async._batch import BatchRunner
from idphoto_async._journal import JOURNAL_NAME, BatchStore, Journal, NullJournal
from idphoto_async._polling import PollSchedule
from idphoto_async.testing import LocalServerProcess

__all__ = ["main"]

CPU_QPS = 200.0
SECONDS_IN_FLIGHT = 0.1
"""How long a simulated photo waits between ``created`` and ``downloaded``."""
READINGS = 20
"""Peak-RSS readings per batch run."""


def _peak_rss_mb() -> float:
    """This process's peak RSS: ``VmHWM`` of its own memory map.

    Not ``ru_maxrss``: Linux carries the parent's high-water mark over ``vfork`` + ``exec``
    into it, so a child started by a driver that has grown would report the driver's peak.
    """
    return _status_mb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mb(field: str) -> float:
    """A size from ``/proc/self/status`` in MB (0 where there is none)."""
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0  # pragma: no cover


def _child(*args: str) -> dict[str, Any]:
    """Run this module with ``args`` in a fresh interpreter; its JSON answer."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.journal_scale", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    if proc.returncode:
        raise SystemExit(f"journal_scale {' '.join(args[:2])} failed:\n{proc.stderr}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# -- open time -------------------------------------------------------------------------------


def make_rows(path: Path, rows: int) -> None:
    """``rows`` entries written straight into a journal's table (every 100th in doubt)."""
    anyio.run(_create_empty, path)
    now = datetime.now(UTC).isoformat()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA synchronous = OFF")
        with db:
            db.executemany(
                "INSERT INTO inputs (key, input, status, task_id, created_at, done, output, "
                "pending_create, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (f"{i:032x}", f"/photos/batch/{i // 1000:04d}/p{i:07d}.jpg",
                     "creating" if i % 100 == 0 else "downloaded",
                     None if i % 100 == 0 else f"task-{i:012d}", now, int(i % 100 != 0),
                     None if i % 100 == 0 else f"batch/{i // 1000:04d}/p{i:07d}.png",
                     int(i % 100 == 0), now)
                    for i in range(rows)
                ),
            )  # fmt: skip


async def _create_empty(path: Path) -> None:
    async with Journal(path):
        pass


async def _open_once(path: Path, rows: int) -> dict[str, Any]:
    start = time.perf_counter()
    async with Journal(path) as journal:
        opened = time.perf_counter() - start
        entry = await journal.lookup(f"{rows // 2 + 1:032x}")
        assert entry is not None and entry.output
        in_doubt = journal.in_doubt
    return {"open_s": opened, "in_doubt": in_doubt, "rss_mb": _peak_rss_mb()}


# -- peak RSS of a real batch ----------------------------------------------------------------


def make_photos(directory: Path, count: int) -> None:
    from ._inputs import make_inputs

    make_inputs(directory, count)


async def _run_batch(base_url: str, src: Path, out: Path, count: int) -> dict[str, Any]:
    # Never a list of them all; text, not `src / name`: pathlib would intern each name (the
    # caller's cost, not the batch's, which parses no per-input path).
    names = (os.path.join(src, f"p{i:05d}.jpg") for i in range(count))
    statuses: dict[str, int] = {}
    every = max(1, count // READINGS)
    readings: list[tuple[int, float, float]] = []
    start = time.perf_counter()
    schedule = PollSchedule(initial_guess=0.02, min_delay=0.02, max_delay=0.2)
    async with AsyncIDPhotoClient(
        api_key="bench", base_url=base_url, qps=2000, poll_schedule=schedule
    ) as client:
        runner = BatchRunner(client, out_dir=out, max_in_flight=64, format="jpg")
        async with runner.outcomes(names) as stream:
            async for outcome in stream:
                statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
                if sum(statuses.values()) % every == 0:
                    readings.append((sum(statuses.values()), _peak_rss_mb(), _status_mb("VmRSS")))
    return {"seconds": time.perf_counter() - start, "statuses": statuses,
            "rss_mb": _peak_rss_mb(), "readings": readings}  # fmt: skip


def _growth(readings: list[list[float]], warmup: int, column: int) -> tuple[float, float]:
    """MB per 1 000 inputs (least squares past ``warmup``) and the warm-up's MB."""
    upper = [(row[0], row[column]) for row in readings if row[0] >= warmup]
    slope = statistics.linear_regression([n for n, _ in upper], [mb for _, mb in upper]).slope
    return slope * 1000, upper[0][1] - readings[0][column]


# -- CPU per photo ---------------------------------------------------------------------------


async def _photo(store: BatchStore, i: int) -> None:
    key, name = f"{i:032x}", f"p{i:05d}.jpg"
    await store.lookup(key)
    await store.creating(key, name)
    await store.created(key, name, f"task-{i}", datetime.now(UTC))
    await anyio.sleep(SECONDS_IN_FLIGHT)
    await store.downloaded(key, name, f"task-{i}", f"p{i:05d}.png")


async def _paced(store: BatchStore, photos: int) -> float:
    """Process CPU seconds to journal ``photos`` photos started at ``CPU_QPS`` a second."""
    cpu = time.process_time()
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for i in range(photos):
            await anyio.sleep_until(start + i / CPU_QPS)
            tg.start_soon(_photo, store, i)
    return time.process_time() - cpu


async def _cpu(path: Path, photos: int, rounds: int = 3) -> dict[str, Any]:
    """The median over ``rounds`` of (journal - null store), each pair run back to back."""
    costs, bases = [], []
    for i in range(rounds):
        async with NullJournal() as null:
            base = await _paced(null, photos)
        async with Journal(path.with_name(f"{path.name}.{i}")) as journal:
            used = await _paced(journal, photos)
        costs.append((used - base) / photos * 1e3)
        bases.append(base / photos * 1e3)
    return {"cpu_ms_per_photo": statistics.median(costs), "base_ms": statistics.median(bases),
            "all_ms": costs}  # fmt: skip


# -- driver ----------------------------------------------------------------------------------


def _child_main(argv: list[str]) -> None:
    kind, *rest = argv
    if kind == "open":
        answer = anyio.run(_open_once, Path(rest[0]), int(rest[1]))
    elif kind == "batch":
        base_url, src, out, count = rest
        answer = anyio.run(_run_batch, base_url, Path(src), Path(out), int(count))
    else:
        answer = anyio.run(_cpu, Path(rest[0]), int(rest[1]))
    print(json.dumps(answer))


def _batch_rss(base_url: str, work: Path, count: int) -> tuple[dict[str, Any], dict[str, Any]]:
    src, out = work / "in", work / f"out-{count}"
    make_photos(src, count)
    first = _child("--child", "batch", base_url, str(src), str(out), str(count))
    resume = _child("--child", "batch", base_url, str(src), str(out), str(count))
    assert first["statuses"] == {"succeeded": count}, first
    assert resume["statuses"] == {"skipped": count}, resume
    return first, resume


def main(argv: list[str] | None = None) -> int:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--photos", type=int, default=40_000)
    parser.add_argument("--warmup", type=int, default=10_000)
    parser.add_argument("--cpu-photos", type=int, default=2_000)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child_main(args.child)
        return 0
    lines = ["| measure | value |", "|---|---|"]
    with tempfile.TemporaryDirectory(prefix="journal-scale-") as tmp:
        work = Path(tmp)
        journal = work / "big" / JOURNAL_NAME
        started = time.perf_counter()
        make_rows(journal, args.rows)
        made = time.perf_counter() - started
        opened = _child("--child", "open", str(journal), str(args.rows))
        size_mb = journal.stat().st_size / 1e6
        lines.append(
            f"| open {args.rows:,} rows ({size_mb:.0f} MB, made in {made:.0f} s) | "
            f"{opened['open_s'] * 1e3:.0f} ms, {opened['in_doubt']:,} in doubt, "
            f"peak RSS {opened['rss_mb']:.0f} MB |"
        )
        cpu = _child("--child", "cpu", str(work / "cpu" / JOURNAL_NAME), str(args.cpu_photos))
        lines.append(
            f"| journal CPU per photo at {CPU_QPS:.0f}/s ({args.cpu_photos:,} photos) | "
            f"{cpu['cpu_ms_per_photo']:.3f} ms, median of "
            f"{', '.join(f'{c:.3f}' for c in cpu['all_ms'])} "
            f"(the loop without journal: {cpu['base_ms']:.3f} ms) |"
        )
        with LocalServerProcess(qps=None, processing_time="0") as server:
            runs = _batch_rss(server.base_url, work, args.photos)
        for label, run in zip(("first run", "resume"), runs, strict=True):
            growth, warm = _growth(run["readings"], args.warmup, 1)
            current, _ = _growth(run["readings"], args.warmup, 2)
            lines.append(
                f"| peak RSS, {label}: {args.warmup:,} -> {args.photos:,} inputs | "
                f"{growth:.3f} MB per 1 000 (least squares over the readings past the "
                f"warm-up; current RSS: {current:.3f}); {run['rss_mb']:.1f} MB at the end, "
                f"warm-up to {args.warmup:,}: +{warm:.1f} MB; {run['seconds']:.0f} s |"
            )
    print("\n".join(lines))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n(machine: {os.cpu_count()} cores, shared, load average {load} at the end; "
          f"Python {sys.version.split()[0]})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
