"""Creates on the wire finish even while the run is cancelled, so their task ids are kept."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import anyio

__all__ = ["SHIELD_SECONDS", "CreateShields"]

SHIELD_SECONDS: Final = 60.0
"""How long a create already started may run on after cancellation, to learn its task id."""


class CreateShields:
    """Shield scopes around creates; `begin_cancel` gives them `SHIELD_SECONDS` to answer."""

    def __init__(self) -> None:
        self._scopes: set[anyio.CancelScope] = set()
        self._cancelling = False

    def begin_cancel(self) -> None:
        """Cancellation is coming: every shielded create gets a deadline."""
        self._cancelling = True
        deadline = anyio.current_time() + SHIELD_SECONDS
        for scope in self._scopes:
            scope.deadline = min(scope.deadline, deadline)

    @contextmanager
    def on_the_wire(self) -> Iterator[anyio.CancelScope]:
        """Shield one create (and the journaling of its answer)."""
        scope = anyio.CancelScope(shield=True)
        if self._cancelling:
            scope.deadline = anyio.current_time() + SHIELD_SECONDS
        self._scopes.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._scopes.discard(scope)
