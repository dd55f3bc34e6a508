"""``idphoto`` on the unhappy paths a new user walks into (issue 12), run as a user runs it.

Each: one line that says what to do, the right exit status (2 for configuration, including a
refused key, a dead origin and a full disk), no traceback, nothing paid for nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from _batch_helpers import make_images, tiny_jpeg
from _fs_helpers import fill, tmpfs
from redis_server import free_port  # a free loopback port

from idphoto_async._journal import JOURNAL_NAME, Journal
from idphoto_async.testing import LocalServer

KEY = "cli-unhappy-key"


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("IDPHOTO_")}
    base.update({"IDPHOTO_API_KEY": KEY, **extra})
    return base


def idphoto(*args: str | Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "idphoto_async.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env(**extra_env),
        timeout=300,
    )


def batch(server: LocalServer, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return idphoto("batch", *args, "--base-url", server.base_url, "--no-progress")


def one_line_usage_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "ExceptionGroup" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[LocalServer]:
    knobs: dict[str, Any] = {"qps": None, "processing_time": "0"}
    knobs.update(getattr(request, "param", {}))
    with LocalServer(**knobs) as srv:
        yield srv


# -- 1-3. names and paths ------------------------------------------------------------------


def test_the_same_photo_three_times_is_made_once(server: LocalServer, tmp_path: Path) -> None:
    [b] = make_images(tmp_path / "img", 1, prefix="b")
    done = batch(server, b, b, b, tmp_path / "img", "-o", tmp_path / "o")
    assert done.returncode == 0, done.stderr
    assert server.stats()["creates"] == 1
    assert len(list((tmp_path / "o").glob("*.png"))) == 1
    assert "1 input:" in done.stdout and "duplicate" in done.stdout


def test_empty_arguments_are_refused(server: LocalServer, tmp_path: Path) -> None:
    [b] = make_images(tmp_path / "img", 1)
    done = batch(server, b, *[""] * 50, "-o", tmp_path / "o")
    one_line_usage_error(done, "empty")
    assert server.stats()["requests_total"] == 0


def test_out_equal_to_the_input_folder_is_refused(server: LocalServer, tmp_path: Path) -> None:
    images = make_images(tmp_path / "in", 3)
    before = [p.read_bytes() for p in images]
    done = batch(server, tmp_path / "in", "-o", tmp_path / "in")
    one_line_usage_error(done, "output directory")
    assert server.stats()["requests_total"] == 0
    assert [p.read_bytes() for p in images] == before
    assert not list((tmp_path / "in").glob("*.png"))


def test_local_out_equal_to_the_input_folder_leaves_it_untouched(tmp_path: Path) -> None:
    images = make_images(tmp_path / "in", 2)
    before = sorted(p.name for p in (tmp_path / "in").iterdir())
    done = idphoto("batch", tmp_path / "in", "-o", tmp_path / "in", "--local")
    one_line_usage_error(done, "output directory")
    # Refused before the local engine started: not even its log was written there.
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == before
    assert len(images) == 2


@pytest.mark.parametrize("target", ["journal", "legacy_journal", "input"])
def test_a_report_that_would_overwrite_something_is_refused(
    server: LocalServer, tmp_path: Path, target: str
) -> None:
    images = make_images(tmp_path / "in", 2)
    out = tmp_path / "out"
    out.mkdir()
    report = {
        "journal": out / JOURNAL_NAME,
        "legacy_journal": out / ".idphoto-journal.jsonl",
        "input": images[0],
    }[target]
    if not report.exists():
        report.write_bytes(b"precious\n")
    before = report.read_bytes()
    done = batch(server, *images, "-o", out, "--report", report)
    one_line_usage_error(done, "--report")
    assert report.read_bytes() == before
    assert server.stats()["requests_total"] == 0


def test_report_and_journal_on_one_path_are_refused(server: LocalServer, tmp_path: Path) -> None:
    images = make_images(tmp_path / "in", 1)
    same = tmp_path / "same.db"
    done = batch(server, *images, "-o", tmp_path / "o", "--journal", same, "--report", same)
    one_line_usage_error(done, "journal")
    assert server.stats()["requests_total"] == 0


# -- 4. configuration errors ------------------------------------------------------------------


def test_configuration_errors_are_one_line_and_exit_2(server: LocalServer, tmp_path: Path) -> None:
    images = make_images(tmp_path / "in", 1)
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    cases = [
        (["--journal", tmp_path / "adir"], "directory"),
        (["--report", tmp_path / "adir"], "directory"),
        (["-o", tmp_path / "afile" / "sub"], "output directory"),
        (["--shard", "4/3"], "shard"),
        (["--shard", "x"], "K/N"),
    ]
    for flags, word in cases:
        args = ["-o", tmp_path / "out", *flags] if "-o" not in flags else flags
        one_line_usage_error(batch(server, *images, *args), word)
    done = idphoto("batch", *images, "-o", tmp_path / "out", "--base-url", "127.0.0.1:8000")
    one_line_usage_error(done, "scheme")
    assert server.stats()["requests_total"] == 0


def test_a_read_only_out_is_refused(server: LocalServer, tmp_path: Path) -> None:
    images = make_images(tmp_path / "in", 1)
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        one_line_usage_error(batch(server, *images, "-o", ro), "Read-only")
        one_line_usage_error(
            batch(server, *images, "-o", tmp_path / "out", "--journal", ro / "j.sqlite3"),
            "journal",
        )
    assert server.stats()["requests_total"] == 0


def test_a_second_batch_on_a_journal_in_use_exits_2(server: LocalServer, tmp_path: Path) -> None:
    images = make_images(tmp_path / "in", 1)
    out = tmp_path / "out"
    out.mkdir()

    async def hold_the_journal() -> subprocess.CompletedProcess[str]:
        async with Journal(out / JOURNAL_NAME):
            return await anyio.to_thread.run_sync(lambda: batch(server, *images, "-o", out))

    one_line_usage_error(anyio.run(hold_the_journal), "in use")
    assert server.stats()["requests_total"] == 0


# -- 5-7. errors of the run -------------------------------------------------------------------


@pytest.mark.parametrize("server", [{"api_keys": ["right-key"]}], indirect=True)
def test_a_wrong_key_stops_at_once_and_the_right_one_just_works(
    server: LocalServer, tmp_path: Path
) -> None:
    make_images(tmp_path / "in", 40)
    args = ["batch", tmp_path / "in", "-o", tmp_path / "out", "--base-url", server.base_url]
    wrong = idphoto(*args, "--no-progress", "--max-in-flight", "4", IDPHOTO_API_KEY="wrong")
    assert wrong.returncode == 2, wrong.stderr
    assert "refused the API key" in wrong.stderr and "Traceback" not in wrong.stderr
    assert wrong.stderr.count("HTTP 401") == 1
    assert server.stats()["requests"].get("create", 0) <= 4
    right = idphoto(*args, "--no-progress", "--qps", "50", IDPHOTO_API_KEY="right-key")
    assert right.returncode == 0, right.stderr
    assert server.stats()["creates"] == 40


def test_a_dead_origin_fails_fast_naming_it(tmp_path: Path) -> None:
    make_images(tmp_path / "in", 40)
    origin = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = idphoto("batch", tmp_path / "in", "-o", tmp_path / "out", "--base-url", origin)
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    assert f"cannot reach the API at {origin}" in done.stderr
    assert "Traceback" not in done.stderr
    assert elapsed < 30  # the first requests' retries, not minutes of retries per input


def test_a_full_output_disk_stops_the_run_and_the_rerun_pays_nothing_twice(
    server: LocalServer, tmp_path: Path
) -> None:
    make_images(tmp_path / "in", 6)
    journal = tmp_path / "journal.sqlite3"
    with tmpfs(tmp_path / "small", size="256k") as small:
        (small / "out").mkdir()
        fill(small, leave=12_000)  # room for a photo or two
        args = [tmp_path / "in", "-o", small / "out", "--journal", journal, "--format", "jpg"]
        done = batch(server, *args)
        assert done.returncode == 2, done.stderr
        assert "No space left" in done.stderr and "Traceback" not in done.stderr
        creates = server.stats()["creates"]
        assert 1 <= creates <= 6
        (small / "filler").unlink()
        again = batch(server, *args)
        assert again.returncode == 0, again.stderr
    assert server.stats()["creates"] == 6  # the tasks already made were polled, not re-made


# -- 8. idphoto create -o ------------------------------------------------------------------


def test_create_to_a_folder_is_refused_before_paying(server: LocalServer, tmp_path: Path) -> None:
    [image] = make_images(tmp_path / "in", 1)
    (tmp_path / "somedir").mkdir()
    done = idphoto("create", image, "-o", tmp_path / "somedir", "--base-url", server.base_url)
    one_line_usage_error(done, "directory")
    assert server.stats()["requests_total"] == 0


def test_create_whose_save_fails_says_how_to_fetch_it(server: LocalServer, tmp_path: Path) -> None:
    [image] = make_images(tmp_path / "in", 1)
    with tmpfs(tmp_path / "small", size="64k") as small:
        fill(small, leave=4096)  # room for the name, not for the photo
        done = idphoto(
            "create", image, "-o", small / "a.jpg", "--size", "2000x2000", "--format", "jpg",
            "--base-url", server.base_url,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    task_id = json.loads(done.stdout)["task_id"]
    first, *rest = done.stderr.splitlines()
    assert task_id in first  # the task id comes first, before anything can fail
    assert f"idphoto wait {task_id}" in rest[-1]
    assert server.stats()["creates"] == 1


# -- 11. names that would drive the terminal ----------------------------------------------------


def test_control_characters_in_names_are_escaped(server: LocalServer, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "evil\x1b[2Jname\nline.jpg").write_bytes(b"not an image")
    (src / "good.jpg").write_bytes(tiny_jpeg())
    done = batch(server, src, "-o", tmp_path / "out")
    assert done.returncode == 1, done.stderr
    assert "\x1b" not in done.stderr
    assert "evil\\x1b[2Jname\\nline.jpg" in done.stderr


# -- 9. counts ---------------------------------------------------------------------------------


def test_refused_inputs_are_not_counted_as_creates(server: LocalServer, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for n in range(3):
        (src / f"bad{n}.jpg").write_text("no image")
    done = batch(server, src, "-o", tmp_path / "out")
    assert done.returncode == 1
    assert "0 API requests, 0 creates" in done.stdout
    assert "3 refused before sending" in done.stdout


def test_a_run_stopped_by_two_ctrl_c_prints_the_true_counts(tmp_path: Path) -> None:
    make_images(tmp_path / "in", 20)
    with LocalServer(qps=None, processing_time="fixed:30") as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "idphoto_async.cli", "batch", str(tmp_path / "in"), "-o",
             str(tmp_path / "out"), "--base-url", server.base_url, "--qps", "50",
             "--max-in-flight", "8", "--no-progress"],
            env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while server.stats()["creates"] < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        creates = server.stats()["creates"]
    assert proc.returncode == 130, err
    assert creates == 8
    assert out.startswith("8 inputs: 0 succeeded"), out  # not "0 inputs" after 8 creates
    assert "8 unfinished" in out and "8 creates" in out


@pytest.mark.parametrize("command", ["batch", "get"])
def test_http_backend_aiohttp_without_aiohttp_is_a_configuration_error(
    tmp_path: Path,
    command: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from idphoto_async.cli import main

    monkeypatch.setitem(sys.modules, "aiohttp", None)  # import aiohttp -> ImportError
    monkeypatch.setenv("IDPHOTO_API_KEY", "k")
    [image] = make_images(tmp_path / "in", 1)
    args = (
        ["batch", str(image), "-o", str(tmp_path / "out")] if command == "batch" else ["get", "T1"]
    )
    code = main([*args, "--base-url", "http://127.0.0.1:1", "--http-backend", "aiohttp"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        "idphoto: --http-backend aiohttp needs aiohttp: pip install 'idphoto-async[aiohttp]'"
    ]
    assert not (tmp_path / "out").exists()  # refused before anything was made
