"""Interpreters whose own memory grows with a batch's inputs (told once per run)."""

from __future__ import annotations

import logging
import sys
from typing import Final

__all__ = ["IMMORTAL_INTERNING_FIXED", "interning_leaks", "warn_if_interning_leaks"]

logger = logging.getLogger("idphoto_async")

IMMORTAL_INTERNING_FIXED: Final = (3, 12, 6)
"""CPython 3.12.0-3.12.5 keep every interned string for good (python/cpython#113993), and
a batch's memory grows with its inputs there. Measured on 3.12.1 (``benchmarks.journal_scale
--photos 20000 --warmup 5000``): 0.19 MB per 1 000 inputs on a first run and on a resume
while the batch parsed paths with pathlib (which interns each part); 0.092 and 0.016 since it
parses none (3.11: 0.038 and 0.001). What 3.12.1 still interns per input is not located."""


def interning_leaks(
    implementation: str = sys.implementation.name,
    version: tuple[int, int, int] = sys.version_info[:3],
) -> bool:
    """Whether this interpreter keeps every interned string (so every path part)."""
    return implementation == "cpython" and (3, 12) <= version < IMMORTAL_INTERNING_FIXED


def warn_if_interning_leaks() -> None:
    """Log a WARNING on an interpreter that `interning_leaks`: how to avoid it."""
    if interning_leaks():
        logger.warning(
            "Python %s keeps every interned string, so this batch's memory grows about "
            "0.1 MB per 1 000 inputs (CPython issue 113993): use Python 3.12.6 or later",
            ".".join(map(str, sys.version_info[:3])),
        )
