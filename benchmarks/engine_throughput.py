"""Local-engine throughput (photos/s, one thread), CPU per photo and peak RSS; one markdown row.

Usage: ``python benchmarks/engine_throughput.py [--photos N] [--size 295x413] [--format jpg]``
Inputs are the files in ``samples/`` (cycled); the first photo (model loading) is timed apart.
CPU time per photo is reported beside wall time: on a shared machine wall time also counts
the time other processes hold the cores. One thread uses one core; ``idphoto batch --local``
runs one engine thread per core, so its ceiling is about cores x 1000 / (CPU ms per photo).

What bounds it (profiled with cProfile on the samples, 295x413 JPG): five model
inferences per photo (short-range detector, two face-mesh passes, selfie segmentation, and
the full-range detector only for small faces) and the numpy work on the output frame (colour
guided filter on a half-size copy, the decontamination's local colour means, the 3x3 solves);
decoding the source JPEG and encoding the result come next.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
from pathlib import Path

from idphoto_async.engine import EngineRequest
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
    parser.add_argument("--size", default="295x413")
    parser.add_argument("--format", choices=("png", "jpg"), default="jpg")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    inputs = [p.read_bytes() for p in sorted(SAMPLES.glob("0*"))]
    engine = LocalEngine()

    start = time.perf_counter()
    engine.process(EngineRequest(inputs[0], (width, height), args.format))
    first = time.perf_counter() - start

    start, cpu = time.perf_counter(), time.process_time()
    for i in range(args.photos):
        engine.process(EngineRequest(inputs[i % len(inputs)], (width, height), args.format))
    elapsed = time.perf_counter() - start
    cpu_ms = 1000 * (time.process_time() - cpu) / args.photos

    # VmHWM, not ru_maxrss: on Linux a child keeps its parent's high-water mark in ru_maxrss.
    peak = _peak_rss_bytes()
    if peak is not None:
        rss_mb = peak / 2**20
    else:
        rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        rss_mb = rss_kb / (1024 * 1024) if sys.platform == "darwin" else rss_kb / 1024
    print(
        "| engine | size | format | photos | photos/s (1 thread) | ms/photo | CPU ms/photo "
        "| first | peak RSS |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| local ({platform.machine()}) | {args.size} | {args.format} | {args.photos} "
        f"| {args.photos / elapsed:.1f} | {1000 * elapsed / args.photos:.0f} | {cpu_ms:.0f} "
        f"| {first * 1000:.0f} ms | {rss_mb:.0f} MB |"
    )


if __name__ == "__main__":
    main()
