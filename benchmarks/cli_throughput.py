"""The whole ``idphoto batch --local`` run: photos/s, CPU ms/photo and peak RSS; markdown rows.

Usage: ``python benchmarks/cli_throughput.py [--photos 120] [--rounds 3] [-- EXTRA CLI ARGS]``,
e.g. ``-- --mode sync``. Inputs are the ``samples/`` copied to ``--photos`` files; each round
runs ``idphoto batch IN -o OUT --local --size 295x413 --format jpg --no-progress`` in a fresh
process (start-up and model loading included once) into an empty OUT.

Per round: photos/s over the whole process (wall clock, start-up included) and as the CLI's
summary line says (from its first request); CPU ms/photo is user+sys of the CLI and its
engine worker processes (``wait4``), start-up included; peak RSS is the resident memory of
the CLI and its engine workers summed (sampled every 50 ms). The load average is printed
with each row: on a shared machine wall clock also counts the time other processes hold the
cores, CPU time much less so.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SUMMARY = re.compile(r"\(([\d.]+) photos/s")


def make_inputs(folder: Path, photos: int) -> None:
    """``photos`` files cycled from the samples (distinct names, so each is made)."""
    samples = sorted(SAMPLES.glob("0*"))
    for i in range(photos):
        source = samples[i % len(samples)]
        shutil.copyfile(source, folder / f"{i:05d}-{source.name}")


def _tree_rss(pid: int) -> int:
    """Bytes resident in ``pid`` and its children now (Linux /proc; 0 elsewhere)."""
    total = 0
    try:
        children = [
            int(c)
            for task in Path(f"/proc/{pid}/task").iterdir()
            for c in (task / "children").read_text().split()
        ]
        for one in [pid, *children]:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return total


def run_once(inputs: Path, out: Path, extra: list[str]) -> tuple[float, float, float, float]:
    """One CLI run: (wall photos/s, summary photos/s, CPU seconds, peak RSS MB)."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "idphoto_async.cli", "batch", str(inputs), "-o", str(out)]
    command += ["--local", "--size", "295x413", "--format", "jpg", "--no-progress", *extra]
    start = time.perf_counter()
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as cli:
        peak = 0
        while True:  # the summed RSS of the CLI and its engine workers, sampled
            peak = max(peak, _tree_rss(cli.pid))
            pid, status, usage = os.wait4(cli.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.05)
        wall = time.perf_counter() - start
        cli.returncode = os.waitstatus_to_exitcode(status)
        stdout, stderr = cli.communicate()
    if cli.returncode != 0:
        raise SystemExit(f"the CLI failed ({cli.returncode}):\n{stdout}\n{stderr}")
    match = SUMMARY.search(stdout)
    photos = len(list(inputs.iterdir()))
    cpu = usage.ru_utime + usage.ru_stime
    return photos / wall, float(match.group(1)) if match else 0.0, cpu, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("extra", nargs="*", help="more idphoto batch arguments (after --)")
    args = parser.parse_args()
    print("| CLI args | photos | photos/s (whole run) | photos/s (summary) | CPU ms/photo "
          "| peak RSS | load avg |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        inputs, out = Path(tmp) / "in", Path(tmp) / "out"
        inputs.mkdir()
        make_inputs(inputs, args.photos)
        for _ in range(args.rounds):
            load = os.getloadavg()[0]
            wall, summary, cpu, rss = run_once(inputs, out, args.extra)
            print(
                f"| {' '.join(args.extra) or '(default)'} | {args.photos} | {wall:.1f} "
                f"| {summary:.1f} | {1000 * cpu / args.photos:.0f} | {rss:.0f} MB "
                f"| {load:.2f}-{os.getloadavg()[0]:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
