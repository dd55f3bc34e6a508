"""Batch progress: a rich progress bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Protocol

from .._batch import BatchOutcome, BatchStats
from ._common import printable

__all__ = ["Display", "PlainDisplay", "make_display", "summary_line"]


class Display(Protocol):
    """What the batch command tells the user while it runs."""

    def start(self) -> None: ...
    def set_total(self, total: int) -> None: ...
    def outcome(self, outcome: BatchOutcome) -> None: ...
    def refresh(self) -> None: ...
    def note(self, text: str) -> None: ...
    def stop(self) -> None: ...


def _fmt_failure(outcome: BatchOutcome) -> str:
    return printable(f"failed: {outcome.input}: {outcome.error}")


class PlainDisplay:
    """No bar: failures and notes as lines on stderr (the summary comes at the end)."""

    def start(self) -> None:
        pass

    def set_total(self, total: int) -> None:
        pass

    def outcome(self, outcome: BatchOutcome) -> None:
        if outcome.status == "failed":
            print(_fmt_failure(outcome), file=sys.stderr, flush=True)

    def refresh(self) -> None:
        pass

    def note(self, text: str) -> None:
        print(printable(text), file=sys.stderr, flush=True)

    def stop(self) -> None:
        pass


class RichDisplay:
    """A live bar: done / failed / in flight / photos per second / ETA / requests used."""

    def __init__(self, stats: BatchStats, requests: Callable[[], int]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._stats = stats
        self._requests = requests
        self._started = time.monotonic()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed"),
            TextColumn("{task.fields[in_flight]} in flight"),
            TextColumn("{task.fields[rate]} photos/s"),
            TextColumn("{task.fields[requests]} requests"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = self._progress.add_task(
            "ID photos", total=None, failed=0, in_flight=0, rate="0.0", requests=0
        )

    def start(self) -> None:
        self._progress.start()

    def set_total(self, total: int) -> None:
        self._progress.update(self._task, total=total)

    def outcome(self, outcome: BatchOutcome) -> None:
        if outcome.status == "failed":
            self._progress.console.print(f"[red]{_escape(_fmt_failure(outcome))}")

    def refresh(self) -> None:
        stats = self._stats
        elapsed = max(time.monotonic() - self._started, 1e-6)
        self._progress.update(
            self._task,
            completed=stats.finished,
            failed=stats.failed,
            in_flight=stats.in_flight,
            rate=f"{stats.succeeded / elapsed:.1f}",
            requests=self._requests(),
        )

    def note(self, text: str) -> None:
        self._progress.console.print(_escape(printable(text)))

    def stop(self) -> None:
        self.refresh()
        self._progress.stop()


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def make_display(stats: BatchStats, requests: Callable[[], int], *, no_progress: bool) -> Display:
    """The rich bar on a terminal (when rich is installed), else plain lines."""
    if not no_progress and sys.stderr.isatty():
        try:
            return RichDisplay(stats, requests)
        except ImportError:
            pass
    return PlainDisplay()


def summary_line(stats: BatchStats, seconds: float, requests: int) -> str:
    """One line saying what the run did (true counts, even when it was cut short)."""
    total = stats.taken
    rate = stats.succeeded / seconds if seconds > 0 else 0.0
    parts = [
        f"{total} input{'s' if total != 1 else ''}:",
        f"{stats.succeeded} succeeded,",
        f"{stats.skipped} skipped (already done),",
        f"{stats.failed} failed",
    ]
    if stats.rejected:
        parts[-1] += f" ({stats.rejected} refused before sending)"
    if stats.unfinished:
        parts[-1] += f", {stats.unfinished} unfinished"
    parts.append(
        f"in {seconds:.1f} s ({rate:.1f} photos/s, {requests} API requests, "
        f"{stats.creates} creates)"
    )
    if stats.duplicates:
        parts.append(f"; {stats.duplicates} duplicate name(s) of photos already taken")
    if stats.other_shards:
        parts.append(f"; {stats.other_shards} left to other shards")
    return " ".join(parts)
