"""A synthetic portrait test set and an independent judge for the local engine.

Everything is built from the astronaut portrait scikit-image ships (NASA, public domain):
nothing is downloaded. The judge never uses the engine's models:

* fiducials: three tiny pure-green dots are painted on the source (under each eye on the
  cheek, and on the chin); found again in the output they give the eye line, the
  chin-to-crown height (twice eye-to-chin), the centring and the roll;
* scikit-image's LBP frontal-face cascade counts the faces in an output;
* colour and alpha measurements (background colour left in the edge, clutter kept).
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter

Array = npt.NDArray[np.uint8]

# Hand-measured on the 512x512 astronaut (source pixels).
RIGHT_EYE = (201.0, 100.5)
LEFT_EYE = (245.0, 103.0)
CHIN = (222.0, 176.0)
CHEEK_DROP = 11.5
"""The eye dots sit this far below the pupils (a dot on a pupil would change the face)."""
GREEN = (0, 255, 0)
# The person (hair, face, suit; not the helmet on the lap), clockwise from the crown.
PERSON = [
    (225, 14), (260, 19), (285, 38), (298, 65), (301, 100), (296, 130), (290, 150),
    (282, 160), (300, 175), (318, 205), (345, 250), (360, 300), (362, 345), (300, 360), (286, 420),
    (280, 511), (20, 511), (20, 380), (30, 300), (60, 258), (112, 210), (124, 180),
    (152, 152), (150, 110), (155, 70), (170, 40), (195, 21),
]  # fmt: skip


@cache
def astronaut() -> Array:
    """The astronaut with the three fiducial dots."""
    from skimage import data

    img = Image.fromarray(np.asarray(data.astronaut(), dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    for x, y in (
        (RIGHT_EYE[0], RIGHT_EYE[1] + CHEEK_DROP),
        (LEFT_EYE[0], LEFT_EYE[1] + CHEEK_DROP),
        CHIN,
    ):
        draw.rectangle((x - 1, y - 1, x + 1, y + 1), fill=GREEN)
    return np.asarray(img, dtype=np.uint8)


@cache
def person_mask() -> npt.NDArray[np.float32]:
    """The astronaut's person mask (hand-drawn polygon, edge softened by 1.5 px)."""
    mask = Image.new("L", (512, 512), 0)
    ImageDraw.Draw(mask).polygon(PERSON, fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(1.5))
    return np.asarray(mask, dtype=np.float32) / 255.0


def paste(canvas: Array, scale: float, at: tuple[int, int]) -> Array:
    """``canvas`` with the cut-out astronaut, scaled by ``scale``, its top-left at ``at``."""
    side = max(1, round(512 * scale))
    person = np.asarray(Image.fromarray(astronaut()).resize((side, side), Image.Resampling.LANCZOS))
    mask_img = Image.fromarray((person_mask() * 255).astype(np.uint8))
    mask = np.asarray(mask_img.resize((side, side), Image.Resampling.BILINEAR)) / 255.0
    out = canvas.astype(np.float32)
    x, y = at
    h, w = canvas.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + side), min(h, y + side)
    region = (slice(y0, y1), slice(x0, x1))
    sub = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
    m = mask[sub][..., None]
    out[region] = person[sub] * m + out[region] * (1 - m)
    return np.asarray(np.round(out), dtype=np.uint8)


def solid(size: tuple[int, int], colour: tuple[int, int, int]) -> Array:
    return np.asarray(Image.new("RGB", size, colour), dtype=np.uint8)


def logo_wall(size: tuple[int, int]) -> Array:
    """A busy backdrop: bright magenta lettering repeated on dark teal (a press wall)."""
    img = Image.new("RGB", size, (10, 60, 55))
    draw = ImageDraw.Draw(img)
    for row, y in enumerate(range(0, size[1], 34)):
        for x in range(-60 * (row % 2), size[0], 120):
            draw.text((x, y), "LOGO 24", fill=(235, 40, 200), font_size=26)
    return np.asarray(img, dtype=np.uint8)


