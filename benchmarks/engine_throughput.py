"""Local-engine throughput (photos/s, one thread) and peak RSS; prints one markdown row.

Usage: ``python benchmarks/engine_throughput.py [--photos N] [--size 413x531] [--format jpg]``
Inputs are the files in ``samples/`` (cycled); the first photo (model loading) is timed apart.
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
    parser.add_argument("--size", default="413x531")
    parser.add_argument("--format", choices=("png", "jpg"), default="jpg")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    inputs = [p.read_bytes() for p in sorted(SAMPLES.glob("0*"))]
    engine = LocalEngine()

    start = time.perf_counter()
    engine.process(EngineRequest(inputs[0], (width, height), args.format))
    first = time.perf_counter() - start

    start = time.perf_counter()
    for i in range(args.photos):
        engine.process(EngineRequest(inputs[i % len(inputs)], (width, height), args.format))
    elapsed = time.perf_counter() - start

    # VmHWM, not ru_maxrss: on Linux a child keeps its parent's high-water mark in ru_maxrss.
    peak = _peak_rss_bytes()
    if peak is not None:
        rss_mb = peak / 2**20
    else:
        rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        rss_mb = rss_kb / (1024 * 1024) if sys.platform == "darwin" else rss_kb / 1024
    print("| engine | size | format | photos | photos/s (1 thread) | ms/photo | first | peak RSS |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| local ({platform.machine()}) | {args.size} | {args.format} | {args.photos} "
        f"| {args.photos / elapsed:.1f} | {1000 * elapsed / args.photos:.0f} "
        f"| {first * 1000:.0f} ms | {rss_mb:.0f} MB |"
    )


if __name__ == "__main__":
    main()
