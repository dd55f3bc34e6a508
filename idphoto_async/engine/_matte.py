"""Cut the person out and lay them on the background.

Selfie segmentation gives a coarse person mask over the framed photo. It is then limited to
the subject: a silhouette prior built from the face (a head zone, shoulders widening below
the chin) drops background clutter beside the head, other faces' heads are cleared, and
only the region connected to the face is kept. A colour guided filter snaps the edge to the
image, and the background's colour is taken out of the semi-transparent edge pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np
import numpy.typing as npt
from PIL import Image

from ._decode import RGBImage
from ._imaging import (
    blur,
    box_mean,
    component_at,
    dilate,
    dot3,
    grow_to,
    resize,
    resize_gray,
    shrink_by,
)
from ._runtime import model

Alpha = npt.NDArray[np.float32]
"""An (H, W) float32 matte in [0, 1]."""
Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.intp]


@attrs.frozen
class MatteConfig:
    """Segmentation and edge-refinement knobs."""

    low: float = 0.4
    """Mask values at or below this are background."""
    high: float = 0.85
    """Mask values at or above this are person."""
    radius: float = 0.008
    """Guided-filter radius as a share of the image diagonal."""
    eps: float = 0.02
    """Guided-filter regularisation (on a 0-1 intensity scale); smaller follows edges more."""
    keep_main_blob: bool = True
    """Drop person-like blobs not connected to the face (helmets, other people)."""
    head_half_width: float = 1.6
    """The head zone's half-width beside the face, in eye-to-chin lengths."""
    shoulder_drop: float = 0.45
    """Where the shoulders may start below the chin, in eye-to-chin lengths."""
    shoulder_slope: float = 2.5
    """How fast the allowed width grows below that (horizontal per vertical)."""


@attrs.frozen
class Subject:
    """Where the subject is in the framed photo (output pixels, eyes level)."""

    eye: tuple[float, float]
    chin: tuple[float, float]
    others: Sequence[tuple[float, float, float, float]] = ()
    """Other faces' boxes (x, y, w, h), to clear."""

    @property
    def unit(self) -> float:
        """Eye-to-chin length."""
        return max(1.0, self.chin[1] - self.eye[1])


def segment(image: RGBImage) -> Alpha:
    """Person probability per pixel of ``image`` (selfie segmentation, 256 px, stretched)."""
    net = model("selfie_segmentation")
    h, w = image.shape[:2]
    small = resize(image, net.input_size).astype(np.float32) / 255.0
    (prob,) = net.run(small)
    mask = resize_gray(prob[..., 0], (w, h))
    return np.asarray(np.clip(mask, 0.0, 1.0), dtype=np.float32)


def person_alpha(
    image: RGBImage,
    subject: Subject,
    valid: Alpha | None = None,
    config: MatteConfig = MatteConfig(),
) -> Alpha:
    """The subject's matte over ``image``; ``valid`` (1 where real pixels are) multiplies it."""
    mask = segment(image) * silhouette_prior(image.shape[:2], subject, config)
    mask = _clear_others(mask, subject)
    if config.keep_main_blob:
        mask = _main_blob(mask, subject)
    mask = _refine(image, mask, config)
    span = max(config.high - config.low, 1e-3)
    alpha = np.clip((mask - config.low) / span, 0.0, 1.0)
    alpha = alpha * alpha * (3.0 - 2.0 * alpha)  # smoothstep
    if valid is not None:
        alpha = alpha * valid
    return np.asarray(alpha, dtype=np.float32)


