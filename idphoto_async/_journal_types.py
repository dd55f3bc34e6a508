"""What a batch journal holds and the interface a batch uses (`BatchStore`).

The store itself is `idphoto_async._journal_sqlite.Journal`; `NullJournal` keeps nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Protocol

import attrs

from ._errors import IDPhotoError

__all__ = [
    "BatchStore",
    "Entry",
    "ErrorInfo",
    "JournalLockedError",
    "JournalWriteError",
    "NullJournal",
    "error_info",
    "input_key",
]


class JournalLockedError(IDPhotoError):
    """Another process holds the journal (two batches writing the same output directory)."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"The journal {path} is in use by another idphoto batch. Wait for it to finish, or "
            "use another output directory or --journal path."
        )


class JournalWriteError(IDPhotoError):
    """The journal cannot be opened or a write cannot be made durable: the run must stop.

    ``path`` is the journal; ``task_id`` the task whose record was being written, if any
    (``kept`` says whether that record was committed all the same, from the disk reserve).
    """

    retryable = True
    """The same run again, once the disk is mended, goes on where this one stopped."""

    def __init__(
        self, path: Path, message: str, *, task_id: str | None = None, kept: bool = False
    ) -> None:
        super().__init__(message)
        self.path = path
        self.task_id = task_id
        self.kept = kept

    @classmethod
    def write_failed(
        cls, path: Path, reason: str | None, *, task_id: str | None, kept: bool
    ) -> JournalWriteError:
        """A write failed: ``reason`` is None for a full disk, else what the OS said."""
        if reason is None:
            head = f"disk full at {path}: free space and run the same command again"
        else:
            head = f"cannot write the journal {path} ({reason}): fix it and run the same again"
        if task_id and kept:
            head += f" (task {task_id} is kept)"
        elif task_id:
            head += f" (task {task_id} could not be saved: fetch it with `idphoto wait {task_id}`)"
        return cls(path, head, task_id=task_id, kept=kept)

    @classmethod
    def unusable(cls, path: Path, why: str) -> JournalWriteError:
        """The journal cannot be opened for writing (a directory, read-only, not a journal)."""
        return cls(
            path,
            f"cannot use the journal {path}: {why}; "
            "choose a writable output directory or another --journal file",
        )


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

    async def downloaded(self, key: str, input: str, task_id: str | None, output: str) -> None:
        """Kept nowhere."""

    async def failed(self, key: str, input: str, task_id: str | None, info: ErrorInfo) -> None:
        """Kept nowhere."""
