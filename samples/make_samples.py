"""Make the sample portraits from scikit-image's astronaut (NASA, public domain).

Run from the repository root: ``python samples/make_samples.py``. Deterministic. It needs
OpenCV (``pip install opencv-python-headless``), which the package itself no longer uses.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image
from skimage import data

Array = npt.NDArray[np.uint8]
HERE = Path(__file__).resolve().parent
MAX_BYTES = 150_000


def _resize(a: Array, width: int, height: int) -> Array:
    inter = cv2.INTER_AREA if width < a.shape[1] else cv2.INTER_CUBIC
    return np.asarray(cv2.resize(a, (width, height), interpolation=inter), dtype=np.uint8)


def _gradient(
    width: int, height: int, top: tuple[int, int, int], bottom: tuple[int, int, int]
) -> Array:
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    col = (1 - t) * np.array(top) + t * np.array(bottom)
    return np.asarray(np.broadcast_to(col, (height, width, 3)).round(), dtype=np.uint8).copy()


def _paste(canvas: Array, image: Array, x: int, y: int) -> Array:
    out = canvas.copy()
    out[y : y + image.shape[0], x : x + image.shape[1]] = image
    return out


def make(astronaut: Array) -> dict[str, Image.Image]:
    """Name -> image: crops, shifts, scales, a slight tilt, different backgrounds."""
    rng = np.random.default_rng(7)
    rotated = cv2.warpAffine(
        astronaut,
        cv2.getRotationMatrix2D((224.0, 110.0), -6.0, 1.0),
        (512, 512),
        borderMode=cv2.BORDER_REFLECT,
    )
    noise = cv2.GaussianBlur(rng.integers(0, 256, (720, 900, 3), dtype=np.uint8), (0, 0), 3)
    busy = np.asarray(
        cv2.addWeighted(noise, 0.7, _gradient(900, 720, (40, 90, 160), (200, 160, 60)), 0.3, 0)
    )
    return {
        "01-head-and-shoulders.jpg": Image.fromarray(_resize(astronaut[0:400, 40:400], 648, 720)),
        "02-off-centre.jpg": Image.fromarray(_resize(astronaut[0:512, 100:512], 700, 870)),
        "03-small-in-frame.jpg": Image.fromarray(
            _paste(
                _gradient(800, 700, (230, 230, 225), (120, 130, 150)),
                _resize(astronaut, 330, 330),
                60,
                300,
            )
        ),
        "04-tilted.jpg": Image.fromarray(_resize(rotated[0:460, 20:440], 630, 690)),
        "05-busy-background.jpg": Image.fromarray(
            _paste(busy, _resize(astronaut, 420, 420), 420, 250)
        ),
        "06-portrait.png": Image.fromarray(_resize(astronaut[0:480, 40:440], 460, 552)).quantize(
            96, dither=Image.Dither.NONE
        ),
    }


def main() -> None:
    astronaut = np.asarray(data.astronaut(), dtype=np.uint8)
    for name, img in make(astronaut).items():
        path = HERE / name
        if name.endswith(".png"):
            img.save(path, optimize=True)
        else:
            img.save(path, quality=85, optimize=True)
        size = path.stat().st_size
        assert size < MAX_BYTES, f"{name} is {size} bytes"
        print(f"{name}: {img.width}x{img.height}, {size // 1024} KB")


if __name__ == "__main__":
    main()
