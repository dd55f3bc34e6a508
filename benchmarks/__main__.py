"""``python -m benchmarks [--quick] [--scenario NAME] [--repeat N]``: run, print, write."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._inputs import make_inputs
from ._report import machine_info, render
from ._scenarios import DEFAULT_SCENARIOS, run_scenario, scenarios

HERE = Path(__file__).resolve().parent


def script_table(script: str, *args: str) -> list[str]:
    """The markdown table printed by ``benchmarks/<script>``, run in its own process."""
    proc = subprocess.run(
        [sys.executable, str(HERE / script), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=HERE.parent,
        timeout=600,
    )
    if proc.returncode != 0:
        return [f"({script} failed: {proc.stderr.strip().splitlines()[-1:]})"]
    return [line for line in proc.stdout.splitlines() if line.startswith("|")]


def engine_line(photos: int = 20) -> list[str] | None:
    """The table of ``engine_throughput.py`` if the local engine is installed, else None."""
    from idphoto_async.engine import local_engine_available

    if not local_engine_available():
        return None
    return script_table("engine_throughput.py", "--photos", str(photos))


def floor_line(requests: int = 300) -> list[str]:
    """The table of ``http_floor.py``: client CPU per request, one at a time."""
    return script_table("http_floor.py", "--requests", str(requests))


def rerender(dump_path: Path, output: Path) -> int:
    """Write the report of an earlier run from its JSON dump (with today's ANALYSIS.md)."""
    dump = json.loads(dump_path.read_text())
    analysis_file = HERE / "ANALYSIS.md"
    report = render(
        dump["medians"],
        scenarios(dump.get("size", "full")),
        dump["machine"],
        repeat=dump.get("repeat", 3),
        elapsed=dump.get("elapsed", 0.0),
        load_after=dump.get("load_after", "?"),
        engine_line=dump.get("engine_line"),
        floor_line=dump.get("floor_line"),
        analysis=analysis_file.read_text() if analysis_file.exists() else None,
        runs=dump.get("runs"),
    )
    output.write_text(report)
    print(report)
    return 0


def main(argv: list[str] | None = None) -> int:
    all_names = list(scenarios())
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repetition")
    parser.add_argument(
        "--scenario", action="append", choices=all_names, help="run only these (repeatable)"
    )
    parser.add_argument("--repeat", type=int, default=None, help="repetitions (default 3)")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="markdown file to write (default: benchmarks/RESULTS.md, none with --quick)",
    )
    parser.add_argument("--no-engine", action="store_true", help="skip engine_throughput.py")
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="re-render the report from a RESULTS.json dump (e.g. after editing ANALYSIS.md)",
    )
    args = parser.parse_args(argv)
    if args.from_json is not None:
        return rerender(args.from_json, args.output or args.from_json.with_suffix(".md"))
    repeat = args.repeat or (1 if args.quick else 3)
    chosen = scenarios("quick" if args.quick else "full")
    names = args.scenario or DEFAULT_SCENARIOS
    output = args.output or (None if args.quick else HERE / "RESULTS.md")

    machine = machine_info()
    print(f"machine: {machine}", flush=True)
    start = time.perf_counter()
    results = {}
    raw: dict[str, dict[str, list[dict[str, object]]]] = {}
    with tempfile.TemporaryDirectory(prefix="idphoto-bench-") as tmp:
        work = Path(tmp)
        size = max(s.n for s in chosen.values())
        inputs = work / "inputs"
        make_inputs(inputs, size)
        for name in names:
            print(f"scenario {chosen[name].title}", flush=True)
            raw[name] = {}
            results[name] = run_scenario(
                chosen[name],
                repeat,
                inputs,
                work,
                log=lambda m: print(m, flush=True),
                raw=raw[name],
            )
    engine = None if args.no_engine or args.quick else engine_line()
    floor = None if args.quick else floor_line()
    analysis_file = HERE / "ANALYSIS.md"
    elapsed = time.perf_counter() - start
    load_after = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    report = render(
        results,
        chosen,
        machine,
        repeat=repeat,
        elapsed=elapsed,
        load_after=load_after,
        engine_line=engine,
        floor_line=floor,
        analysis=analysis_file.read_text() if analysis_file.exists() and not args.quick else None,
        runs=raw,
    )
    print(report)
    if output is not None:
        output.write_text(report)
        # Every run's figures (for re-analysis), next to the report.
        dump = {
            "machine": machine,
            "size": "quick" if args.quick else "full",
            "repeat": repeat,
            "elapsed": elapsed,
            "load_after": load_after,
            "engine_line": engine,
            "floor_line": floor,
            "medians": results,
            "runs": raw,
        }
        output.with_suffix(".json").write_text(json.dumps(dump, indent=1) + "\n")
        print(f"written to {output} and {output.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
