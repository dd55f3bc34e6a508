"""Simulated service latency: a seedable distribution parsed from a short spec."""

from __future__ import annotations

import math
import random

import attrs

__all__ = ["Latency"]

_KINDS = {"fixed": 1, "uniform": 2, "lognormal": 2, "exponential": 1}


@attrs.frozen
class Latency:
    """Seconds of processing a task takes, drawn per task.

    Specs: ``"0"`` or ``"0.2"`` (fixed), ``"fixed:0.2"``, ``"uniform:1,5"`` (low, high),
    ``"lognormal:3,0.6"`` (median, sigma: a long tail like a real service),
    ``"exponential:2"`` (mean).
    """

    kind: str
    params: tuple[float, ...]

    @classmethod
    def parse(cls, spec: str) -> Latency:
        """Parse a spec; raises ValueError naming what is wrong."""
        text = spec.strip().lower()
        kind, sep, rest = text.partition(":")
        if not sep:
            kind, rest = "fixed", text
        if kind not in _KINDS:
            raise ValueError(
                f"processing_time {spec!r}: unknown distribution {kind!r} "
                f"(use one of {', '.join(_KINDS)})"
            )
        try:
            params = tuple(float(p) for p in rest.split(","))
        except ValueError:
            raise ValueError(f"processing_time {spec!r}: parameters must be numbers") from None
        if len(params) != _KINDS[kind]:
            raise ValueError(f"processing_time {spec!r}: {kind} takes {_KINDS[kind]} number(s)")
        if any(p < 0 or not math.isfinite(p) for p in params):
            raise ValueError(f"processing_time {spec!r}: parameters must be finite and >= 0")
        if kind == "uniform" and params[0] > params[1]:
            raise ValueError(f"processing_time {spec!r}: low must not exceed high")
        if kind == "lognormal" and params[0] == 0:
            raise ValueError(f"processing_time {spec!r}: the median must be > 0")
        return cls(kind, params)

    def sample(self, rng: random.Random) -> float:
        """One draw, in seconds (never negative)."""
        p = self.params
        if self.kind == "fixed":
            return p[0]
        if self.kind == "uniform":
            return rng.uniform(p[0], p[1])
        if self.kind == "exponential":
            return rng.expovariate(1.0 / p[0]) if p[0] > 0 else 0.0
        return rng.lognormvariate(math.log(p[0]), p[1])
