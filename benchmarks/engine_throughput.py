"""Local-engine throughput (photos/s), CPU per photo and peak RSS; one markdown row.

Usage: ``python benchmarks/engine_throughput.py [--photos N] [--threads T] [--processes P]
[--size 295x413] [--format jpg]``. Inputs are the files in ``samples/`` (cycled); the first
photo (model loading) is timed apart. ``--threads`` runs that many engine threads at once, as
the local server's thread pool does; ``--processes`` runs the engine in that many worker
processes fed by two threads each, as ``idphoto batch --local`` does (one per core; their CPU
time is counted, their start-up is not). For the whole CLI run see
``benchmarks/cli_throughput.py``.
CPU time per photo is reported beside wall time: on a shared machine wall time also counts
the time other processes hold the cores; the load average is printed with the row.

What bounds it (py-spy and per-stage thread time on the samples, 295x413 JPG; see
benchmarks/ENGINE.md for the figures): about a third is the four or five model runs
(short-range detector, two face-mesh passes, selfie segmentation; the full-range detector
only for small faces), a third the cut-out on the output frame (colour guided filter at half
size, the decontamination's local means sampled on the edge band), the rest the warps,
decoding and encoding. Through the CLI, the in-process server and HTTP add CPU per photo and
the engine threads hold the GIL about half the time between native calls.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import threading
import time
from pathlib import Path

from idphoto_async.engine import EngineRequest, OutputFormat
from idphoto_async.engine._local import LocalEngine

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def _peak_rss_bytes() -> int | None:
    """This process's RSS high-water mark from /proc/self/status (``VmHWM``), or None."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--processes", type=int, default=0)
    parser.add_argument("--size", default="295x413")
    parser.add_argument("--format", choices=("png", "jpg"), default="jpg")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    inputs = [p.read_bytes() for p in sorted(SAMPLES.glob("0*"))]
    if args.processes:
        _processes(args.processes, args.photos, inputs, (width, height), args.format)
        return
    engine = LocalEngine()

    start = time.perf_counter()
    engine.process(EngineRequest(inputs[0], (width, height), args.format))
    first = time.perf_counter() - start

    def work(offset: int, count: int) -> None:
        engine.process(EngineRequest(inputs[0], (width, height), args.format))  # its models
        ready.wait()
        for i in range(offset, offset + count):
            engine.process(EngineRequest(inputs[i % len(inputs)], (width, height), args.format))

    threads = max(1, args.threads)
    share = args.photos // threads
    ready = threading.Barrier(threads + 1)
    workers = [threading.Thread(target=work, args=(k * share, share)) for k in range(threads)]
    for worker in workers:
        worker.start()
    ready.wait()
    start, cpu = time.perf_counter(), time.process_time()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start
    photos = share * threads
    cpu_ms = 1000 * (time.process_time() - cpu) / photos

    # VmHWM, not ru_maxrss: on Linux a child keeps its parent's high-water mark in ru_maxrss.
    peak = _peak_rss_bytes()
    if peak is not None:
        rss_mb = peak / 2**20
    else:
        rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        rss_mb = rss_kb / (1024 * 1024) if sys.platform == "darwin" else rss_kb / 1024
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        "| engine | size | format | photos | threads | photos/s | CPU ms/photo "
        "| first | peak RSS | load avg |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| local ({platform.machine()}) | {args.size} | {args.format} | {photos} | {threads} "
        f"| {photos / elapsed:.1f} | {cpu_ms:.0f} | {first * 1000:.0f} ms | {rss_mb:.0f} MB "
        f"| {load:.2f} |"
    )


def _processes(
    processes: int, photos: int, inputs: list[bytes], size: tuple[int, int], fmt: OutputFormat
) -> None:
    """The engine in ``processes`` worker processes (`ProcessEngine`), two feeder threads each."""
    from concurrent.futures import ThreadPoolExecutor

    from idphoto_async.engine._pool import ProcessEngine

    requests = [EngineRequest(inputs[i % len(inputs)], size, fmt) for i in range(photos)]
    with ProcessEngine("local", processes) as pool:
        before = os.times()
        start = time.perf_counter()
        with ThreadPoolExecutor(2 * processes) as feeders:
            list(feeders.map(pool.process, requests))
        elapsed = time.perf_counter() - start
    # Worker CPU is counted once they exit (after the pool's close), start-up included.
    after = os.times()
    cpu = sum(after[:4]) - sum(before[:4])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print("| engine | size | format | photos | processes | photos/s | CPU ms/photo | load avg |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| local ({platform.machine()}) | {size[0]}x{size[1]} | {fmt} | {photos} | {processes} "
        f"| {photos / elapsed:.1f} | {1000 * cpu / photos:.0f} (incl. start-up) "
        f"| {load:.2f} |"
    )


if __name__ == "__main__":
    main()
