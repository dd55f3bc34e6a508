"""What a batch run reports: one `BatchOutcome` per input, and live `BatchStats`."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Final, Literal

import attrs

from .._errors import IDPhotoError
from .._journal import error_info
from .._paths import path_text

__all__ = ["BatchOutcome", "BatchStats", "Mode", "Status", "default_max_in_flight"]

Status = Literal["succeeded", "failed", "skipped"]
Mode = Literal["async", "sync"]

EXPECTED_P90_SECONDS: Final = 5.0
"""Processing time (90th percentile) assumed before the client has learned any."""
LATENCY_MARGIN: Final = 5.0
"""Seconds added for polling lag and the download: at the QPS bound the first query aims at
the 97th percentile, so a task lives well past the 90th (measured at QPS 2: 24 in flight made
0.88 photos/s against 0.85-0.87 with 18)."""
MAX_IN_FLIGHT_CAP: Final = 256


def _output_text(output: str | os.PathLike[str] | None) -> str | None:
    return None if output is None else path_text(output)


@attrs.frozen(repr=False, match_args=False)
class BatchOutcome:
    """What happened to one input.

    ``output`` may be given as text or a path; it is kept as text (normalised as
    ``str(Path(output))`` is) and read back as a `Path`.
    """

    __match_args__ = (
        "input", "status", "task_id", "output", "error", "possible_extra_charges"
    )  # fmt: skip

    input: str
    status: Status
    task_id: str | None = None
    _output: str | None = attrs.field(default=None, converter=_output_text, alias="output")
    """`output` as text (the batch reads only this: no pathlib parse per input)."""
    error: IDPhotoError | None = None
    possible_extra_charges: int = 0
    """Creates of this input that may each have been charged a second time (a create sent
    again after one that may have made a task, or a result that expired and was made again)."""

    @property
    def output(self) -> Path | None:
        """The output file (None when there is none)."""
        return None if self._output is None else Path(self._output)

    @property
    def ok(self) -> bool:
        """Succeeded now or earlier (skipped)."""
        return self.status != "failed"

    def report_record(self) -> dict[str, Any]:
        """The report's JSON object: input, status, task_id, output, error (and
        ``possible_extra_charges`` when a second charge may have happened)."""
        record: dict[str, Any] = {
            "input": self.input,
            "status": self.status,
            "task_id": self.task_id,
            "output": self._output,
            "error": None if self.error is None else error_info(self.error).to_json(),
        }
        if self.possible_extra_charges:
            record["possible_extra_charges"] = self.possible_extra_charges
        return record

    def __repr__(self) -> str:
        output = "None" if self._output is None else f"{_PATH_CLASS}({self._output!r})"
        return (
            f"BatchOutcome(input={self.input!r}, status={self.status!r}, "
            f"task_id={self.task_id!r}, output={output}, error={self.error!r}, "
            f"possible_extra_charges={self.possible_extra_charges!r})"
        )


_PATH_CLASS: Final = type(Path()).__name__
"""``PosixPath`` or ``WindowsPath``: how a `Path` names itself in a repr."""


@attrs.define
class BatchStats:
    """Live counters of a run (read them for a progress display)."""

    taken: int = 0
    """Inputs taken from the caller's iterable (after directories are walked)."""
    duplicates: int = 0
    """Inputs left out because an earlier one named the same photo (same real path or URL)."""
    other_shards: int = 0
    """Inputs left to the other shards (``shard``)."""
    succeeded: int = 0
    skipped: int = 0
    failed: int = 0
    in_flight: int = 0
    rejected: int = 0
    """Failed inputs refused before any request (unreadable, not an image, bad options)."""
    creates: int = 0
    """Create requests that really went out (refused inputs send none)."""
    resumed: int = 0
    """Tasks of an earlier run polled instead of created again."""
    in_doubt: int = 0
    """Creates an earlier run may have sent without learning the task id (see the journal)."""
    creates_in_doubt: int = 0
    """Creates of this run that failed after they may have reached the service (a 5xx, a
    timeout or a connection cut after sending): each may have made a charged task."""
    retried: int = 0
    """New creates after a task failed with a retryable state (failed tasks cost nothing)."""
    recreated: int = 0
    """New creates after a result expired before it was downloaded (``recreate_expired``)."""
    possible_extra_charges: int = 0
    """Creates that may each have been a second charge for one photo: sent again after a
    create in doubt (``create_retries``), or a result made again (``recreate_expired``)."""

    @property
    def finished(self) -> int:
        """Inputs with an outcome."""
        return self.succeeded + self.skipped + self.failed

    @property
    def unfinished(self) -> int:
        """Inputs taken that have no outcome (in flight, or cut off by a stop)."""
        return self.taken - self.finished

    def count(self, outcome: BatchOutcome) -> None:
        """Count one outcome."""
        if outcome.status == "succeeded":
            self.succeeded += 1
        elif outcome.status == "skipped":
            self.skipped += 1
        else:
            self.failed += 1


def default_max_in_flight(qps: float, p90_seconds: float | None = None) -> int:
    """Enough photos in flight to use the key's QPS while each takes ``p90 + margin`` seconds."""
    p90 = EXPECTED_P90_SECONDS if p90_seconds is None else p90_seconds
    wanted = math.ceil(max(qps, 0.1) * (p90 + LATENCY_MARGIN)) + 4
    return max(4, min(MAX_IN_FLIGHT_CAP, wanted))
