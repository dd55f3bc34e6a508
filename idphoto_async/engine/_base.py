"""What every ID-photo engine is: a pure function from a source image to an ID photo."""

from __future__ import annotations

from typing import Literal, Protocol

import attrs

OutputFormat = Literal["png", "jpg"]


@attrs.frozen
class EngineRequest:
    """One ID photo to make."""

    image: bytes
    size: tuple[int, int] | None = None
    """(width, height); None keeps the source image's size."""
    format: OutputFormat = "png"
    bg_color: str | None = None
    """RRGGBB for jpg; None means white."""


@attrs.frozen
class EngineResult:
    """The encoded ID photo and a note for the task message (e.g. 'several faces')."""

    image: bytes
    note: str = ""


class EngineError(Exception):
    """Processing failed with an API task state (e.g. -7 invalid image, -14 no face)."""

    def __init__(self, state: int, message: str) -> None:
        super().__init__(message)
        self.state = state
        self.message = message

    def __reduce__(self) -> tuple[type[EngineError], tuple[int, str]]:
        # Pickled as (state, message), so it crosses to and from worker processes intact.
        return (EngineError, (self.state, self.message))


class Engine(Protocol):
    """A synchronous, thread-safe ID-photo pipeline; callers run it off the event loop."""

    name: str

    def process(self, request: EngineRequest) -> EngineResult:
        """Make the ID photo or raise `EngineError`."""
        ...
