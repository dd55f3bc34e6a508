"""A compact set of 64-bit fingerprints: what a run has already seen, at ~16 bytes each.

A run of a million inputs must remember every identity and output name it has taken (to
drop duplicates and tell clashing names apart) without growing like a ``set`` of strings.
This is an open-addressing table of unsigned 64-bit integers in one ``array``.
"""

from __future__ import annotations

import hashlib
from array import array
from typing import Final

__all__ = ["FingerprintSet", "fingerprint"]

_EMPTY: Final = 0
_MASK64: Final = (1 << 64) - 1


def fingerprint(text: str) -> int:
    """A stable, non-zero 64-bit fingerprint of ``text`` (the same in every process)."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") or 1


class FingerprintSet:
    """``add`` says whether a fingerprint is new; memory stays at 8-16 bytes per entry."""

    def __init__(self, capacity: int = 1024) -> None:
        size = 1
        while size < capacity:
            size <<= 1
        self._slots = array("Q", bytes(8 * size))
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, value: int) -> bool:
        slots, mask = self._slots, len(self._slots) - 1
        index = value & mask
        while True:
            slot = slots[index]
            if slot == value:
                return True
            if slot == _EMPTY:
                return False
            index = (index + 1) & mask

    def add(self, value: int) -> bool:
        """Add ``value`` (non-zero, 64-bit); False if it was already there."""
        if not 0 < value <= _MASK64:
            raise ValueError("a fingerprint is a non-zero 64-bit integer")
        if value in self:
            return False
        if 2 * (self._count + 1) > len(self._slots):
            self._grow()
        self._insert(self._slots, value)
        self._count += 1
        return True

    @staticmethod
    def _insert(slots: array[int], value: int) -> None:
        mask = len(slots) - 1
        index = value & mask
        while slots[index] != _EMPTY:
            index = (index + 1) & mask
        slots[index] = value

    def _grow(self) -> None:
        bigger = array("Q", bytes(16 * len(self._slots)))
        for value in self._slots:
            if value != _EMPTY:
                self._insert(bigger, value)
        self._slots = bigger
