"""The resume journal: one JSON object per line, appended as each step of a batch happens.

Events (every record has ``v``, ``event``, ``key``, ``input`` and ``ts``):

- ``creating``: a create request is about to be sent (an intent; see "in doubt" below);
- ``created``: the create returned ``task_id`` (``created_at`` is when the client saw it);
- ``done``: the task reached state 1;
- ``downloaded``: the result is stored at ``output``;
- ``failed``: the input failed with ``error`` (``type``, ``state`` or ``http_status``,
  ``message``); ``permanent`` says whether trying again would fail the same way.

``key`` identifies an input *and* its options (see `input_key`), so changing a file or an
option makes a fresh entry. Records are written with one ``write()`` each on an ``O_APPEND``
descriptor (a killed process leaves whole lines), and ``created``/``failed`` records are
``fdatasync``-ed because they protect money. Loading tolerates a torn last line (power loss
mid-write) and truncates it before appending.

A ``creating`` record with no later ``created``/``failed`` is *in doubt*: the process died
while the request was on the wire, so the service may or may not have made a task whose id
nobody saw. The API has no way to find it, so such inputs are created again; the count is
reported as `JournalState.in_doubt`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import anyio
import anyio.to_thread
import attrs

from ._errors import IDPhotoError

try:  # advisory lock: two batches must not share a journal
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "JOURNAL_NAME",
    "BatchStore",
    "Entry",
    "ErrorInfo",
    "Journal",
    "JournalLockedError",
    "JournalState",
    "JournalWriteError",
    "NullJournal",
    "error_info",
    "input_key",
    "load_journal",
]

JOURNAL_NAME: Final = ".idphoto-journal.jsonl"
VERSION: Final = 1
Event = Literal["creating", "created", "done", "downloaded", "failed"]
_DURABLE: Final = frozenset({"created", "failed"})


class JournalLockedError(IDPhotoError):
    """Another process holds the journal (two batches writing the same output directory)."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"The journal {path} is in use by another idphoto batch. Wait for it to finish, or "
            "use another output directory or --journal path."
        )


class JournalWriteError(IDPhotoError):
    """A journal write could not be made durable (disk full, I/O error): the run must stop.

    ``path`` is the journal; ``task_id`` the task whose record was being written, if any.
    """

    def __init__(self, path: Path, reason: str, *, task_id: str | None = None) -> None:
        kept = f" (task {task_id} is kept)" if task_id else ""
        super().__init__(f"{reason} at {path}: free space and run the same command again{kept}")
        self.path = path
        self.task_id = task_id


@attrs.frozen
class ErrorInfo:
    """What the journal and the report keep of an error."""

    type: str
    message: str
    state: int | None = None
    http_status: int | None = None
    permanent: bool = True
    task_may_exist: bool = False
    """A create failed after it may have made a (charged) task whose id never came back."""

    def to_json(self) -> dict[str, Any]:
        """The report's error object: ``type``, ``state`` or ``http_status``, ``message``
        (and ``task_may_exist: true`` for a create that may have made a task)."""
        out: dict[str, Any] = {"type": self.type}
        if self.state is not None:
            out["state"] = self.state
        elif self.http_status is not None:
            out["http_status"] = self.http_status
        out["message"] = self.message
        if self.task_may_exist:
            out["task_may_exist"] = True
        return out


def error_info(error: BaseException) -> ErrorInfo:
    """Describe an error for the journal and report (the message never holds the API key)."""
    state = getattr(error, "state", None)
    status = getattr(error, "status_code", None)
    return ErrorInfo(
        type=type(error).__name__,
        message=str(error),
        state=int(state) if isinstance(state, int) else None,
        http_status=status if isinstance(status, int) and status else None,
        permanent=not getattr(error, "retryable", False),
        task_may_exist=getattr(error, "task_may_exist", False) is True,
    )


