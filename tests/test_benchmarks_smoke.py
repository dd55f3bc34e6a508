"""Every benchmark scenario at a tiny size through the real harness, so it cannot rot.

No timings are asserted: only that each client finishes every photo and the report renders.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._inputs import make_inputs  # noqa: E402
from benchmarks._report import machine_info, render  # noqa: E402
from benchmarks._scenarios import DEFAULT_SCENARIOS, run_scenario, scenarios  # noqa: E402


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_every_scenario_runs_at_tiny_size(tmp_path: Path) -> None:
    tiny = scenarios("tiny")
    inputs = tmp_path / "inputs"
    make_inputs(inputs, max(s.n for s in tiny.values()))

    def run(name: str) -> tuple[str, dict[str, dict[str, Any]]]:
        work = tmp_path / name
        work.mkdir()
        return name, run_scenario(tiny[name], 1, inputs, work, log=lambda _: None)

    # The clients mostly sleep (polling), so the scenarios run side by side.
    names = list(DEFAULT_SCENARIOS)
    with ThreadPoolExecutor(len(names)) as pool:
        results = dict(pool.map(run, names))

    for name, rows in results.items():
        assert set(rows) == {spec.label for spec in tiny[name].clients}
        for label, figures in rows.items():
            assert figures["ok"] == tiny[name].n, (name, label)
            assert figures["failed"] == 0
            assert figures["requests_per_photo"] >= 1
            assert figures["client_cpu_ms"] > 0
            assert figures["peak_rss_mb"] > 10
    report = render(
        results,
        tiny,
        machine_info(),
        repeat=1,
        elapsed=1.0,
        load_after="0",
        engine_line=["| engine |"],
        analysis="## Analysis",
    )
    assert report.count("\n## ") == len(names) + 3  # + engine, targets, analysis
    assert "| target | result | figure |" in report
    assert "ours, sync" in report


def test_paired_cpu_divides_each_repetition_by_its_own_baseline() -> None:
    from benchmarks._report import paired_cpu

    def cpu(*values: float) -> list[dict[str, Any]]:
        return [{"client_cpu_ms": v} for v in values]

    runs = {
        "ours, async": cpu(4.0, 9.0, 6.0),
        "ours, sync": cpu(2.0),  # fewer repetitions: paired as far as they go
        "baseline (b) 128 threads, requests, poll 2 s": cpu(5.0, 10.0, 5.0),
    }
    rows = paired_cpu(runs)
    pairs = "0.80 (4.00/5.00) | 0.90 (9.00/10.00) | 1.20 (6.00/5.00)"
    assert f"| ours, async | {pairs} | 0.90 |" in rows
    assert "| ours, sync | 0.40 (2.00/5.00) | 0.40 |" in rows
    assert paired_cpu({"ours, async": cpu(1.0)}) == []  # no yardstick, no table


def test_steady_rate_leaves_out_the_drain() -> None:
    """40 photos at 1/s while creates go out, then 20 finishing at 4/s (queries only)."""
    from benchmarks._scenarios import last_create, steady_rate

    times = [float(i) for i in range(1, 41)] + [40 + 0.25 * i for i in range(1, 21)]
    assert steady_rate(times, 45.0) > 1.15  # the drain inflates the 10-90 % fit
    assert steady_rate(times, 45.0, until=40.1) == pytest.approx(1.0)
    assert steady_rate(times, 45.0, until=3.0) == pytest.approx(60 / 45)  # no steady phase
    stats = {"arrival_span": {"create": {"first": 100.0, "last": 140.5}}, "clock_offset": 0.0}
    assert last_create({"start_monotonic": 100.0}, stats) == pytest.approx(40.5)
    assert last_create({}, stats) is None


def test_http_floor_script_prints_its_table() -> None:
    import subprocess

    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "http_floor.py"), "--requests", "5"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) == 2 + 7  # header, rule, one row per request kind
    assert all(float(row.split("|")[2]) > 0 for row in rows[2:])


def test_journal_scale_cpu_child_journals_every_photo(tmp_path: Path) -> None:
    """The journal's CPU measure runs the batch's records (lookup, creating, created,
    downloaded) for each photo, and leaves each photo downloaded in its journal."""
    import json
    import subprocess

    from idphoto_async._journal import load_journal

    path = tmp_path / "j.sqlite3"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.journal_scale", "--child", "cpu", str(path), "20"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=ROOT,
    )
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(answer["all_ms"]) == 3 and answer["base_ms"] > 0
    state = load_journal(tmp_path / "j.sqlite3.0")
    assert len(state.entries) == 20
    assert all(e.done and e.output for e in state.entries.values())
