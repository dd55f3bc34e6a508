"""The worked example in docs/testing.md runs and passes (so the doc cannot rot)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "testing.md"


def _example(name: str) -> str:
    pattern = rf"<!-- example: {re.escape(name)} -->\s*```python\n(.*?)```"
    match = re.search(pattern, DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert match, f"docs/testing.md has no example {name}"
    return match[1]


def test_worked_example_passes(tmp_path: Path) -> None:
    (tmp_path / "test_id_photos.py").write_text(_example("test_id_photos.py"), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_id_photos.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


def test_sdk_example_passes(tmp_path: Path) -> None:
    (tmp_path / "test_with_sdk.py").write_text(_example("test_with_sdk.py"), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_with_sdk.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout
