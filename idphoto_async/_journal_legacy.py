"""The JSON-lines journal of earlier versions (``.idphoto-journal.jsonl``): read, never written.

One JSON object per line, with ``v``, ``event``, ``key``, ``input`` and ``ts``; the events are
``creating``, ``created`` (``task_id``, ``created_at``), ``done``, ``downloaded`` (``output``)
and ``failed`` (``error``, ``permanent``). A ``creating`` with no later ``created``/``failed``
is in doubt. A torn last line (power loss mid-write) and garbage lines are skipped.

The SQLite journal imports such a file once (`fold_jsonl`) and leaves it as it is.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from ._journal_types import Entry, ErrorInfo

__all__ = ["JournalState", "fold_jsonl", "parse_time"]


@attrs.define
class JournalState:
    """The folded content of a journal file."""

    entries: dict[str, Entry] = attrs.field(factory=dict)
    torn_lines: int = 0
    in_doubt: int = 0
    inputs: dict[str, str] = attrs.field(factory=dict)
    """The input (path or URL as given) of each key."""
    doubted: Counter[str] = attrs.field(factory=Counter)
    """Per key, the creates sent again after an unanswered one (each one in doubt)."""

    def get(self, key: str) -> Entry | None:
        """The entry for ``key``, if any."""
        return self.entries.get(key)

    def apply(self, record: Mapping[str, Any]) -> None:
        """Fold one record in."""
        key = record.get("key")
        event = record.get("event")
        if not isinstance(key, str) or not isinstance(event, str):
            return
        entry = self.entries.setdefault(key, Entry())
        self.inputs[key] = str(record.get("input", ""))
        if event == "creating":
            if entry.pending_create:
                self.in_doubt += 1
                self.doubted[key] += 1
            entry.pending_create = True
        elif event == "created":
            entry.pending_create = False
            entry.task_id = str(record.get("task_id") or "") or None
            entry.created_at = parse_time(record.get("created_at"))
            entry.done = False
            entry.output = None
            entry.failure = None
        elif event == "done":
            entry.done = True
        elif event == "downloaded":
            entry.output = str(record.get("output") or "") or None
            entry.failure = None
        elif event == "failed":
            entry.pending_create = False
            err = record.get("error")
            err = err if isinstance(err, Mapping) else {}
            entry.failure = ErrorInfo(
                type=str(err.get("type", "IDPhotoError")),
                message=str(err.get("message", "")),
                state=_opt_int(err.get("state")),
                http_status=_opt_int(err.get("http_status")),
                permanent=bool(record.get("permanent", True)),
            )

    def finish(self) -> None:
        """Count the creates left in doubt at the end of the file."""
        self.in_doubt += sum(1 for e in self.entries.values() if e.pending_create)


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 time (UTC when it has no zone), or None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def fold_jsonl(path: str | os.PathLike[str]) -> JournalState:
    """Fold a JSON-lines journal (missing: empty) into its entries, skipping torn lines."""
    state = JournalState()
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return state
    for line in data.split(b"\n"):
        try:
            record = json.loads(line) if line.strip() else None
        except (ValueError, UnicodeDecodeError):
            state.torn_lines += 1
            continue
        if isinstance(record, dict):
            state.apply(record)
    state.finish()
    return state