def noise(size: tuple[int, int], seed: int = 0) -> Array:
    """A busy multicoloured texture."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize(size, Image.Resampling.BICUBIC))


def encode(image: Array, fmt: str = "PNG", **params: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, fmt, **params)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def on_white(img: Image.Image) -> Array:
    if img.mode == "RGBA":
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        white.alpha_composite(img)
        img = white
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def fiducials(rgb: Array) -> list[tuple[float, float]]:
    """Centres of the green dots in an output, left to right then the lowest (the chin)."""
    img = rgb.astype(np.int16)
    green = (img[..., 1] - np.maximum(img[..., 0], img[..., 2])) > 110
    ys, xs = np.nonzero(green)
    if len(xs) < 3:
        raise AssertionError(f"fiducials not found ({len(xs)} green pixels)")
    points = np.column_stack([xs, ys]).astype(np.float64)
    # Three clusters: split by the biggest gaps (chin is lowest; eyes are left/right).
    chin_cut = points[:, 1].max() - 0.5 * np.ptp(points[:, 1])
    chin = points[points[:, 1] > chin_cut]
    eyes = points[points[:, 1] <= chin_cut]
    mid = eyes[:, 0].mean()
    right, left = eyes[eyes[:, 0] < mid], eyes[eyes[:, 0] >= mid]
    return [tuple(c.mean(axis=0)) for c in (right, left, chin)]  # type: ignore[misc]


def geometry(data: bytes) -> dict[str, float]:
    """Eye line, chin-to-crown (2 x eye-to-chin), centre (fractions) and roll (degrees)."""
    rgb = on_white(decode(data))
    height, width = rgb.shape[:2]
    right, left, chin = fiducials(rgb)
    spread = float(np.hypot(left[0] - right[0], left[1] - right[1]))
    source_spread = float(np.hypot(LEFT_EYE[0] - RIGHT_EYE[0], LEFT_EYE[1] - RIGHT_EYE[1]))
    drop = CHEEK_DROP * spread / source_spread
    eye_y = (right[1] + left[1]) / 2 - drop
    eye_x = (right[0] + left[0]) / 2
    return {
        "eye": eye_y / height,
        "head": 2 * (chin[1] - eye_y) / height,
        "centre": (eye_x + chin[0]) / 2 / width,
        "roll": float(np.degrees(np.arctan2(left[1] - right[1], left[0] - right[0]))),
    }


@cache
def _cascade() -> object:
    from skimage import data
    from skimage.feature import Cascade

    return Cascade(data.lbp_frontal_face_cascade_filename())


def judge_faces(rgb: Array, min_share: float = 0.1) -> list[dict[str, int]]:
    """Frontal faces scikit-image's LBP cascade finds (boxes as r, c, width, height).

    Only faces at least ``min_share`` of the image's smaller side count (the cascade finds
    false faces in small windows of hair or fabric).
    """
    from skimage.color import rgb2gray

    gray = rgb2gray(rgb)
    side = min(gray.shape)
    smallest = max(24, round(side * min_share))
    found = _cascade().detect_multi_scale(  # type: ignore[attr-defined]
        img=gray,
        scale_factor=1.15,
        step_ratio=1,
        min_size=(smallest, smallest),
        max_size=(side, side),
        min_neighbor_number=3,
    )
    return _merge([dict(box) for box in found])


def _merge(boxes: list[dict[str, int]]) -> list[dict[str, int]]:
    """One box per face: the cascade reports a face at several nearby scales."""
    kept: list[dict[str, int]] = []
    for box in sorted(boxes, key=lambda b: -b["width"]):
        cx, cy = box["c"] + box["width"] / 2, box["r"] + box["height"] / 2
        inside = any(
            k["c"] <= cx <= k["c"] + k["width"] and k["r"] <= cy <= k["r"] + k["height"]
            for k in kept
        )
        if not inside:
            kept.append(box)
    return kept


def dilate_bool(mask: npt.NDArray[np.bool_], radius: int) -> npt.NDArray[np.bool_]:
    """Grow a boolean mask by ``radius`` pixels (a max filter)."""
    img = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(2 * radius + 1))
    grown: npt.NDArray[np.bool_] = np.asarray(img) > 0
    return grown
