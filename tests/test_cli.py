"""The ``idphoto`` command, run as a user runs it: a subprocess against the local server."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _batch_helpers import make_bad_inputs, make_images

from idphoto_async._journal import JOURNAL_NAME, JournalWatch, journal_events, load_journal
from idphoto_async.cli import main
from idphoto_async.testing import LocalServer, LocalServerProcess

KEY = "cli-test-key"
BATCH_FLAGS = [
    "-o", "--size", "--format", "--bg-color", "--return-type", "--mode", "--qps",
    "--max-in-flight", "--journal", "--report", "--base-url", "--local", "--no-progress",
    "--retry-failed", "--http-backend",
]  # fmt: skip


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("IDPHOTO_")}
    base.update(extra)
    return base


def idphoto(
    *args: str, environ: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "idphoto_async.cli", *args],
        capture_output=True,
        text=True,
        env=environ if environ is not None else env(IDPHOTO_API_KEY=KEY),
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(qps=None, processing_time="0") as srv:
        yield srv


def read_report(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- help, usage errors, configuration -------------------------------------------------------


def test_help_lists_the_commands_and_the_batch_flags() -> None:
    top = idphoto("--help")
    assert top.returncode == 0
    for command in ("batch", "create", "get", "wait", "serve"):
        assert command in top.stdout
    batch = idphoto("batch", "--help")
    assert batch.returncode == 0
    for flag in BATCH_FLAGS:
        assert flag in batch.stdout, flag
    assert "resume" in batch.stdout.lower()
    assert "Exit status" in batch.stdout


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "idphoto"
    if not script.exists():
        pytest.skip("the idphoto script is not installed in this environment")
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "idphoto" in done.stdout


def test_missing_key_exits_2_and_says_how(tmp_path: Path) -> None:
    make_images(tmp_path / "in", 1)
    done = idphoto("batch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), environ=env())
    assert done.returncode == 2
    assert "IDPHOTO_API_KEY" in done.stderr
    assert "--local" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--size", "50x50"], "between 100 and 2000"),
        (["--size", "300X400"], "lower-case x"),
        (["--bg-color", "blue", "--format", "jpg"], "RRGGBB"),
        (["--bg-color", "FFFFFF"], "jpg"),
        (["--qps", "0"], "--qps"),
        (["--max-in-flight", "0"], "--max-in-flight"),
        (["--format", "gif"], "invalid choice"),
        (["--local", "--base-url", "http://x"], "--local"),
        (["--http-backend", "curl"], "invalid choice"),
    ],
)
def test_bad_flags_exit_2_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], words: str
) -> None:
    code = main(["batch", str(tmp_path), "-o", str(tmp_path / "out"), *flags])
    assert code == 2
    err = capsys.readouterr().err
    assert words in err
    assert "Traceback" not in err


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["batch"]) == 2  # INPUT and -o are required


# -- batch -------------------------------------------------------------------------------------


def test_batch_with_bad_files_exits_1_with_a_report(server: LocalServer, tmp_path: Path) -> None:
    src = tmp_path / "in"
    make_images(src / "a", 4)
    make_images(src / "b", 3)
    bad = make_bad_inputs(src / "bad")
    bad.pop("missing")
    out, report = tmp_path / "out", tmp_path / "report.jsonl"
    args = ["batch", str(src), str(tmp_path / "nope.jpg"), "-o", str(out), "--no-progress"]
    args += ["--base-url", server.base_url, "--qps", "50", "--report", str(report)]
    done = idphoto(*args)
    assert done.returncode == 1, done.stderr
    records = read_report(report)
    assert len(records) == 7 + len(bad) + 1
    for record in records:
        assert set(record) == {"input", "status", "task_id", "output", "error"}
        assert KEY not in json.dumps(record)
    failed = {r["input"] for r in records if r["status"] == "failed"}
    assert failed == {str(p) for p in bad.values()} | {str(tmp_path / "nope.jpg")}
    assert all(r["error"]["type"] == "ValidationError" for r in records if r["error"])
    assert sum(r["status"] == "succeeded" for r in records) == 7
    assert (out / "a" / "p00000.png").is_file()
    assert (out / "b" / "p00002.png").is_file()
    assert "7 succeeded" in done.stdout
    assert "failed: " in done.stderr
    assert server.stats()["creates"] == 7
    # Re-run: the good ones are skipped (no request), the bad ones fail again, exit 1 again.
    again = idphoto(*args)
    assert again.returncode == 1
    statuses = [r["status"] for r in read_report(report)]
    assert statuses.count("skipped") == 7
    assert server.stats()["creates"] == 7
    # Only good inputs: exit 0.
    good = idphoto(
        "batch", str(src / "a"), "-o", str(tmp_path / "o2"), "--base-url", server.base_url,
        "--format", "jpg", "--bg-color", "438EDB", "--no-progress",
    )  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert sorted(p.name for p in (tmp_path / "o2").glob("*.jpg")) == [
        f"p{i:05d}.jpg" for i in range(4)
    ]


@pytest.mark.parametrize("backend", ["httpx", "aiohttp"])
def test_batch_on_each_http_backend(server: LocalServer, tmp_path: Path, backend: str) -> None:
    images = make_images(tmp_path / "in", 3)
    before = server.stats()["creates"]
    args = ["-o", str(tmp_path / "out"), "--base-url", server.base_url, "--qps", "50"]
    done = idphoto("batch", *map(str, images), *args, "--no-progress", "--http-backend", backend)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [
        i.with_suffix(".png").name for i in images
    ]
    assert server.stats()["creates"] - before == 3


def test_batch_url_input_and_sync_mode(server: LocalServer, tmp_path: Path) -> None:
    [image] = make_images(tmp_path / "in", 1)
    created = idphoto("create", str(image), "--sync", "--base-url", server.base_url)
    assert created.returncode == 0, created.stderr
    url = json.loads(created.stdout)["image"]
    done = idphoto("batch", url, "-o", str(tmp_path / "out"), "--mode", "sync", "--base-url",
                   server.base_url, "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    [output] = list((tmp_path / "out").glob("*.png"))
    assert output.name.startswith("result-") or len(output.stem) > 9


def test_create_get_wait_print_json(server: LocalServer, tmp_path: Path) -> None:
    [image] = make_images(tmp_path / "in", 1)
    base = ["--base-url", server.base_url]
    created = idphoto("create", str(image), "--size", "200x300", *base)
    assert created.returncode == 0, created.stderr
    task = json.loads(created.stdout)
    assert set(task) == {"task_id", "created_at"}
    waited = idphoto("wait", task["task_id"], "-o", str(tmp_path / "r.png"), *base)
    assert waited.returncode == 0, waited.stderr
    result = json.loads(waited.stdout)
    assert result["state"] == 1
    assert result["state_name"] == "SUCCEEDED"
    assert Path(result["output"]).is_file()
    got = idphoto("get", task["task_id"], *base)
    assert json.loads(got.stdout)["task_id"] == task["task_id"]
    missing = idphoto("get", "no-such-task", *base)
    assert missing.returncode == 1
    assert json.loads(missing.stdout)["error"]["http_status"] == 404
    bad = idphoto("create", str(tmp_path / "gone.jpg"), *base)
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["error"]["type"] == "ValidationError"


def test_batch_runs_with_rare_young_collections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With hundreds of photos in flight, CPython's default thresholds collected 300 times
    per 2 000 photos (440 ms of event-loop pauses, each one late grants): ``idphoto batch``
    freezes its start-up objects and collects young objects 10 times less often, for the
    run only."""
    import gc

    from idphoto_async._gc_settings import BATCH_THRESHOLDS
    from idphoto_async.cli import _batch_cmd

    seen: list[tuple[int, tuple[int, int, int]]] = []

    async def run(*args: object) -> int:
        seen.append((gc.get_freeze_count(), gc.get_threshold()))
        return 0

    monkeypatch.setattr(_batch_cmd, "_run", run)
    monkeypatch.setenv("IDPHOTO_API_KEY", KEY)
    before = gc.get_threshold()
    photo = make_images(tmp_path / "in", 1)[0]
    argv = ["batch", str(photo), "-o", str(tmp_path / "out"), "--base-url", "http://127.0.0.1:9"]
    assert main(argv) == 0
    assert seen and seen[0][0] > 10_000 and seen[0][1] == BATCH_THRESHOLDS
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_serve_is_wired_or_says_what_to_install() -> None:
    done = idphoto("serve", "--help")
    if done.returncode == 0:
        assert "--port" in done.stdout
    else:
        assert done.returncode == 2
        assert "idphoto-async[server]" in done.stderr


