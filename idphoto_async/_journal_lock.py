"""``PATH-lock`` beside a journal: the single-writer lock, and a reserve of disk space.

The reserve (preallocated, best effort) is released when the disk is full, so that the record
of a task that was just paid for can still be committed.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ._journal_types import JournalLockedError

try:  # advisory lock: two batches must not share a journal
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LockFile"]


class LockFile:
    """``PATH-lock``: an exclusive advisory lock plus a reserve of preallocated disk space."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._reserved = False

    @classmethod
    def acquire(cls, path: Path, journal: Path) -> LockFile:
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            if fcntl is None:  # pragma: no cover - Windows: no lock
                return cls(path, fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise JournalLockedError(journal) from None
            try:  # the file we locked must still be the one at ``path`` (a closing holder
                st = os.stat(path)  # unlinks it): else lock the new one
                fst = os.fstat(fd)
                if (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino):
                    return cls(path, fd)
            except FileNotFoundError:
                pass
            os.close(fd)

    def reserve(self, size: int) -> None:
        """Hold ``size`` bytes of disk (best effort: a disk already full holds less)."""
        try:
            os.posix_fallocate(self._fd, 0, size)
            self._reserved = True
        except (OSError, AttributeError):
            self._reserved = False

    def release_reserve(self) -> bool:
        """Give the reserve back to the filesystem; False if there was none left."""
        if not self._reserved:
            return False
        self._reserved = False
        os.ftruncate(self._fd, 0)
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)  # releases the lock
