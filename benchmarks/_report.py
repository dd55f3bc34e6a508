"""The markdown report: machine, tables, ratios to the baselines, targets met or missed."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._scenarios import Scenario

__all__ = ["TARGETS", "machine_info", "render"]

Results = dict[str, dict[str, dict[str, Any]]]  # scenario -> client label -> figures
ROOT = Path(__file__).resolve().parent.parent
ASYNC, SYNC = "ours, async", "ours, sync"
ASYNC_AIOHTTP, SYNC_AIOHTTP = "ours, async, aiohttp pool", "ours, sync, aiohttp pool"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "?"
    return out.stdout.strip()


VERSIONED = ("httpx", "httpcore", "h11", "aiohttp", "anyio", "requests", "aiolimiter")
"""The dependencies whose versions the figures depend on (stated in the report)."""


def versions() -> str:
    """``name version`` of each of `VERSIONED` installed, comma-separated."""
    found = []
    for name in VERSIONED:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def machine_info() -> dict[str, str]:
    """Cores, CPU model, Python, dependency versions, OS, date, git commit and the load."""
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "cores": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": versions(),
        "os": platform.platform(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git("rev-parse", "--short", "HEAD")
        + (" (+ uncommitted changes)" if dirty else ""),
        "load": load,
    }


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


Column = tuple[str, Callable[[dict[str, Any]], str]]

COMMON: list[Column] = [
    ("runs", lambda f: _fmt(f["runs"], 0)),
    ("photos ok", lambda f: f"{_fmt(f['ok'], 0)}/{f['photos']}"),
    ("wall s", lambda f: _fmt(f["wall_s"], 1)),
    ("photos/s (wall)", lambda f: _fmt(f["photos_per_s"])),
    ("photos/s (steady)", lambda f: _fmt(f["steady_per_s"])),
    ("creates/s (steady)", lambda f: _fmt(f.get("create_rate"))),
    ("bound", lambda f: _fmt(f["bound"], 0)),
    ("of bound (steady / wall)", lambda f: f"{f['fraction']:.2f} / {f['wall_fraction']:.2f}"),
    ("req/photo", lambda f: _fmt(f["requests_per_photo"])),
    ("429s (median / total)", lambda f: f"{f['rate_limited']:g} / {f['rate_limited_total']}"),
    ("peak req/s", lambda f: _fmt(f["peak_rps"], 0)),
]
CPU: list[Column] = [
    ("client CPU ms/photo", lambda f: _fmt(f["client_cpu_ms"])),
    ("client CPU (cores)", lambda f: _fmt(f["client_util"])),
    ("server CPU ms/photo", lambda f: _fmt(f["server_cpu_ms"])),
    ("server CPU (cores)", lambda f: _fmt(f["server_util"])),
    ("bottleneck", lambda f: bottleneck(f)),
]
MEMORY: list[Column] = [
    ("peak RSS MB", lambda f: _fmt(f["peak_rss_mb"], 0)),
    ("RSS growth MB/1000", lambda f: _fmt(f["rss_growth_mb"])),
]
COLUMNS: dict[str, list[Column]] = {
    "bound": [*COMMON, ("client CPU ms/photo", lambda f: _fmt(f["client_cpu_ms"]))],
    "overhead": [*COMMON, *CPU, ("peak RSS MB", lambda f: _fmt(f["peak_rss_mb"], 0))],
    "connections": [*COMMON, *CPU, ("peak RSS MB", lambda f: _fmt(f["peak_rss_mb"], 0))],
    "memory": [c for c in COMMON if c[0] not in ("bound", "peak req/s")] + MEMORY + CPU[:2],
}


def bottleneck(f: dict[str, Any]) -> str:
    """What limits the run: the QPS bound, the client's CPU, or the server's CPU."""
    if f["fraction"] >= 0.8 or f["api_rps"] >= 0.8 * f["qps"]:
        return "QPS bound"
    if f["client_util"] >= 0.8 and f["client_util"] >= f["server_util"]:
        return "client CPU"
    if f["server_util"] >= 0.8:
        return "server CPU"
    if f["client_util"] + f["server_util"] >= 1.6:
        return "CPU (2 cores shared)"
    return "latency / polling"


def _table(columns: list[Column], rows: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| client | " + " | ".join(name for name, _ in columns) + " |"]
    lines.append("| --- " * (len(columns) + 1) + "|")
    for label, figures in rows.items():
        lines.append(f"| {label} | " + " | ".join(get(figures) for _, get in columns) + " |")
    return lines


def _ratios(rows: dict[str, dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    baselines = {k: v for k, v in rows.items() if k.startswith("baseline")}
    for ours in (ASYNC, SYNC):
        if ours not in rows:
            continue
        mine = rows[ours]
        for label, base in baselines.items():
            speed = mine["steady_per_s"] / base["steady_per_s"] if base["steady_per_s"] else 0
            cpu = base["client_cpu_ms"] / mine["client_cpu_ms"] if mine["client_cpu_ms"] else 0
            rss = base["peak_rss_mb"] / mine["peak_rss_mb"] if mine["peak_rss_mb"] else 0
            lines.append(
                f"- {ours} vs {label}: **{speed:.2f}x** photos/s (steady), "
                f"{mine['requests_per_photo']:.2f} vs {base['requests_per_photo']:.2f} req/photo, "
                f"{cpu:.2f}x less client CPU/photo, {rss:.2f}x less peak RSS"
            )
    return lines


def _get(results: Results, scenario: str, label: str, key: str) -> Any:
    return results.get(scenario, {}).get(label, {}).get(key)


def _target_rows(results: Results) -> list[tuple[str, bool | None, str]]:
    def g(scenario: str, label: str, key: str) -> Any:
        return _get(results, scenario, label, key)

    rows: list[tuple[str, bool | None, str]] = []

    def add(name: str, ok: bool | None, detail: str) -> None:
        rows.append((name, ok, detail))

    sync_f, async_f = g("bound", SYNC, "fraction"), g("bound", ASYNC, "fraction")
    async_r = g("bound", ASYNC, "requests_per_photo")
    add(
        "sync mode >= 0.95 of its bound (2 photos/s)",
        None if sync_f is None else sync_f >= 0.95,
        f"{_fmt(sync_f)} of bound",
    )
    add(
        "async mode >= 0.95 of its bound (1 photo/s) with <= 2.1 req/photo",
        None if async_f is None else async_f >= 0.95 and async_r <= 2.1,
        f"{_fmt(async_f)} of bound, {_fmt(async_r)} req/photo",
    )
    limited = [
        (s, c, f["rate_limited_total"])
        for s, rows_ in results.items()
        for c, f in rows_.items()
        if c.startswith("ours")
    ]
    add(
        "zero 429s for our client in every scenario (every run)",
        None if not limited else all(n == 0 for _, _, n in limited),
        ", ".join(f"{s}/{c.removeprefix('ours, ')}: {_fmt(n, 0)}" for s, c, n in limited),
    )
    base_a = next((k for k in results.get("bound", {}) if k.startswith("baseline (a)")), None)
    for label, factor in ((ASYNC, 1.5), (SYNC, 3.0)):
        mine = g("bound", label, "steady_per_s")
        theirs = g("bound", base_a, "steady_per_s") if base_a else None
        ratio = mine / theirs if mine and theirs else None
        add(
            f"{label}: >= {factor:g}x the photos/s of baseline (a)",
            None if ratio is None else ratio >= factor,
            f"{_fmt(ratio)}x",
        )
    bases = [f for k, f in results.get("bound", {}).items() if k.startswith("baseline")]
    for label in (ASYNC, SYNC):
        mine = g("bound", label, "requests_per_photo")
        fewest = min((f["requests_per_photo"] for f in bases), default=None)
        add(
            f"{label}: fewer req/photo than both baselines",
            None if mine is None or fewest is None or len(bases) < 2 else mine < fewest,
            f"{_fmt(mine)} vs {_fmt(fewest)} (best baseline)",
        )
    base_b = next((k for k in results.get("overhead", {}) if k.startswith("baseline (b)")), None)
    requests_cpu = g("overhead", base_b, "client_cpu_ms") if base_b else None
    for label in (ASYNC, SYNC, ASYNC_AIOHTTP, SYNC_AIOHTTP):
        fraction = g("overhead", label, "fraction")
        limited_here = g("overhead", label, "rate_limited_total")
        add(
            f"{label}: >= 0.95 of its bound at QPS 200 with zero 429s",
            None if fraction is None else fraction >= 0.95 and limited_here == 0,
            f"{_fmt(fraction)} of bound, {_fmt(limited_here, 0)} x 429",
        )
        cpu = g("overhead", label, "client_cpu_ms")
        add(
            f"{label}: client CPU per photo at QPS 200 <= the requests pool's (baseline b)",
            None if cpu is None or requests_cpu is None else cpu <= requests_cpu,
            f"{_fmt(cpu)} vs {_fmt(requests_cpu)} ms/photo",
        )
    for label in (SYNC, SYNC_AIOHTTP):
        held = g("connections", label, "fraction")
        held_cpu = g("connections", label, "client_cpu_ms")
        add(
            f"{label} with hundreds of connections (QPS 200, lognormal 3 s): >= 0.95 of its "
            "bound, CPU <= the requests pool's",
            None
            if held is None or held_cpu is None or requests_cpu is None
            else held >= 0.95 and held_cpu <= requests_cpu,
            f"{_fmt(held)} of bound, {_fmt(held_cpu)} ms/photo",
        )
    rss, growth = g("memory", ASYNC, "peak_rss_mb"), g("memory", ASYNC, "rss_growth_mb")
    n = g("memory", ASYNC, "photos")
    add(
        "peak RSS of the 10 000-input run <= 150 MB, flat after warm-up (<= 1 MB/1000)",
        None if rss is None or n != 10_000 else rss <= 150 and growth is not None and growth <= 1,
        f"{_fmt(rss, 0)} MB peak, {_fmt(growth)} MB/1000 inputs ({_fmt(n, 0)} inputs)",
    )
    return rows


def paired_cpu(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Scenario 2's client CPU per photo over baseline (b)'s, repetition by repetition.

    The clients of a repetition run one after the other, so a machine that drifts between
    repetitions moves ours and the baseline's alike: each repetition's ratio is steadier
    than the ratio of medians taken separately (the target row above).
    """
    base = next((k for k in runs if k.startswith("baseline (b)")), None)
    if base is None:
        return []
    yardstick = [f["client_cpu_ms"] for f in runs[base]]
    out = [
        "CPU per photo over baseline (b)'s, repetition by repetition (each pair run minutes "
        "apart, in one repetition):",
        "",
        "| client | " + " | ".join(f"rep {i + 1}" for i in range(len(yardstick))) + " | median |",
        "| --- |" + " --- |" * (len(yardstick) + 1),
    ]
    for label in (ASYNC, SYNC, ASYNC_AIOHTTP, SYNC_AIOHTTP):
        mine = [f["client_cpu_ms"] for f in runs.get(label, [])]
        ratios = [m / b for m, b in zip(mine, yardstick, strict=False) if b]
        if not ratios:
            continue
        cells = [
            f"{r:.2f} ({m:.2f}/{b:.2f})" for r, m, b in zip(ratios, mine, yardstick, strict=False)
        ]
        out.append(f"| {label} | " + " | ".join(cells) + f" | {statistics.median(ratios):.2f} |")
    return out


