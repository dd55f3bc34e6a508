"""The few image operations the engine needs, on Pillow and numpy (no OpenCV: 150 MB saved).

Arrays are (H, W, 3) uint8 RGB or (H, W) float32; pixel centres sit at integer coordinates.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

RGB = npt.NDArray[np.uint8]
Gray = npt.NDArray[np.float32]
Matrix = npt.NDArray[np.float64]
"""A 2x3 affine matrix mapping source pixels to output pixels."""


def resize(image: RGB, size: tuple[int, int]) -> RGB:
    """``image`` at ``size`` (width, height): area-like when shrinking, bicubic when growing."""
    h, w = image.shape[:2]
    if (w, h) == size:
        return image
    shrink = size[0] < w and size[1] < h
    method = Image.Resampling.BOX if shrink else Image.Resampling.BICUBIC
    out = Image.fromarray(image).resize(size, method, reducing_gap=2.0 if shrink else None)
    return np.asarray(out, dtype=np.uint8)


def resize_gray(mask: Gray, size: tuple[int, int]) -> Gray:
    """A float mask at ``size`` (width, height), bilinear."""
    out = Image.fromarray(np.ascontiguousarray(mask, dtype=np.float32), "F")
    return np.asarray(out.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def shrink_by(x: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.float32]:
    """Block means over ``k`` x ``k`` tiles (the edge rows/columns that do not fill one go)."""
    h, w = x.shape[0] // k, x.shape[1] // k
    # Rows first (k slices of whole rows), then columns on the k-times smaller result: the
    # input is read about once, not k*k times as by k*k strided tile slices.
    rows = x[0 : h * k : k, : w * k].astype(np.float32, copy=True)
    for dy in range(1, k):
        rows += x[dy : h * k : k, : w * k]
    total = rows[:, 0::k].copy()
    for dx in range(1, k):
        total += rows[:, dx::k]
    total *= np.float32(1.0 / (k * k))
    return total


def dot3(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Per-pixel dot product of two (H, W, 3) arrays (faster than ``(a * b).sum(axis=2)``)."""
    out = a[..., 0] * b[..., 0]
    out += a[..., 1] * b[..., 1]
    out += a[..., 2] * b[..., 2]
    return np.asarray(out, dtype=np.float32)


def grow_to(x: npt.NDArray[np.float32], k: int, shape: tuple[int, int]) -> npt.NDArray[np.float32]:
    """Repeat each value over a ``k`` x ``k`` tile, padded by the edge to ``shape`` (H, W)."""
    h, w = x.shape[:2]
    out = np.empty((*shape, *x.shape[2:]), dtype=np.float32)
    tiles = out[: h * k, : w * k].reshape(h, k, w, k, *x.shape[2:])
    tiles[...] = x[:, None, :, None]
    out[h * k :, : w * k] = out[h * k - 1 : h * k, : w * k]
    out[:, w * k :] = out[:, w * k - 1 : w * k]
    return out


def invert(matrix: Matrix) -> Matrix:
    """The inverse of a 2x3 affine map."""
    linear = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear, (-linear @ matrix[:, 2]).reshape(2, 1)])


def crop_to_view(image: RGB, matrix: Matrix, size: tuple[int, int]) -> tuple[RGB, Matrix]:
    """The part of ``image`` that ``matrix`` maps into a ``size`` frame (2 px margin), and the
    matrix for that crop; the whole image when all of it is in view."""
    h, w = image.shape[:2]
    inv = invert(matrix)
    corners = np.array([[0, 0, 1], [size[0], 0, 1], [0, size[1], 1], [size[0], size[1], 1]])
    pts = corners @ inv.T
    x0 = int(np.clip(np.floor(pts[:, 0].min()) - 2, 0, w - 1))
    y0 = int(np.clip(np.floor(pts[:, 1].min()) - 2, 0, h - 1))
    x1 = int(np.clip(np.ceil(pts[:, 0].max()) + 3, x0 + 1, w))
    y1 = int(np.clip(np.ceil(pts[:, 1].max()) + 3, y0 + 1, h))
    if (x0, y0, x1, y1) == (0, 0, w, h):
        return image, matrix
    shifted = matrix.copy()
    shifted[:, 2] += matrix[:, :2] @ np.array([x0, y0], dtype=np.float64)
    return np.ascontiguousarray(image[y0:y1, x0:x1]), shifted


def warp(image: RGB, matrix: Matrix, size: tuple[int, int]) -> tuple[RGB, Gray]:
    """``image`` mapped by ``matrix`` into a ``size`` frame, and where real pixels landed.

    Outside the source the output is the source's mean colour; ``valid`` is 1 where the
    output comes from inside the source, falling to 0 over one pixel at its border.
    """
    photo, source_size, coeffs = _transform(image, matrix, size)
    if _inside(coeffs, source_size, size):
        return photo, np.ones((size[1], size[0]), dtype=np.float32)
    ones = Image.new("L", source_size, 255).transform(
        size, Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR, fillcolor=0
    )
    return photo, np.asarray(ones, dtype=np.float32) / 255.0


