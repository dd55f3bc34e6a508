"""A batch parses no path of an input with pathlib (the memory target, docs/batch.md).

pathlib (CPython 3.11 and 3.12) interns every part of every path it parses with
``sys.intern``: a batch that built a `Path` per input filled the interpreter's table of
interned strings with every input's names, and its memory grew with the number of inputs
(for good on 3.12.0-3.12.5). The batch keeps per-input paths as text (``os.path``); these
tests check it: they wrap ``sys.intern`` (pathlib looks it up on the ``sys`` module at each
call) and assert that nothing pathlib interns during a batch contains a part of an input's
name. Every input's file name carries a marker, so the check does not depend on counts,
timing or the allocator; on an interpreter whose pathlib does not intern, the probe finds
nothing and the test is skipped.
"""

from __future__ import annotations

import os
import pathlib
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest
from _batch_helpers import make_images

from idphoto_async._batch import BatchRunner
from idphoto_async._client import AsyncIDPhotoClient
from idphoto_async._download import remove_stale_parts
from idphoto_async._paths import discover
from idphoto_async._polling import PollSchedule
from idphoto_async.testing import LocalServer

pytestmark = pytest.mark.anyio

MARK = "qz7mark"
"""In every input's file name (and so in its output's and temporary file's names)."""


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(qps=None, processing_time="0") as srv:
        yield srv


class PathlibInterning:
    """The strings with `MARK` that pathlib interned while installed (any thread)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self._intern: Callable[[str], str] = sys.intern

    def __call__(self, text: str) -> str:
        if MARK in text:
            frame = sys._getframe(1)
            if frame.f_code.co_filename == pathlib.__file__:
                where = "".join(traceback.format_stack(frame, limit=8))
                if f"idphoto_async{os.sep}server" not in where:  # the in-process server's
                    self.seen.append((text, where))
        return self._intern(text)

    def report(self) -> str:
        return "\n".join(f"{text!r} interned from:\n{where}" for text, where in self.seen[:3])


@pytest.fixture
def interning(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> PathlibInterning:
    counter = PathlibInterning()
    monkeypatch.setattr(sys, "intern", counter)
    Path(tmp_path / f"probe-{MARK}.jpg")  # pathlib's own parse: must be seen
    if not counter.seen:
        pytest.skip("this interpreter's pathlib does not intern path parts")
    counter.seen.clear()
    return counter


async def _run(server: LocalServer, inputs: object, out: Path) -> dict[str, int]:
    statuses: dict[str, int] = {}
    schedule = PollSchedule(initial_guess=0.01, min_delay=0.01, max_delay=0.05)
    async with AsyncIDPhotoClient("k", server.base_url, qps=1000, poll_schedule=schedule) as c:
        runner = BatchRunner(c, out_dir=out, max_in_flight=4, format="jpg")
        with anyio.fail_after(60):
            async with runner.outcomes(inputs) as stream:  # type: ignore[arg-type]
                async for outcome in stream:
                    statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
    return statuses


async def test_a_batch_interns_no_part_of_an_input_path(
    server: LocalServer, tmp_path: Path, interning: PathlibInterning
) -> None:
    src = tmp_path / "in"
    files = [str(p) for p in make_images(src, 6, prefix=f"{MARK}-", subdirs=2)]
    interning.seen.clear()  # make_images itself builds paths
    out = tmp_path / "out"
    # Files named in a list (checked up front), a first run and a resume.
    assert await _run(server, files, out) == {"succeeded": 6}
    assert await _run(server, files, out) == {"skipped": 6}
    # The journal has them but the outputs are gone: their tasks are polled and downloaded
    # again, and a killed writer's temporary files removed.
    gone = sorted(name for name in os.listdir(out) if name.endswith(".jpg"))[:3]
    for name in gone:
        os.unlink(out / name)
    stale = out / f".{gone[0]}.0123abcd.part"
    stale.write_bytes(b"cut")
    interning.seen.clear()  # the test's own paths
    assert await _run(server, iter(files), out) == {"skipped": 3, "succeeded": 3}
    assert not stale.exists()
    # A folder (walked by the run), and the command line's items (walked by discover).
    assert await _run(server, [str(src)], tmp_path / "out2") == {"succeeded": 6}
    assert await _run(server, discover([str(src)]), tmp_path / "out3") == {"succeeded": 6}
    assert interning.seen == [], interning.report()


def test_stale_part_removal_interns_no_part_of_the_path(
    tmp_path: Path, interning: PathlibInterning
) -> None:
    dest = os.path.join(tmp_path, f"{MARK}.png")
    stale = os.path.join(tmp_path, f".{MARK}.png.0123abcd.part")
    with open(stale, "wb"):
        pass
    remove_stale_parts(dest)
    assert not os.path.exists(stale)
    assert interning.seen == [], interning.report()