def test_local_runs_without_key_or_network(tmp_path: Path) -> None:
    samples = Path(__file__).resolve().parents[1] / "samples"
    inputs = sorted(samples.glob("0[12]-*.jpg"))
    if len(inputs) < 2:
        pytest.skip("samples/ not found")
    out = tmp_path / "out"
    done = idphoto("batch", *map(str, inputs), "-o", str(out), "--local", "--size", "295x413",
                   "--format", "jpg", "--no-progress", environ=env())  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "engine" in done.stderr
    assert len(list(out.glob("*.jpg"))) == 2
    # The engine's native log lines (mediapipe/TFLite) go to a file, not the terminal.
    assert "W0000" not in done.stderr and "TensorFlow Lite" not in done.stderr
    assert (out / ".idphoto-engine.log").exists()


# -- crash safety ------------------------------------------------------------------------------


def _kill_when_journal_has(
    proc: subprocess.Popen[bytes], journal: Path, lines: int, sig: int = signal.SIGKILL
) -> bool:
    """Signal ``proc`` once its journal holds ``lines`` records; False if it ended first."""
    deadline = time.monotonic() + 120
    with JournalWatch(journal) as watch:
        while proc.poll() is None and time.monotonic() < deadline:
            if watch.events() >= lines:
                proc.send_signal(sig)
                proc.wait(timeout=120)
                return True
            time.sleep(0.002)  # polling the journal, not timing the code under test
    proc.wait()
    return False


