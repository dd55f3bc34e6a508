"""Every phase of an HTTP exchange bounded by the request's timeout.

httpx's timeouts bound each socket operation, not a phase: a server that sends one header
byte a second never trips a read timeout of 2 s and holds the request for ever. A
`PhaseDeadline` is one anyio cancel scope around the whole exchange whose deadline moves
with the phase, as httpcore reports it through its public ``trace`` request extension:

=========================  ==========================================================
phase                      bounded by
=========================  ==========================================================
connecting, TLS            ``timeout.connect``
sending the headers        ``timeout.write``
sending the body           ``timeout.write * body_factor`` + 1 s per `MIN_UPLOAD_RATE`
waiting for the headers    ``timeout.read``
reading the body           ``timeout.read * body_factor``
=========================  ==========================================================

Before the first phase starts (waiting for a pooled connection), and with a transport that
reports no phases (a mock, a custom transport), the deadline is the sum of the phases'
timeouts, so every exchange ends in bounded time. Cancellation from outside (Ctrl-C, a
caller's own scope) goes through at once: the scope only ever adds a deadline.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Final

import anyio
import httpx

__all__ = ["MIN_UPLOAD_RATE", "PhaseDeadline"]

MIN_UPLOAD_RATE: Final = 32 * 1024
"""Bytes per second an upload body is allowed at the least (on top of its write budget)."""

_CONNECTING: Final = ("connect_tcp", "connect_unix_socket", "start_tls")


def _seconds(value: float | None) -> float:
    return math.inf if value is None else float(value)


class PhaseDeadline:
    """Bounds each phase of one request/response exchange; see the module docstring.

    Use it as ``with deadline.scope:`` around sending and reading, pass `trace` as the
    request's ``trace`` extension, call `reading_body` once the headers are in, and check
    `expired` after the scope.
    """

    def __init__(
        self,
        timeout: httpx.Timeout,
        *,
        body_factor: float,
        upload_bytes: int = 0,
        on_headers_sent: Callable[[], object] | None = None,
    ) -> None:
        self.connect = _seconds(timeout.connect)
        self.write = _seconds(timeout.write)
        self.read = _seconds(timeout.read)
        self.body_factor = body_factor
        self.upload_bytes = upload_bytes
        self.on_headers_sent = on_headers_sent
        self.phase = "waiting for a connection"
        self.budget = _seconds(timeout.pool) + self.connect + self.write + self.read
        self.sent_anything = False
        """Whether any byte of the request may have left (so the server may have acted)."""
        self.scope = anyio.CancelScope(deadline=anyio.current_time() + self.budget)

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
        """httpcore's ``trace`` hook: move the deadline as each phase starts."""
        _, _, step = event.partition(".")
        name, _, stage = step.rpartition(".")
        if stage == "complete":
            if name == "send_request_headers" and self.on_headers_sent is not None:
                self.on_headers_sent()
            return
        if stage != "started":
            return
        if name in _CONNECTING:
            self.enter("connecting", self.connect)
        elif name == "send_request_headers":
            self.sent_anything = True
            self.enter("sending the request", self.write)
        elif name == "send_request_body":
            self.sent_anything = True
            upload = self.write * self.body_factor + self.upload_bytes / MIN_UPLOAD_RATE
            self.enter("sending the request body", upload)
        elif name == "receive_response_headers":
            self.sent_anything = True
            self.enter("waiting for the answer's headers", self.read)
        elif name == "receive_response_body" and self.phase != "reading the answer's body":
            self.reading_body()
