"""Helpers shared by the batch and CLI tests: tiny images and a server per test."""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

from PIL import Image


@cache
def tiny_jpeg(shade: int = 0) -> bytes:
    """A small valid JPEG (120x160)."""
    buf = io.BytesIO()
    Image.new("RGB", (120, 160), (200, 150 - shade % 100, 120)).save(buf, "JPEG", quality=70)
    return buf.getvalue()


def make_images(root: Path, count: int, *, prefix: str = "p", subdirs: int = 1) -> list[Path]:
    """``count`` tiny JPEGs under ``root`` (spread over ``subdirs`` folders), sorted."""
    paths = []
    for i in range(count):
        folder = root if subdirs <= 1 else root / f"d{i % subdirs}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{prefix}{i:05d}.jpg"
        path.write_bytes(tiny_jpeg())
        paths.append(path)
    return sorted(paths)


def make_bad_inputs(root: Path) -> dict[str, Path]:
    """Inputs the client must refuse, each for its own reason."""
    root.mkdir(parents=True, exist_ok=True)
    text = root / "notes.jpg"
    text.write_text("this is not an image\n")
    empty = root / "empty.jpg"
    empty.write_bytes(b"")
    big = root / "huge.jpg"
    with big.open("wb") as f:  # a sparse file over the 20 MB limit
        f.write(tiny_jpeg())
        f.truncate(21 * 1024 * 1024)
    wide = root / "wide.png"
    Image.new("L", (4100, 8)).save(wide, "PNG")
    return {"text": text, "empty": empty, "big": big, "wide": wide, "missing": root / "gone.jpg"}
