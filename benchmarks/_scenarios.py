"""The scenarios, one run of a client against a fresh server, and the figures of a run."""

from __future__ import annotations

import bisect
import math
import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ._runner import run_client_process
from ._server import ServerProcess

__all__ = [
    "DEFAULT_SCENARIOS",
    "ClientSpec",
    "Scenario",
    "measure",
    "run_scenario",
    "scenarios",
]

DEFAULT_SCENARIOS = ("bound", "overhead", "connections", "memory")
"""What a plain run does (every scenario)."""

Figures = dict[str, Any]


@dataclass(frozen=True)
class ClientSpec:
    """One client of a scenario; ``n`` overrides the scenario's photo count."""

    label: str
    client: str  # ours | ours-one-pool | ours-aiohttp | gather | threads
    mode: str = "async"
    concurrency: int | None = None
    n: int | None = None
    max_repeat: int | None = None
    """Cap on repetitions (slow baselines)."""

    @property
    def min_requests(self) -> int:
        """Fewest API requests per photo: 1 in sync mode, create + one query otherwise."""
        return 1 if self.mode == "sync" else 2


@dataclass(frozen=True)
class Scenario:
    """Photos, server settings and clients; ``repeat`` caps the repetitions (long runs)."""

    name: str
    title: str
    n: int
    qps: float
    processing: str
    clients: tuple[ClientSpec, ...]
    max_repeat: int | None = None
    by_creates: bool = False
    """Measure the bound by the rate creates arrived at (see `measure`), not completions."""

    def server_config(self) -> dict[str, Any]:
        """`ServerConfig` fields of the scenario's server (engine ``basic``, seed 1)."""
        return {"qps": self.qps, "processing_time": self.processing, "seed": 1}


OURS_ASYNC = ClientSpec("ours, async", "ours", "async")
OURS_SYNC = ClientSpec("ours, sync", "ours", "sync")
OURS_ASYNC_AIOHTTP = ClientSpec("ours, async, aiohttp pool", "ours-aiohttp", "async")
OURS_SYNC_AIOHTTP = ClientSpec("ours, sync, aiohttp pool", "ours-aiohttp", "sync")


def scenarios(size: str = "full") -> dict[str, Scenario]:
    """The scenarios at ``size``: ``full``, ``quick`` (small) or ``tiny`` (smoke test)."""
    n1, n2, n3 = {"full": (60, 2000, 10_000), "quick": (10, 200, 1000), "tiny": (4, 4, 4)}[size]
    in_flight = 4 if size == "tiny" else 1000
    tiny = size == "tiny"
    return {
        "bound": Scenario(
            "bound",
            f"1. Throughput at the bound: {n1} photos, QPS 2, processing lognormal:3,0.6",
            n1,
            100.0 if tiny else 2.0,
            "fixed:0" if tiny else "lognormal:3,0.6",
            (
                OURS_ASYNC,
                OURS_SYNC,
                ClientSpec(
                    "baseline (a) gather+aiolimiter, poll 1 s",
                    "gather",
                    concurrency=16,
                    max_repeat=1,
                ),
                ClientSpec(
                    "baseline (b) 4 threads, requests, poll 2 s",
                    "threads",
                    concurrency=4,
                    max_repeat=1,
                ),
            ),
        ),
        "overhead": Scenario(
            "overhead",
            f"2. Client overhead at scale: {n2} photos, QPS 200, processing fixed:0.2",
            n2,
            200.0,
            "fixed:0" if tiny else "fixed:0.2",
            (
                OURS_ASYNC,
                OURS_SYNC,
                OURS_ASYNC_AIOHTTP,
                OURS_SYNC_AIOHTTP,
                ClientSpec(
                    "baseline (a) gather+aiolimiter, poll 1 s",
                    "gather",
                    concurrency=256,
                    max_repeat=1,
                ),
                ClientSpec(  # the CPU yardstick: as many runs as ours (a median)
                    "baseline (b) 128 threads, requests, poll 2 s",
                    "threads",
                    concurrency=128,
                ),
            ),
        ),
        "connections": Scenario(
            "connections",
            f"2b. Hundreds of connections: {n2} photos in sync mode, QPS 200, processing "
            "lognormal:3,0.6",
            n2,
            200.0,
            "fixed:0" if tiny else "lognormal:3,0.6",
            (
                ClientSpec("ours, sync", "ours", "sync", concurrency=in_flight),
                ClientSpec(
                    "ours, sync, aiohttp pool", "ours-aiohttp", "sync", concurrency=in_flight
                ),
                ClientSpec(
                    "ours, sync, one httpx pool (before)",
                    "ours-one-pool",
                    "sync",
                    concurrency=in_flight,
                    n=None if size == "tiny" else n2 * 2 // 5,  # slow: fewer photos
                    max_repeat=1,
                ),
            ),
            by_creates=True,
        ),
        "memory": Scenario(
            "memory",
            f"3. Memory: {n3} inputs, QPS 1000, processing fixed:0",
            n3,
            1000.0,
            "fixed:0",
            (
                OURS_ASYNC,
                ClientSpec("baseline (a) gather+aiolimiter, poll 1 s", "gather", concurrency=256),
            ),
            max_repeat=1,
        ),
    }


def run_once(
    scenario: Scenario,
    spec: ClientSpec,
    inputs_dir: Path,
    work_dir: Path,
    tag: str,
    profile: Path | None = None,
) -> Figures:
    """One client run against a fresh server; the figures of :func:`measure`."""
    n = spec.n or scenario.n
    out_dir = work_dir / f"out-{scenario.name}-{spec.client}-{spec.mode}-{tag}"
    with ServerProcess(**scenario.server_config()) as server:
        cpu_before = server.cpu_seconds()
        result = run_client_process(
            {
                "client": spec.client,
                "mode": spec.mode,
                "base_url": server.base_url,
                "inputs": str(inputs_dir),
                "n": n,
                "out_dir": str(out_dir),
                "qps": scenario.qps,
                "concurrency": spec.concurrency,
                "profile": None if profile is None else str(profile),
            }
        )
        server_cpu = server.cpu_seconds() - cpu_before
        stats = server.stats()
    shutil.rmtree(out_dir, ignore_errors=True)
    return measure(scenario, spec, n, result, stats, server_cpu)


def measure(
    scenario: Scenario,
    spec: ClientSpec,
    n: int,
    result: dict[str, Any],
    stats: dict[str, Any],
    server_cpu: float,
) -> Figures:
    """Figures of one run from the client's result and the server's stats."""
    ok = max(1, result["ok"])
    wall = result["wall"]
    requests = stats["requests"]
    api_requests = requests.get("create", 0) + requests.get("query", 0)
    bound = scenario.qps / spec.min_requests
    steady = steady_rate(sorted(result["times"]), wall, until=last_create(result, stats))
    create_rate = stats.get("steady_arrival_rate", {}).get("create")
    # With processing times spread over seconds (2b), the completions still ramp up when
    # the last create leaves: the rate the server took creates at (every photo done) is the
    # rate the client kept up.
    kept = create_rate * result["ok"] / n if scenario.by_creates and create_rate else steady
    return {
        "photos": n,
        "ok": result["ok"],
        "failed": result["failed"],
        "wall_s": wall,
        "photos_per_s": result["ok"] / wall,
        "steady_per_s": steady,
        "qps": scenario.qps,
        "bound": bound,
        "create_rate": create_rate,
        "fraction": kept / bound,
        "wall_fraction": result["ok"] / wall / bound,
        "requests_per_photo": api_requests / ok,
        "queries_per_photo": requests.get("query", 0) / ok,
        "rate_limited": stats["rate_limited"],
        "peak_rps": stats["peak_requests_per_second"],
        "client_cpu_ms": 1000 * result["cpu"] / ok,
        "client_util": result["cpu"] / wall,
        "server_cpu_ms": 1000 * server_cpu / ok,
        "server_util": server_cpu / wall,
        "api_rps": api_requests / wall,
        "peak_rss_mb": result["peak_rss"] / 2**20,
        "rss_growth_mb": rss_growth(result["rss"], n),
    }