def input_key(identity: str, options: Mapping[str, Any]) -> str:
    """The journal key of an input identity (path+size+mtime, or URL) with its options."""
    blob = json.dumps([identity, dict(options)], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@attrs.define
class Entry:
    """What the journal knows about one key (the latest of each kind of event)."""

    task_id: str | None = None
    created_at: datetime | None = None
    done: bool = False
    output: str | None = None
    failure: ErrorInfo | None = None
    pending_create: bool = False


@attrs.define
class JournalState:
    """The folded content of a journal file."""

    entries: dict[str, Entry] = attrs.field(factory=dict)
    torn_lines: int = 0
    in_doubt: int = 0

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
        if event == "creating":
            if entry.pending_create:
                self.in_doubt += 1
            entry.pending_create = True
        elif event == "created":
            entry.pending_create = False
            entry.task_id = str(record.get("task_id") or "") or None
            entry.created_at = _parse_time(record.get("created_at"))
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


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _read(path: Path) -> tuple[JournalState, int, bool]:
    """Fold the file.

    Returns the state, the byte length to keep (a torn tail is cut off) and whether a newline
    must be appended before the next record (a whole last record without its newline).
    """
    state = JournalState()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return state, 0, False
    lines = data.split(b"\n")
    keep = 0
    for index, line in enumerate(lines):
        last = index == len(lines) - 1
        try:
            record = json.loads(line) if line.strip() else None
        except (ValueError, UnicodeDecodeError):
            state.torn_lines += 1
            if last:
                break  # torn tail: cut it off
            keep += len(line) + 1  # garbage inside the file (never written by us): skip it
            continue
        if isinstance(record, dict):
            state.apply(record)
        keep += len(line) + (0 if last else 1)
    state.finish()
    return state, keep, bool(data) and keep == len(data) and not data.endswith(b"\n")


def load_journal(path: str | os.PathLike[str]) -> JournalState:
    """Read a journal without opening it for writing (tolerates a torn last line)."""
    return _read(Path(path))[0]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Journal:
    """An open journal: the state loaded at open, and an append-only writer.

    Use as an async context manager. Writing runs in a worker thread and is shielded from
    cancellation, so a record whose step happened is written even while the batch is being
    cancelled.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.state = JournalState()
        self._fd: int | None = None
        self._in_doubt_at_open = 0

    async def __aenter__(self) -> Journal:
        await anyio.to_thread.run_sync(self._open)
        return self

    async def __aexit__(self, *exc: object) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._close)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise JournalLockedError(self.path) from None
            self.state, keep, newline = _read(self.path)
            self._in_doubt_at_open = self.state.in_doubt
            if keep < os.fstat(fd).st_size:
                os.ftruncate(fd, keep)  # drop a torn tail so the next record starts a line
            if newline:
                os.write(fd, b"\n")
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing releases the lock

    @property
    def in_doubt(self) -> int:
        """Creates an earlier run may have sent without learning the task id (at open)."""
        return self._in_doubt_at_open

    async def lookup(self, key: str) -> Entry | None:
        """What the journal knows about ``key``."""
        return self.state.get(key)

    def _write(self, line: bytes, durable: bool) -> None:
        if self._fd is None:
            raise RuntimeError("the journal is closed")
        written = os.write(self._fd, line)
        if written != len(line):
            raise OSError(28, "short write")
        if durable:
            os.fdatasync(self._fd) if hasattr(os, "fdatasync") else os.fsync(self._fd)

    async def record(self, event: Event, key: str, input: str, **fields: Any) -> None:
        """Append one record (and fold it into `state`)."""
        record: dict[str, Any] = {"v": VERSION, "event": event, "key": key, "input": input}
        record.update(fields)
        record["ts"] = _now()
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        try:
            if event in _DURABLE:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self._write, line, True)
            else:
                # One small append to the page cache (survives a killed process): no thread
                # hop, so `creating`, between the limiter's grant and the send, delays nothing.
                self._write(line, False)
        except OSError as exc:
            reason = "disk full" if exc.errno == errno.ENOSPC else f"cannot write ({exc})"
            raise JournalWriteError(self.path, reason, task_id=fields.get("task_id")) from exc
        self.state.apply(record)

    async def creating(self, key: str, input: str) -> None:
        """A create request is about to be sent."""
        await self.record("creating", key, input)

    async def created(self, key: str, input: str, task_id: str, created_at: datetime) -> None:
        """The create returned ``task_id``."""
        await self.record("created", key, input, task_id=task_id, created_at=created_at.isoformat())

    async def done(self, key: str, input: str, task_id: str) -> None:
        """The task succeeded."""
        await self.record("done", key, input, task_id=task_id)

    async def downloaded(self, key: str, input: str, task_id: str | None, output: str) -> None:
        """The result is stored at ``output``."""
        await self.record("downloaded", key, input, task_id=task_id, output=output)

    async def failed(self, key: str, input: str, task_id: str | None, info: ErrorInfo) -> None:
        """The input failed."""
        await self.record(
            "failed", key, input, task_id=task_id, error=info.to_json(), permanent=info.permanent
        )


class BatchStore(Protocol):
    """What a batch needs of its journal (`Journal`, or `NullJournal` to keep nothing)."""

    @property
    def in_doubt(self) -> int:
        """Creates an earlier run may have sent without learning the task id."""
        ...

    async def lookup(self, key: str) -> Entry | None:
        """What is known about ``key``."""
        ...

    async def creating(self, key: str, input: str) -> None:
        """A create request is about to be sent."""
        ...

    async def created(self, key: str, input: str, task_id: str, created_at: datetime) -> None:
        """The create returned ``task_id``."""
        ...

    async def done(self, key: str, input: str, task_id: str) -> None:
        """The task succeeded."""
        ...

    async def downloaded(self, key: str, input: str, task_id: str | None, output: str) -> None:
        """The result is stored at ``output``."""
        ...

    async def failed(self, key: str, input: str, task_id: str | None, info: ErrorInfo) -> None:
        """The input failed."""
        ...


class NullJournal:
    """A store that keeps nothing (``journal=False``): every input is new, nothing in doubt."""

    in_doubt: Final = 0

    async def __aenter__(self) -> NullJournal:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def lookup(self, key: str) -> Entry | None:
        """Nothing is known."""
        return None

    async def creating(self, key: str, input: str) -> None:
        """Kept nowhere."""

    async def created(self, key: str, input: str, task_id: str, created_at: datetime) -> None:
        """Kept nowhere."""

    async def done(self, key: str, input: str, task_id: str) -> None:
        """Kept nowhere."""

    async def downloaded(self, key: str, input: str, task_id: str | None, output: str) -> None:
        """Kept nowhere."""

    async def failed(self, key: str, input: str, task_id: str | None, info: ErrorInfo) -> None:
        """Kept nowhere."""
