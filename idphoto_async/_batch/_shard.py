"""``--shard K/N``: a deterministic share of a batch, for N processes or machines.

An input belongs to shard ``fingerprint(identity) % N`` (counted from 1), where the identity
is its real path or normalised URL: the same on every machine that mounts the photos at the
same path, in every run, whatever the order or the other inputs.
"""

from __future__ import annotations

import re

import attrs

from ._layout import BatchConfigError
from ._seen import fingerprint

__all__ = ["Shard"]

_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def _check(instance: Shard, _: object, value: int) -> None:
    if not 1 <= instance.index <= instance.count:
        raise BatchConfigError(
            f"shard {instance.index}/{instance.count}: K must be between 1 and N",
            field="shard",
        )


@attrs.frozen
class Shard:
    """The ``index``-th (from 1) of ``count`` shares of the inputs."""

    index: int
    count: int = attrs.field(validator=_check)

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"K/N"`` (e.g. ``"2/8"``) as a `Shard`."""
        match = _SPEC.fullmatch(text)
        if match is None:
            raise BatchConfigError(
                f"--shard {text!r}: write K/N, e.g. 1/4 for the first of four shares",
                field="shard",
            )
        return cls(int(match[1]), int(match[2]))

    def owns(self, identity: str) -> bool:
        """Whether the input with ``identity`` belongs to this shard."""
        return fingerprint(identity) % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