TARGETS = _target_rows


def render(
    results: Results,
    scenarios: dict[str, Scenario],
    machine: dict[str, str],
    *,
    repeat: int,
    elapsed: float,
    load_after: str,
    engine_line: list[str] | None = None,
    floor_line: list[str] | None = None,
    analysis: str | None = None,
    runs: dict[str, dict[str, list[dict[str, Any]]]] | None = None,
) -> str:
    """The whole report as markdown (``runs``: every run's figures, by scenario and label)."""
    out = [
        "# Benchmark results",
        "",
        f"Generated by `python -m benchmarks` on {machine['date']}, commit `{machine['commit']}`.",
        "",
        f"- Machine: {machine['cores']} cores, {machine['cpu']}; {machine['os']}",
        f"- Python: {machine['python']}; {machine.get('versions', '(versions not recorded)')}",
        f"- Load average (1, 5, 15 min) before: {machine['load']}; after: {load_after} (a load "
        f"above the {machine['cores']} cores means other work shared the machine: compare rows "
        "of one run, not figures of different runs)",
        f"- Repetitions: median of {repeat} for our client in scenarios 1-2 and for baseline "
        f"(b) in scenario 2 (the CPU yardstick); 1 for the other baselines and scenario 3 "
        f"(column `runs`); imports are done before each run's clock starts; total time "
        f"{elapsed / 60:.1f} min",
        "- Server: `python -m idphoto_async.server --engine basic --seed 1` as its own uvicorn "
        "process on loopback, fresh for every run; each client runs in its own subprocess.",
        "- Garbage collector: the server runs with `idphoto serve`'s settings, every client "
        "(the baselines too) with `idphoto batch`'s (`idphoto_async._gc_settings`: start-up "
        "objects frozen; thresholds (700, 2, 1000) and (7000, 10, 10)).",
        "",
        "Photos/s (steady) is the completion rate with the pipeline full (least squares "
        "over the completions from the 10th percentile one to the 90th, none after the "
        "server saw the last create): without the fill and the drain, where the photos "
        "still in flight need only their queries and finish faster than the bound allows "
        "in the long run; creates/s (steady) is the rate the server took creates at, "
        "from its 10th-percentile create to its 90th; in 2b, whose processing times spread "
        "over seconds (the completions still ramp up when the last create leaves), "
        "of bound is creates/s (steady) x photos ok / photos over the bound; photos/s (wall) is "
        "photos / wall time. Bound = QPS / (1 request per photo in sync mode, 2 otherwise). "
        "Req/photo and 429s come from the server's stats; client CPU is user + sys of the "
        "client process during the run.",
    ]
    for name, rows in results.items():
        scenario = scenarios[name]
        out += ["", f"## {scenario.title}", ""]
        out += _table(COLUMNS.get(name, COMMON), rows)
        ratios = _ratios(rows)
        if ratios:
            out += ["", *ratios]
        paired = paired_cpu(runs.get(name, {})) if runs and name == "overhead" else []
        if paired:
            out += ["", *paired]
    if engine_line:
        out += ["", "## Local engine throughput (`benchmarks/engine_throughput.py`)", ""]
        out += engine_line
    if floor_line:
        out += ["", "## Client CPU per HTTP request (`benchmarks/http_floor.py`)", ""]
        out += floor_line
    out += ["", "## Targets", "", "| target | result | figure |", "| --- | --- | --- |"]
    for target, ok, detail in _target_rows(results):
        verdict = "not run" if ok is None else ("**met**" if ok else "**missed**")
        out.append(f"| {target} | {verdict} | {detail} |")
    if analysis:
        out += ["", analysis.strip()]
    return "\n".join(out) + "\n"