def silhouette_prior(shape: tuple[int, ...], subject: Subject, config: MatteConfig) -> Floats:
    """1 where the subject's head and body can be, falling to 0 over a soft margin."""
    h, w = shape[:2]
    u = subject.unit
    ex = subject.eye[0]
    ys = np.arange(h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    shoulders = subject.chin[1] + config.shoulder_drop * u
    half = config.head_half_width * u + np.clip(ys - shoulders, 0, None) * config.shoulder_slope
    margin = 0.25 * u
    prior = np.clip((half + margin - np.abs(xs - ex)) / margin, 0.0, 1.0)
    return np.asarray(prior, dtype=np.float32)


def _clear_others(mask: Alpha, subject: Subject) -> Alpha:
    """Zero the other faces' heads (a box 1.5x theirs), except over the subject's face."""
    if not subject.others:
        return mask
    h, w = mask.shape
    keep = np.zeros((h, w), dtype=bool)
    u = subject.unit
    ex, ey = subject.eye
    y0, y1 = max(0, round(ey - 1.4 * u)), min(h, round(subject.chin[1] + 0.2 * u))
    x0, x1 = max(0, round(ex - 0.9 * u)), min(w, round(ex + 0.9 * u))
    keep[y0:y1, x0:x1] = True
    out = mask.copy()
    for x, y, bw, bh in subject.others:
        cx, cy = x + bw / 2, y + bh / 2
        rx, ry = 0.75 * bw, 0.75 * bh
        xa, xb = max(0, round(cx - rx)), min(w, round(cx + rx))
        ya, yb = max(0, round(cy - ry * 1.2)), min(h, round(cy + ry))
        if xa < xb and ya < yb:
            region = out[ya:yb, xa:xb]
            region[~keep[ya:yb, xa:xb]] = 0.0
    return out


def _main_blob(mask: Alpha, subject: Subject) -> Alpha:
    """Zero the parts of ``mask`` not connected to the face (kept soft at the edges)."""
    h, w = mask.shape
    eye, chin = subject.eye, subject.chin
    seed = (
        min(w - 1, max(0, round((eye[0] + chin[0]) / 2))),
        min(h - 1, max(0, round((eye[1] + chin[1]) / 2))),
    )
    solid = mask >= 0.5
    region = component_at(solid, seed)
    if not region.any():
        return mask
    near = dilate(region, max(2, round(0.005 * (h + w))))
    return np.asarray(mask * near, dtype=np.float32)


def _refine(image: RGBImage, mask: Alpha, config: MatteConfig) -> Alpha:
    """Snap the coarse mask to the image's edges with a colour guided filter."""
    h, w = mask.shape
    radius = max(2, round(config.radius * float(np.hypot(h, w))))
    out = guided_filter(image, mask, radius, config.eps)
    return np.asarray(np.clip(out, 0.0, 1.0), dtype=np.float32)


def guided_filter(image: RGBImage, src: Alpha, radius: int, eps: float) -> Alpha:
    """He et al.'s fast guided filter with an RGB guide: ``src`` following ``image``'s edges.

    Per window, ``src ~ a . guide + b`` by ridge regression (``eps``); the fits are made on
    a half-size copy (their coefficients are smooth) and applied at full size. Box filters
    make it O(pixels) whatever the radius.
    """
    full = image.astype(np.float32)
    full *= np.float32(1.0 / 255.0)
    guide = shrink_by(full, 2)
    small = shrink_by(src, 2)
    r = max(1, radius // 2)
    mean_i = box_mean(guide, r)
    mean_p = box_mean(small, r)
    cov_ip = box_mean(guide * small[..., None], r) - mean_i * mean_p[..., None]
    var = {
        (i, j): box_mean(guide[..., i] * guide[..., j], r) - mean_i[..., i] * mean_i[..., j]
        for i, j in _PAIRS
    }
    ab = np.empty((*small.shape, 4), dtype=np.float32)
    ab[..., 0:3] = _solve_symmetric3(var, cov_ip, eps)
    ab[..., 3] = mean_p - dot3(ab[..., 0:3], mean_i)
    grown = grow_to(box_mean(ab, r), 2, (src.shape[0], src.shape[1]))
    out = dot3(grown[..., :3], full)
    out += grown[..., 3]
    return out


_PAIRS = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))
"""The upper half of the guide's 3x3 covariance."""


def _solve_symmetric3(var: dict[tuple[int, int], Floats], rhs: Floats, eps: float) -> Floats:
    """Per pixel, solve ``(var + eps I) x = rhs`` for a symmetric 3x3 ``var`` (upper half).

    Cramer's rule on the cofactors, vectorised: far cheaper than ``np.linalg.solve`` on a
    stack of tiny matrices. ``eps > 0`` keeps the matrices positive definite (the
    determinant is at least ``eps**3``), so float32 is precise enough.
    """
    e32 = np.float32(eps)
    a, b, c = var[0, 0] + e32, var[0, 1], var[0, 2]
    d, e, f = var[1, 1] + e32, var[1, 2], var[2, 2] + e32
    c00, c01, c02 = d * f - e * e, c * e - b * f, b * e - c * d
    c11, c12, c22 = a * f - c * c, b * c - a * e, a * d - b * b
    inv_det = np.float32(1.0) / (a * c00 + b * c01 + c * c02)
    r0, r1, r2 = rhs[..., 0], rhs[..., 1], rhs[..., 2]
    x = np.empty(rhs.shape, dtype=np.float32)
    x[..., 0] = (c00 * r0 + c01 * r1 + c02 * r2) * inv_det
    x[..., 1] = (c01 * r0 + c11 * r1 + c12 * r2) * inv_det
    x[..., 2] = (c02 * r0 + c12 * r1 + c22 * r2) * inv_det
    return x


