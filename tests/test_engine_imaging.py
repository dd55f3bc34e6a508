"""The engine's fast image primitives agree with plain (slow) reference computations."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

pytest.importorskip("PIL")

from idphoto_async.engine._imaging import (
    SHIFTED_SUM_MAX_RADIUS,
    box_mean,
    dilate,
    dot3,
    grow_to,
    shrink_by,
)
from idphoto_async.engine._matte import _solve_symmetric3, decontaminate

Array = npt.NDArray[np.float32]


def _reference_box_mean(x: Array, r: int) -> Array:
    pad = [(r, r), (r, r)] + [(0, 0)] * (x.ndim - 2)
    p = np.pad(x.astype(np.float64), pad, mode="reflect")
    h, w = x.shape[:2]
    rows = [
        [p[y : y + 2 * r + 1, c : c + 2 * r + 1].mean(axis=(0, 1)) for c in range(w)]
        for y in range(h)
    ]
    return np.asarray(rows, dtype=np.float32)


@pytest.mark.parametrize("shape", [(23, 17), (12, 31, 3)])
@pytest.mark.parametrize("radius", [0, 1, 2, 5, SHIFTED_SUM_MAX_RADIUS + 1])
def test_box_mean_is_the_reflected_window_mean(shape: tuple[int, ...], radius: int) -> None:
    x = np.random.default_rng(radius).random(shape).astype(np.float32)
    np.testing.assert_allclose(box_mean(x, radius), _reference_box_mean(x, radius), atol=1e-5)


@pytest.mark.parametrize("radius", [0, 1, 3])
@pytest.mark.parametrize("shape", [(20, 15), (1, 9), (6, 1)])
def test_dilate_grows_by_a_square_window(shape: tuple[int, int], radius: int) -> None:
    mask = np.random.default_rng(7).random(shape) > 0.9
    expected = np.zeros_like(mask)
    for y, x in np.argwhere(mask):
        expected[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1] = True
    np.testing.assert_array_equal(dilate(mask, radius), expected)


def test_shrink_and_grow_are_tile_mean_and_tile_repeat() -> None:
    x = np.random.default_rng(1).random((9, 7, 3)).astype(np.float32)
    small = shrink_by(x, 2)
    np.testing.assert_allclose(small, x[:8, :6].reshape(4, 2, 3, 2, 3).mean(axis=(1, 3)), 1e-6)
    big = grow_to(small, 2, (9, 7))
    repeated = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)
    np.testing.assert_array_equal(big, np.pad(repeated, [(0, 1), (0, 1), (0, 0)], mode="edge"))


def test_dot3_and_the_symmetric_solve_match_numpy() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.random((5, 4, 3)).astype(np.float32), rng.random((5, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(dot3(a, b), (a * b).sum(axis=2), rtol=1e-6)
    base = rng.random((5, 4, 3, 3)).astype(np.float32)
    spd = base @ base.transpose(0, 1, 3, 2)
    upper = {(i, j): spd[..., i, j] for i in range(3) for j in range(i, 3)}
    expected = np.linalg.solve(spd + 0.02 * np.eye(3), b[..., None])[..., 0]
    np.testing.assert_allclose(_solve_symmetric3(upper, b, 0.02), expected, rtol=1e-4)


def test_decontaminate_changes_nothing_away_from_the_edge() -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (60, 50, 3), dtype=np.uint8)
    alpha = np.zeros((60, 50), dtype=np.float32)
    alpha[20:40, 15:35] = 1.0
    alpha[20:40, 14] = alpha[20:40, 35] = 0.5
    colours, capped = decontaminate(image, alpha)
    far = np.ones((60, 50), dtype=bool)
    far[15:45, 10:40] = False  # the edge band and more
    np.testing.assert_array_equal(colours[far], image[far])
    np.testing.assert_array_equal(capped[far], alpha[far])
    assert not np.array_equal(colours, image)  # the edge itself is unmixed


def test_warp_skips_the_valid_map_only_when_it_is_all_ones() -> None:
    """`warp`'s shortcut (the output wholly inside the source) gives the map Pillow gives."""
    from PIL import Image

    from idphoto_async.engine._imaging import _transform, warp

    rng = np.random.default_rng(7)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    inside = 0
    for _ in range(120):
        angle, scale = rng.uniform(-0.4, 0.4), rng.uniform(0.3, 2.5)
        cos, sin = scale * np.cos(angle), scale * np.sin(angle)
        matrix = np.array([[cos, sin, rng.uniform(-150, 40)], [-sin, cos, rng.uniform(-150, 40)]])
        size = (int(rng.integers(8, 90)), int(rng.integers(8, 90)))
        _, source_size, coeffs = _transform(image, matrix, size)
        ones = Image.new("L", source_size, 255).transform(
            size, Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR, fillcolor=0
        )
        _, valid = warp(image, matrix, size)
        np.testing.assert_array_equal(valid, np.asarray(ones, dtype=np.float32) / 255.0)
        inside += bool(valid.min() == 1.0)
    assert 10 < inside < 110  # both paths ran


@pytest.mark.parametrize("k", [3, 4])
def test_shrink_by_larger_tiles(k: int) -> None:
    x = np.random.default_rng(k).random((13, 18, 4)).astype(np.float32)
    h, w = 13 // k, 18 // k
    expected = x[: h * k, : w * k].reshape(h, k, w, k, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(shrink_by(x, k), expected, rtol=1e-5)