def last_create(result: dict[str, Any], stats: dict[str, Any]) -> float | None:
    """When the server saw the run's last create, in seconds since the client started.

    Both processes read the same monotonic clock; the server's is shifted by its offset.
    """
    span = stats.get("arrival_span", {}).get("create")
    start = result.get("start_monotonic")
    if span is None or start is None:
        return None
    return float(span["last"] - stats.get("clock_offset", 0.0) - start)


def steady_rate(times: list[float], wall: float, until: float | None = None) -> float:
    """Photos/s with the pipeline full: least squares over the completions from the 10th
    percentile one to the 90th, and none after ``until`` (the last create).

    That leaves out the fill (nothing done yet) and the drain: once every input is created,
    the photos still in flight need only their status queries, so they finish faster than
    the bound allows in the long run (up to QPS photos/s in async mode).
    """
    n = len(times)
    if n < 10:
        return n / wall if wall > 0 else 0.0
    lo, hi = math.floor(0.1 * n), math.ceil(0.9 * n) - 1
    if until is not None:
        hi = min(hi, bisect.bisect_right(times, until) - 1)
        if hi - lo < 4:  # too few completions before the drain: no steady phase to fit
            return n / wall if wall > 0 else 0.0
    slope = _slope([float(i) for i in range(lo, hi + 1)], times[lo : hi + 1])
    time_per_photo = slope if slope else 0.0
    return 1.0 / time_per_photo if time_per_photo > 0 else n / wall


def _slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ys over xs."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def rss_growth(samples: list[list[int]], n: int) -> float | None:
    """MB of RSS per 1 000 photos done, least squares after warm-up (20 % of the inputs)."""
    points = [(d, r) for d, r in samples if 0.2 * n <= d < n]
    if len(points) < 5 or n < 1000:
        return None
    slope = _slope([float(d) for d, _ in points], [r / 2**20 for _, r in points])
    return None if slope is None else 1000 * slope


def median_figures(runs: list[Figures]) -> Figures:
    """Median of each figure over repetitions (None where any run has None).

    429s are also summed over the runs (``rate_limited_total``): one refused request in any
    run counts.
    """
    merged: Figures = {"runs": len(runs)}
    for key in runs[0]:
        values = [r[key] for r in runs]
        merged[key] = None if any(v is None for v in values) else statistics.median(values)
    merged["rate_limited_total"] = sum(r["rate_limited"] for r in runs)
    return merged


def run_scenario(
    scenario: Scenario,
    repeat: int,
    inputs_dir: Path,
    work_dir: Path,
    log: Callable[[str], None] = print,
    raw: dict[str, list[Figures]] | None = None,
) -> dict[str, Figures]:
    """Each client ``repeat`` times (interleaved), median figures by client label.

    ``raw``, if given, receives every run's figures by client label.
    """
    reps = min(repeat, scenario.max_repeat or repeat)
    runs: dict[str, list[Figures]] = {spec.label: [] for spec in scenario.clients}
    for rep in range(reps):
        for spec in scenario.clients:
            if spec.max_repeat is not None and rep >= spec.max_repeat:
                continue
            figures = run_once(scenario, spec, inputs_dir, work_dir, str(rep))
            runs[spec.label].append(figures)
            log(
                f"  [{scenario.name} {rep + 1}/{reps}] {spec.label}: "
                f"{figures['ok']}/{figures['photos']} ok in {figures['wall_s']:.1f} s, "
                f"{figures['steady_per_s']:.2f} photos/s, "
                f"{figures['requests_per_photo']:.2f} req/photo, "
                f"{figures['rate_limited']} x 429, cpu {figures['client_cpu_ms']:.2f} ms/photo, "
                f"peak rss {figures['peak_rss_mb']:.0f} MB"
            )
    if raw is not None:
        raw.update(runs)
    return {label: median_figures(r) for label, r in runs.items()}


def with_size(scenario: Scenario, n: int) -> Scenario:
    """``scenario`` with another photo count."""
    return replace(scenario, n=n)