def _local_mean(
    img: Floats, weight: Floats, radius: int, ys: Ints, xs: Ints
) -> tuple[Floats, Floats]:
    """Weighted local mean colour of ``img`` and the local weight mass at pixels (ys, xs).

    The means are smooth: they are made at 1/4 size and sampled bilinearly at the pixels
    asked for only (the edge band), not stretched over the whole frame.
    """
    h, w = weight.shape[:2]
    r = max(1, radius // 4)
    # Tile means of img * weight and of weight, without a full-size 4-channel stack.
    tiles = np.empty((h // 4, w // 4, 4), dtype=np.float32)
    tiles[..., :3] = shrink_by(img * weight[..., None], 4)
    tiles[..., 3] = shrink_by(weight, 4)
    packed = blur(tiles, r)
    small = np.empty_like(packed)
    np.clip(packed[..., :3] / np.maximum(packed[..., 3:], 1e-4), 0.0, 255.0, out=small[..., :3])
    np.clip(packed[..., 3], 0.0, 1.0, out=small[..., 3])
    sampled = _bilinear_at(small, (ys + 0.5) * (small.shape[0] / h) - 0.5, xs, w)
    return sampled[:, :3], sampled[:, 3]


def _bilinear_at(grid: Floats, sy: Floats, xs: Ints, width: int) -> Floats:
    """``grid`` (h, w, C) sampled bilinearly at rows ``sy`` and the columns that ``xs`` (pixels
    of a ``width`` frame) map to, pixel centres aligned, clamped at the border: (N, C)."""
    gh, gw = grid.shape[:2]
    sx = (xs + 0.5) * (gw / width) - 0.5
    fy = np.clip(sy, 0.0, gh - 1.0)
    fx = np.clip(sx, 0.0, gw - 1.0)
    y0 = np.minimum(fy.astype(np.intp), gh - 2) if gh > 1 else np.zeros_like(xs)
    x0 = np.minimum(fx.astype(np.intp), gw - 2) if gw > 1 else np.zeros_like(xs)
    y1, x1 = np.minimum(y0 + 1, gh - 1), np.minimum(x0 + 1, gw - 1)
    ty, tx = (fy - y0)[:, None], (fx - x0)[:, None]
    top = grid[y0, x0] * (1 - tx) + grid[y0, x1] * tx
    bottom = grid[y1, x0] * (1 - tx) + grid[y1, x1] * tx
    return np.asarray(top * (1 - ty) + bottom * ty, dtype=np.float32)


def decontaminate(image: RGBImage, alpha: Alpha) -> tuple[RGBImage, Alpha]:
    """Take the old background's colour out of the edge: colours and alpha.

    Near the edge each pixel is read as a mix of the nearby person colour F and the nearby
    clear-background colour B (local weighted means). Its share of F along the B-to-F line
    caps its alpha (a pixel that looks like the background does not stay opaque), and the
    colour is unmixed, ``F = (I - (1 - a) B) / a``, so no glow of B is left on any backdrop.
    """
    edge = (alpha > 0.01) & (alpha < 0.99)
    if not edge.any():
        return image, alpha
    h, w = alpha.shape
    radius = max(8, round(0.025 * float(np.hypot(h, w))))
    band = dilate(edge, 2)
    img = image.astype(np.float32)
    # Only the band around the edge changes: work on its pixels alone.
    ys, xs = np.nonzero(band)
    bg, back_mass = _local_mean(img, (alpha <= 0.02).astype(np.float32), radius, ys, xs)
    fore, fore_mass = _local_mean(img, (alpha >= 0.98).astype(np.float32), 2 * radius, ys, xs)
    pix, a0 = img[ys, xs], alpha[ys, xs]
    line = fore - bg
    length2 = _rowdot(line, line)
    share = _rowdot(pix - bg, line) / np.maximum(length2, 1e-3)
    has_back = back_mass > 0.02
    distinct = (length2 > 30.0**2) & has_back & (fore_mass > 0.02)
    capped = np.where(distinct, np.minimum(a0, np.clip(share * 1.15, 0.0, 1.0)), a0)
    a = np.maximum(capped, 0.05)[:, None]
    unmixed = np.clip((pix - (1.0 - a) * bg) / a, 0.0, 255.0)
    colours = image.copy()
    colours[ys, xs] = np.round(np.where(has_back[:, None], unmixed, pix)).astype(np.uint8)
    out_alpha = alpha.astype(np.float32, copy=True)
    out_alpha[ys, xs] = capped
    return colours, out_alpha


def _rowdot(a: Floats, b: Floats) -> Floats:
    """Row-wise dot product of two (N, 3) arrays."""
    return np.asarray(a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1] + a[:, 2] * b[:, 2], dtype=np.float32)


def composite(
    image: RGBImage, alpha: Alpha, background: tuple[int, int, int] | None
) -> Image.Image:
    """RGBA with ``alpha`` when ``background`` is None, else RGB laid on that colour."""
    image, alpha = decontaminate(image, alpha)
    a = alpha[..., None]
    if background is None:
        rgb = np.where(a > 0, image, 0).astype(np.uint8)
        rgba = np.dstack([rgb, np.round(alpha * 255).astype(np.uint8)])
        return Image.fromarray(rgba, "RGBA")
    bg = np.array(background, dtype=np.float32)
    out = image.astype(np.float32) * a + bg * (1.0 - a)
    return Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8), "RGB")
