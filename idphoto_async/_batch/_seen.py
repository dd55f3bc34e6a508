"""What a run has already seen (identities, output names), kept on disk, not in memory.

A run of a million inputs must remember every photo and output name it has taken (to drop
duplicates and tell clashing names apart). A Python ``set`` of them grows with the run;
`SeenSet` keeps 16-byte BLAKE2b digests in a private temporary SQLite database instead
(a file that SQLite deletes on close), whose page cache is capped at `CACHE_KIB`: memory
stays flat, whatever the number of inputs. Two different texts share a 128-bit digest with
a chance below 1e-26 at a million inputs each: as exact as comparing the texts.

`fingerprint` is the short, stable 64-bit hash that `Shard` splits inputs by.
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Final

__all__ = ["CACHE_KIB", "SeenSet", "fingerprint"]

CACHE_KIB: Final = 256
"""The page cache of each `SeenSet` (beyond it, pages live in the temporary file)."""


def _digest(text: str, size: int) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=size).digest()


def fingerprint(text: str) -> int:
    """A stable, non-zero 64-bit fingerprint of ``text`` (the same in every process)."""
    return int.from_bytes(_digest(text, 8), "big") or 1


class SeenSet:
    """``add`` says whether a text is new. Memory is bounded; call `close` (or use ``with``).

    One caller at a time, from any thread (the run plans its inputs in worker threads).
    """

    def __init__(self) -> None:
        # "" is a private temporary database on disk, removed when the connection closes.
        self._conn = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        for pragma in (
            f"cache_size = -{CACHE_KIB}",
            "journal_mode = OFF",  # nothing to recover: the file dies with the run
            "synchronous = OFF",
            "locking_mode = EXCLUSIVE",
        ):
            self._conn.execute(f"PRAGMA {pragma}")
        self._conn.execute("CREATE TABLE seen (digest BLOB PRIMARY KEY) WITHOUT ROWID")
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, text: str) -> bool:
        row = self._conn.execute("SELECT 1 FROM seen WHERE digest = ?", (_digest(text, 16),))
        return row.fetchone() is not None

    def add(self, text: str) -> bool:
        """Remember ``text``; False if it was already there."""
        cursor = self._conn.execute("INSERT OR IGNORE INTO seen VALUES (?)", (_digest(text, 16),))
        added = cursor.rowcount == 1
        self._count += added
        return added

    def close(self) -> None:
        """Close the database (SQLite deletes its file)."""
        self._conn.close()

    def __enter__(self) -> SeenSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
