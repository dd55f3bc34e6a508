"""One client run in its own process: ``python -m benchmarks._runner '<json spec>'``.

Prints one JSON line: photos ok/failed, wall time, the CPU time (user + sys) and peak RSS of
this process during the run, completion times and RSS samples. Every client (ours and the
baselines) runs with the garbage-collector settings of ``idphoto batch``
(`idphoto_async._gc_settings.BATCH_THRESHOLDS`).
"""

from __future__ import annotations

import importlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ._inputs import input_paths
from ._progress import Progress, RssSampler

__all__ = ["main", "run_client_process"]

ROOT = Path(__file__).resolve().parent.parent


PRELOADED = {
    "ours": ("benchmarks._ours",),
    "ours-one-pool": ("benchmarks._ours",),
    "ours-aiohttp": ("benchmarks._ours", "aiohttp"),  # the client imports it on first use
    "gather": ("benchmarks._baseline_gather",),
    "threads": ("benchmarks._baseline_threads",),
}
"""What each client imports before its run's clock starts: its own module (and with it its
libraries), not the other clients' (a library loaded and unused would count in its peak
RSS; `main` loads ``idphoto_async`` for every client, for its collector settings)."""


def peak_rss_bytes(pid: int | str = "self") -> int | None:
    """The process's own RSS high-water mark (``VmHWM`` in /proc/<pid>/status), or None.

    Not ``getrusage().ru_maxrss``: on Linux a child keeps the high-water mark of the process
    it was forked from, so a small client forked by a big parent reports the parent's peak.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # kB
    return None


def _run(spec: dict[str, Any], progress: Progress) -> None:
    inputs = input_paths(Path(spec["inputs"]), spec["n"])
    out_dir = Path(spec["out_dir"])
    client = spec["client"]
    if client in ("ours", "ours-one-pool", "ours-aiohttp"):
        from ._ours import run_ours

        run_ours(
            spec["base_url"],
            inputs,
            out_dir,
            progress,
            mode=spec["mode"],
            qps=spec["qps"],
            concurrency=spec.get("concurrency"),
            one_pool=client == "ours-one-pool",
            http_backend="aiohttp" if client == "ours-aiohttp" else "httpx",
        )
    elif client == "gather":
        from ._baseline_gather import run_gather

        run_gather(
            spec["base_url"],
            inputs,
            out_dir,
            progress,
            qps=spec["qps"],
            concurrency=spec.get("concurrency") or 16,
        )
    elif client == "threads":
        from ._baseline_threads import run_threads

        run_threads(
            spec["base_url"], inputs, out_dir, progress, threads=spec.get("concurrency") or 4
        )
    else:
        raise ValueError(f"unknown client {client!r}")


def main() -> None:
    spec = json.loads(sys.argv[1])
    # Import what the client needs before the clock starts (not part of the run's cost),
    # ours and the baselines alike: before, aiohttp (0.15 s) and requests (0.06 s) were
    # imported inside the clock, 0.08 and 0.03 ms per photo of a 2 000-photo run.
    for module in PRELOADED.get(spec["client"], ()):  # unknown: `_run` says so
        importlib.import_module(module)
    from idphoto_async._gc_settings import BATCH_THRESHOLDS, collector_settings

    with collector_settings(BATCH_THRESHOLDS):  # as `idphoto batch` runs, for every client
        _measure(spec)


def _measure(spec: dict[str, Any]) -> None:
    progress = Progress()
    sampler = RssSampler(progress, interval=spec.get("rss_interval", 0.1))
    before = resource.getrusage(resource.RUSAGE_SELF)
    progress.start = time.perf_counter()
    start_monotonic = time.monotonic()
    sampler.start()
    profile = spec.get("profile")
    if profile and profile.endswith(".pstats"):  # cProfile, main thread CPU time (diagnosis)
        import cProfile

        with cProfile.Profile(time.thread_time) as cprofiler:
            _run(spec, progress)
        cprofiler.dump_stats(profile)
    elif profile:  # pyinstrument text profile of the run (for diagnosis, not timings)
        from pyinstrument import Profiler

        with Profiler(async_mode="disabled") as profiler:
            _run(spec, progress)
        Path(profile).write_text(profiler.output_text(unicode=True, show_all=True))
    else:
        _run(spec, progress)
    wall = time.perf_counter() - progress.start
    after = resource.getrusage(resource.RUSAGE_SELF)
    sampler.stop()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result = {
        "ok": progress.ok,
        "failed": progress.failed,
        "wall": wall,
        "cpu": cpu,
        "peak_rss": max(peak_rss_bytes() or 0, max(r for _, r in sampler.samples)),
        "times": progress.times,
        "start_monotonic": start_monotonic,
        "rss": sampler.samples,
    }
    print(json.dumps(result))


def run_client_process(spec: dict[str, Any], timeout: float = 1800.0) -> dict[str, Any]:
    """Run one client in a subprocess; return its JSON result."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks._runner", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"client {spec['client']} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    main()
