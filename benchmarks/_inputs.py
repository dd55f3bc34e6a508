"""Small synthetic JPEG portraits, generated once per run into a directory."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw

__all__ = ["input_paths", "make_inputs"]

_VARIANTS = 8


def _portrait(seed: int, size: tuple[int, int]) -> bytes:
    """A head-and-shoulders drawing on a plain background, as JPEG bytes."""
    width, height = size
    background = (200 - 9 * seed, 220 - 5 * seed, 235)
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    skin = (224 - 6 * seed, 180 - 5 * seed, 150 - 4 * seed)
    cx = width // 2
    draw.ellipse((cx - width // 3, height * 3 // 4, cx + width // 3, height * 3 // 2), (40, 50, 90))
    draw.ellipse((cx - width // 6, height // 5, cx + width // 6, height * 3 // 5), skin)
    draw.ellipse((cx - width // 6, height // 6, cx + width // 6, height // 3), (60, 40, 30))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def make_inputs(directory: Path, count: int, size: tuple[int, int] = (120, 160)) -> list[Path]:
    """Write ``count`` distinct files ``p00000.jpg``... (a few drawings, cycled); reuse any."""
    directory.mkdir(parents=True, exist_ok=True)
    variants = [_portrait(i, size) for i in range(_VARIANTS)]
    paths = input_paths(directory, count)
    for i, path in enumerate(paths):
        if not path.exists():
            path.write_bytes(variants[i % _VARIANTS])
    return paths


def input_paths(directory: Path, count: int) -> list[Path]:
    """The first ``count`` input paths in ``directory`` (made by :func:`make_inputs`)."""
    return [directory / f"p{i:05d}.jpg" for i in range(count)]
