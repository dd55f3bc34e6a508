"""The worked example in docs/testing.md runs and passes (so the doc cannot rot)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "testing.md"


def _example(name: str) -> str:
    pattern = rf"<!-- example: {re.escape(name)} -->\s*```python\n(.*?)```"
    match = re.search(pattern, DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert match, f"docs/testing.md has no example {name}"
    return match[1]


@pytest.mark.parametrize(
    ("name", "passed"), [("test_id_photos.py", "4 passed"), ("test_with_sdk.py", "5 passed")]
)
def test_example_passes(tmp_path: Path, name: str, passed: str) -> None:
    (tmp_path / name).write_text(_example(name), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert passed in result.stdout
