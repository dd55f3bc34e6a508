"""The resume journal of a batch: what each input reached, so a re-run never pays twice.

One row per input key (`input_key`: the input's identity *and* its options, so changing a
file or an option makes a fresh entry) in a SQLite database, ``OUT/.idphoto-journal.sqlite3``
by default (see `idphoto_async._journal_sqlite`). The steps of an input:

- ``creating``: a create request is about to be sent (an intent; see "in doubt" below);
- ``created``: the create returned ``task_id`` (``created_at`` is when the client saw it);
- ``downloaded``: the task succeeded and its result is stored at ``output`` (a re-run polls
  a task that succeeded but whose result was not stored: the poll gives the result URL);
- ``failed``: the input failed with an error (`ErrorInfo`); ``permanent`` says whether trying
  again would fail the same way.

A ``creating`` with no later ``created``/``failed`` is *in doubt*: the process died while the
request was on the wire, so the service may or may not have made a task whose id nobody saw.
The API has no way to find it, so such inputs are created again; `Journal.in_doubt` counts
them. A JSON-lines journal of an earlier version is imported once (`_journal_legacy`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ._journal_legacy import JournalState, fold_jsonl
from ._journal_sqlite import (
    JOURNAL_NAME,
    LEGACY_JOURNAL_NAME,
    Journal,
    JournalWatch,
    dump_journal,
    journal_events,
    read_journal,
)
from ._journal_types import (
    BatchStore,
    Entry,
    ErrorInfo,
    JournalLockedError,
    JournalWriteError,
    NullJournal,
    error_info,
    input_key,
)

__all__ = [
    "JOURNAL_NAME",
    "LEGACY_JOURNAL_NAME",
    "BatchStore",
    "Entry",
    "ErrorInfo",
    "Journal",
    "JournalLockedError",
    "JournalState",
    "JournalWatch",
    "JournalWriteError",
    "NullJournal",
    "dump_journal",
    "error_info",
    "input_key",
    "journal_events",
    "load_journal",
]


def load_journal(path: str | os.PathLike[str]) -> JournalState:
    """Every entry of a journal (SQLite, or JSON lines of an earlier version), loaded whole.

    For inspection and tests; a batch looks entries up one by one (`Journal.lookup`).
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        return fold_jsonl(path)
    if not path.exists():
        return JournalState()
    return read_journal(path)
