"""The warning about interpreters whose memory grows with a batch's path parts."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from _batch_helpers import make_images

from idphoto_async import AsyncIDPhotoClient
from idphoto_async._batch import _interpreter
from idphoto_async._batch._interpreter import interning_leaks, warn_if_interning_leaks
from idphoto_async.testing import LocalServer


@pytest.mark.parametrize(
    ("implementation", "version", "leaks"),
    [
        ("cpython", (3, 12, 0), True),
        ("cpython", (3, 12, 5), True),
        ("cpython", (3, 12, 6), False),
        ("cpython", (3, 11, 7), False),
        ("cpython", (3, 13, 0), False),
        ("pypy", (3, 12, 1), False),
    ],
)
def test_which_interpreters_keep_every_interned_string(
    implementation: str, version: tuple[int, int, int], leaks: bool
) -> None:
    assert interning_leaks(implementation, version) is leaks


def test_the_warning_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_interpreter, "interning_leaks", lambda: True)
    with caplog.at_level(logging.WARNING, logger="idphoto_async"):
        warn_if_interning_leaks()
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "use Python 3.12.6 or later" in record.getMessage()
    monkeypatch.setattr(_interpreter, "interning_leaks", lambda: False)
    caplog.clear()
    warn_if_interning_leaks()
    assert caplog.records == []
    assert interning_leaks() is (sys.version_info[:2] == (3, 12) and sys.version_info < (3, 12, 6))


@pytest.mark.anyio
async def test_a_batch_warns_once_on_such_an_interpreter(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setattr(_interpreter, "interning_leaks", lambda: True)
    inputs = make_images(tmp_path / "in", 2)
    with LocalServer(qps=None, processing_time="0") as server:
        async with AsyncIDPhotoClient(api_key="k", base_url=server.base_url, qps=50) as client:
            with caplog.at_level(logging.WARNING, logger="idphoto_async"):
                async with client.batch(inputs, out_dir=tmp_path / "out") as outcomes:
                    assert [o.ok async for o in outcomes] == [True, True]
    warnings = [r for r in caplog.records if "CPython issue 113993" in r.getMessage()]
    assert len(warnings) == 1