def _inside(coeffs: tuple[float, ...], source_size: tuple[int, int], size: tuple[int, int]) -> bool:
    """Whether every output pixel samples the source at least 2 px inside its border (then
    the valid map is all ones: no need to warp one)."""
    a, b, c, d, e, f = coeffs
    sw, sh = source_size
    for x in (0.5, size[0] - 0.5):
        for y in (0.5, size[1] - 0.5):  # pixel centres of the corners (the map is affine)
            u, v = a * x + b * y + c, d * x + e * y + f
            if not (2.0 <= u <= sw - 2.0 and 2.0 <= v <= sh - 2.0):
                return False
    return True


def warp_image(image: RGB, matrix: Matrix, size: tuple[int, int]) -> RGB:
    """`warp` without the ``valid`` map (model crops, which do not need it)."""
    return _transform(image, matrix, size)[0]


def _transform(
    image: RGB, matrix: Matrix, size: tuple[int, int]
) -> tuple[RGB, tuple[int, int], tuple[float, ...]]:
    """The warped image, the (pre-scaled) source's size and Pillow's affine coefficients.

    Large reductions are pre-shrunk (area average) and enlargements pre-grown (bicubic), so
    the final bilinear sampling works near 1:1.
    """
    source, matrix = crop_to_view(image, matrix.astype(np.float64), size)
    h, w = source.shape[:2]
    image = source
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.8 or scale > 1.25:
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        source = resize(image, (nw, nh))
        matrix = matrix.copy()
        matrix[:, 0] *= w / nw
        matrix[:, 1] *= h / nh
    sh, sw = source.shape[:2]
    # Pillow wants the output-to-source map, for pixel corners: shift by half a pixel.
    inv = invert(matrix)
    coeffs = (
        inv[0, 0], inv[0, 1], inv[0, 2] - 0.5 * (inv[0, 0] + inv[0, 1]) + 0.5,
        inv[1, 0], inv[1, 1], inv[1, 2] - 0.5 * (inv[1, 0] + inv[1, 1]) + 0.5,
    )  # fmt: skip
    fill = tuple(int(v) for v in source.reshape(-1, 3)[:: max(1, sh * sw // 4096)].mean(axis=0))
    photo = Image.fromarray(source).transform(
        size, Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR, fillcolor=fill
    )
    return np.asarray(photo, dtype=np.uint8), (sw, sh), tuple(float(c) for c in coeffs)


SHIFTED_SUM_MAX_RADIUS = 8
"""Up to this radius `box_mean` adds shifted copies; above, it uses summed-area tables."""


def box_mean(x: npt.NDArray[np.float32], radius: int) -> npt.NDArray[np.float32]:
    """Mean over a (2r+1)^2 window (edges reflected); any channels.

    Small windows (the engine's) add shifted slices of the padded array, row pass then
    column pass, in float32: several times faster than summed-area tables at these sizes.
    """
    if radius > SHIFTED_SUM_MAX_RADIUS:
        return _box_mean_table(x, radius)
    k = 2 * radius + 1
    h, w = x.shape[:2]
    pad = [(radius, radius), (radius, radius)] + [(0, 0)] * (x.ndim - 2)
    padded = np.pad(x.astype(np.float32, copy=False), pad, mode="reflect")
    rows = padded[0:h].copy()
    for i in range(1, k):
        rows += padded[i : i + h]
    total = rows[:, 0:w].copy()
    for i in range(1, k):
        total += rows[:, i : i + w]
    total *= np.float32(1.0 / (k * k))
    return total


def _box_mean_table(x: npt.NDArray[np.float32], radius: int) -> npt.NDArray[np.float32]:
    """`box_mean` via summed-area tables (float64): O(1) per pixel whatever the radius."""
    k = 2 * radius + 1
    pad = [(radius + 1, radius), (radius + 1, radius)] + [(0, 0)] * (x.ndim - 2)
    padded = np.pad(x.astype(np.float64), pad, mode="reflect")
    padded[0] = 0
    padded[:, 0] = 0
    table = padded.cumsum(axis=0).cumsum(axis=1)
    total = table[k:, k:] - table[:-k, k:] - table[k:, :-k] + table[:-k, :-k]
    return np.asarray(total / (k * k), dtype=np.float32)


def blur(x: npt.NDArray[np.float32], radius: int) -> npt.NDArray[np.float32]:
    """A smooth (two box passes, near-Gaussian) blur."""
    return box_mean(box_mean(x, radius), radius)


def dilate(mask: npt.NDArray[np.bool_], radius: int) -> npt.NDArray[np.bool_]:
    """Grow a boolean mask by ``radius`` pixels (square window), by shifted ORs per axis."""
    grown = mask.copy()
    for axis in (0, 1):
        source = grown.copy()
        n = source.shape[axis]
        for shift in range(1, min(radius, n - 1) + 1):
            ahead = [slice(None)] * 2
            behind = [slice(None)] * 2
            ahead[axis], behind[axis] = slice(shift, None), slice(None, n - shift)
            grown[tuple(behind)] |= source[tuple(ahead)]
            grown[tuple(ahead)] |= source[tuple(behind)]
    return grown


def component_at(mask: npt.NDArray[np.bool_], seed: tuple[int, int]) -> npt.NDArray[np.bool_]:
    """The 4-connected region of ``mask`` containing ``seed`` (x, y); empty if off the mask."""
    x, y = seed
    if not mask[y, x]:
        return np.zeros_like(mask)
    img = Image.fromarray(mask.astype(np.uint8) * 255, "L")
    ImageDraw.floodfill(img, (x, y), 128, thresh=0)
    region: npt.NDArray[np.bool_] = np.asarray(img) == 128
    return region
