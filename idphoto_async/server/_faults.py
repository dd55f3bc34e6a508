"""Fault injection: seeded coin flips, counted in the stats, and responses cut on purpose."""

from __future__ import annotations

import logging
import random

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ._stats import Stats

__all__ = ["CutResponse", "Faults", "quiet_intentional_aborts"]

_ABORT_MESSAGE = "ASGI callable returned without completing response."


class Faults:
    """Decides, with one ``random.Random(seed)``, which requests get which fault."""

    def __init__(self, seed: int | None, stats: Stats) -> None:
        self.rng = random.Random(seed)
        self.stats = stats

    def hit(self, name: str, rate: float) -> bool:
        """True (and counted under ``name``) with probability ``rate``."""
        if rate <= 0 or self.rng.random() >= rate:
            return False
        self.stats.fault(name)
        return True

    def choose(self, options: tuple[int, ...]) -> int:
        """A random member of ``options``."""
        return self.rng.choice(options)


class CutResponse(Response):
    """Sends the headers with the full Content-Length, part of the body, then hangs up.

    The server closes the connection, so the client sees a protocol error
    (incomplete body) rather than an HTTP status.
    """

    def __init__(self, body: bytes, media_type: str, keep: int) -> None:
        super().__init__(body, media_type=media_type)
        self.keep = keep

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send(
            {"type": "http.response.body", "body": self.body[: self.keep], "more_body": True}
        )


class _IntentionalAbortFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _ABORT_MESSAGE


_filter = _IntentionalAbortFilter()


def quiet_intentional_aborts() -> None:
    """Keep uvicorn from logging the connections `CutResponse` cuts as errors."""
    logger = logging.getLogger("uvicorn.error")
    if _filter not in logger.filters:
        logger.addFilter(_filter)