def _crash_campaign(tmp_path: Path, count: int, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    src = tmp_path / "in"
    make_images(src, count, subdirs=3)
    out = tmp_path / "out"
    journal = out / JOURNAL_NAME
    with LocalServer(qps=None, processing_time="fixed:0.05") as server:
        cmd = [sys.executable, "-m", "idphoto_async.cli", "batch", str(src), "-o", str(out),
               "--base-url", server.base_url, "--qps", "40", "--no-progress"]  # fmt: skip
        records_per_input = 4  # creating, created, done, downloaded
        killed = 0
        for _ in range(kills):
            target = rng.randint(1, count * records_per_input)
            proc = subprocess.Popen(
                cmd, env=env(IDPHOTO_API_KEY=KEY), stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            already = journal_events(journal)
            killed += _kill_when_journal_has(proc, journal, already + target // kills + 1)
        final = subprocess.run(cmd, env=env(IDPHOTO_API_KEY=KEY), capture_output=True,
                               text=True, timeout=300)  # fmt: skip
        assert final.returncode == 0, final.stderr
        stats = server.stats()
    outputs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    expected = sorted(p.relative_to(src).with_suffix(".png").as_posix() for p in src.rglob("*.jpg"))
    assert outputs == expected  # every output present, no stray temp files
    state = load_journal(journal)
    # No duplicate task except for a create that was on the wire at the very moment of a kill
    # (its task id never reached us and the API cannot list tasks). The journal counts the
    # creates a kill interrupted (an upper bound: most were still queued for a QPS slot). On an
    # idle machine one create is on the wire at a time; under load the server answers slower
    # than the 25 ms between creates, so a kill can catch several (as in test_reliability_crash).
    assert count <= stats["creates"] <= count + state.in_doubt
    print(f"{killed} kills, creates {stats['creates']} for {count} inputs, "
          f"in doubt {state.in_doubt}")  # fmt: skip


def test_ctrl_c_stops_starting_photos_and_says_how_to_resume(tmp_path: Path) -> None:
    src = tmp_path / "in"
    make_images(src, 20)
    out = tmp_path / "out"
    with LocalServer(qps=None, processing_time="fixed:0.2") as server:
        cmd = [sys.executable, "-m", "idphoto_async.cli", "batch", str(src), "-o", str(out),
               "--base-url", server.base_url, "--qps", "50", "--max-in-flight", "4",
               "--no-progress"]  # fmt: skip
        proc = subprocess.Popen(cmd, env=env(IDPHOTO_API_KEY=KEY), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)  # fmt: skip
        assert _kill_when_journal_has(proc, out / JOURNAL_NAME, 6, signal.SIGINT)
        _, err = proc.communicate()
        assert proc.returncode == 130
        assert b"re-run the same command" in err
        assert b"Traceback" not in err
        first_creates = server.stats()["creates"]
        assert first_creates < 20
        state = load_journal(out / JOURNAL_NAME)
        assert state.in_doubt == 0  # in-flight creates were answered and journaled
        done = subprocess.run(cmd, env=env(IDPHOTO_API_KEY=KEY), capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert server.stats()["creates"] == 20
    assert len(list(out.glob("*.png"))) == 20


def test_sigkill_then_rerun_loses_nothing_and_pays_once(tmp_path: Path) -> None:
    _crash_campaign(tmp_path, count=24, kills=1, seed=7)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_campaign(tmp_path: Path, seed: int) -> None:
    _crash_campaign(tmp_path, count=80, kills=5, seed=seed)


# -- memory ------------------------------------------------------------------------------------

# Peak RSS from /proc's VmHWM, not getrusage's ru_maxrss: on Linux a child's ru_maxrss keeps
# the high-water mark of the process it was forked from (here pytest, with mediapipe loaded).
MEMORY_SCRIPT = """
import json, re, sys
import psutil
from idphoto_async.cli import main
code = main(sys.argv[1:])
with open("/proc/self/status") as status:
    peak_kb = int(re.search(r"VmHWM:\\s+(\\d+) kB", status.read()).group(1))
print(json.dumps({"code": code, "peak_mb": peak_kb / 1024,
                  "rss_mb": psutil.Process().memory_info().rss / 2**20}))
"""

PEAK_RSS_BOUND_MB = 120
"""Peak RSS allowed for a 10 000-input batch (interpreter, httpx, anyio, Pillow included)."""


@pytest.mark.slow
def test_memory_10000_inputs(tmp_path: Path) -> None:
    pytest.importorskip("psutil")
    count = 10_000
    make_images(tmp_path / "in", count, subdirs=20)
    # The server runs in a process of its own: in this one, coverage would trace it (2x slower).
    with LocalServerProcess(qps=None, processing_time="0", workers=4) as server:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", MEMORY_SCRIPT, "batch", str(tmp_path / "in"), "-o",
             str(tmp_path / "out"), "--base-url", server.base_url, "--qps", "2000",
             "--no-progress", "--mode", "sync"],
            env=env(IDPHOTO_API_KEY=KEY), capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        creates = server.stats()["creates"]
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"10 000 inputs: {elapsed:.1f} s, peak RSS {figures['peak_mb']:.0f} MB")
    assert figures["code"] == 0
    assert creates == count
    assert figures["peak_mb"] < PEAK_RSS_BOUND_MB
