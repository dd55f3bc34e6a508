"""Garbage-collector settings for the long-running processes this package starts itself.

Only ``idphoto serve`` and ``idphoto batch`` apply them, for as long as they run; importing
the package or using a client changes nothing (the collector is the whole process's).

A batch keeps hundreds of photos in flight, so most objects outlive a young collection:
CPython's default thresholds (700, 10, 10) then collected 300 times per 2 000 photos at
QPS 200, 440 ms of event-loop pauses (gen-1 up to 15 ms, gen-2 up to 64 ms). Each pause
delays the limiter's next grant, and a delay longer than a slot (5 ms at QPS 200) costs its
length in throughput. The local server keeps hundreds of connections open and has the
opposite need: short pauses, since a stall bunches the arrivals behind it into one window
(a 60 ms full collection earned a client within its QPS a 429).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

__all__ = ["BATCH_THRESHOLDS", "SERVER_THRESHOLDS", "collector_settings"]

BATCH_THRESHOLDS: Final = (7000, 10, 10)
"""Young collections 10 times rarer: 5 instead of 300 per 2 000 photos at QPS 200 (A/B, 5
interleaved runs each: 0.957 of the bound instead of 0.931, as with the collector off)."""

SERVER_THRESHOLDS: Final = (700, 2, 1000)
"""Small young generations (gen-1 pauses of 15-20 ms instead of up to 33 ms) and almost no
full collections (the objects of hundreds of open connections are never all rescanned)."""


@contextmanager
def collector_settings(thresholds: tuple[int, int, int]) -> Iterator[None]:
    """Collect once, freeze what exists (start-up objects leave every later scan) and use
    ``thresholds``; restore the previous thresholds and unfreeze on exit."""
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()
