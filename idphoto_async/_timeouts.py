"""Every phase of an HTTP exchange bounded by the request's timeout.

httpx's timeouts bound each socket operation, not a phase: a server that sends one header
byte a second never trips a read timeout of 2 s and holds the request for ever. A
`PhaseDeadline` is one anyio cancel scope around the whole exchange whose deadline moves
with the phase, as httpcore reports it through its public ``trace`` request extension:

==========================================  ============================================
phase                                       must end within
==========================================  ============================================
sending: a pooled connection, connecting,   ``pool + connect + write * body_factor``,
TLS, the headers, the body                  + 1 s per `MIN_UPLOAD_RATE` bytes of upload
waiting for the answer's headers            ``read``
reading the answer's body                   ``read * body_factor``
==========================================  ============================================

(each socket operation within a phase is also bounded by httpx's own timeout). With a
transport that reports no phases (a mock, a custom transport), the headers are awaited
within the sending budget plus ``read``, so every exchange still ends in bounded time. The
deadline moves twice per request (two timer updates), to keep the cost per request low.
Cancellation from outside (Ctrl-C, a caller's own scope) goes through at once: the scope
only ever adds a deadline.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import anyio
import httpx

__all__ = ["MIN_UPLOAD_RATE", "PhaseDeadline"]

MIN_UPLOAD_RATE: Final = 32 * 1024
"""Bytes per second an upload body is allowed at the least (on top of its write budget)."""

_SENDING: Final = frozenset(
    {"http11.send_request_headers.started", "http2.send_request_headers.started"}
)
_HEADERS_SENT: Final = frozenset(
    {"http11.send_request_headers.complete", "http2.send_request_headers.complete"}
)
_AWAITING: Final = frozenset(
    {"http11.receive_response_headers.started", "http2.receive_response_headers.started"}
)


def _seconds(value: float | None) -> float:
    return math.inf if value is None else float(value)


class PhaseDeadline:
    """Bounds each phase of one request/response exchange; see the module docstring.

    Use it as ``with deadline.scope:`` around sending and reading, pass `trace` as the
    request's ``trace`` extension, call `reading_body` once the headers are in, and check
    `expired` after the scope. ``on_departure`` runs just before the request's headers are
    written: nothing yields to the event loop in between (anyio and trio write a socket at
    once), so the moment is the departure's, microseconds early. httpcore reports the
    headers *sent* only after a turn of the event loop, tens of milliseconds late under
    load: a stamp taken then is safe for the window but holds the request's place in it
    that much longer. ``on_headers_sent`` (async) is awaited once they have left, before the
    body is sent.
    """

    def __init__(
        self,
        timeout: httpx.Timeout,
        *,
        body_factor: float,
        upload_bytes: int = 0,
        on_departure: Callable[[], None] | None = None,
        on_headers_sent: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.read = _seconds(timeout.read)
        self.body_factor = body_factor
        self.on_departure = on_departure
        self.on_headers_sent = on_headers_sent
        sending = (
            _seconds(timeout.pool)
            + _seconds(timeout.connect)
            + _seconds(timeout.write) * body_factor
            + upload_bytes / MIN_UPLOAD_RATE
        )
        self.phase = "sending the request"
        self.budget = sending
        self.sent_anything = False
        """Whether any byte of the request may have left (so the server may have acted)."""
        # Until the trace says the answer is awaited: the sending budget, then the read.
        self.scope = anyio.CancelScope(deadline=anyio.current_time() + sending + self.read)

    @property
    def expired(self) -> bool:
        """Whether the scope ended the exchange because a phase ran out of time."""
        return self.scope.cancelled_caught

    def describe(self) -> str:
        """``"<phase> took over <budget> s"``, for the timeout error."""
        return f"{self.phase} took over {self.budget:g} s"

    def enter(self, phase: str, budget: float) -> None:
        """Start ``phase``: it must end within ``budget`` seconds from now."""
        self.phase = phase
        self.budget = budget
        self.scope.deadline = anyio.current_time() + budget

    def reading_body(self) -> None:
        """The headers are in: the body must arrive within ``read * body_factor``."""
        self.enter("reading the answer's body", self.read * self.body_factor)

    async def trace(self, event: str, info: Mapping[str, Any]) -> None:
        """httpcore's ``trace`` hook: note the departure, bound the wait for the answer."""
        if event in _AWAITING:
            self.sent_anything = True
            self.enter("waiting for the answer's headers", self.read)
        elif event in _SENDING:
            self.sent_anything = True
            if self.on_departure is not None:
                self.on_departure()
        elif event in _HEADERS_SENT and self.on_headers_sent is not None:
            await self.on_headers_sent()  # push the departure (shared limiter)
