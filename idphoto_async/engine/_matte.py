"""Cut the person out (selfie segmentation + edge refinement) and lay them on the background."""

from __future__ import annotations

import attrs
import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from ._decode import RGBImage
from ._runtime import model

Alpha = npt.NDArray[np.float32]
"""An (H, W) float32 matte in [0, 1]."""


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


def segment(image: RGBImage) -> Alpha:
    """Person probability per pixel of ``image`` (selfie segmentation, 256 px, stretched)."""
    net = model("selfie_segmentation")
    h, w = image.shape[:2]
    tw, th = net.input_size
    interp = cv2.INTER_AREA if w > tw and h > th else cv2.INTER_LINEAR
    small = cv2.resize(image, (tw, th), interpolation=interp).astype(np.float32) / 255.0
    (prob,) = net.run(small)
    mask = np.asarray(cv2.resize(prob[..., 0], (w, h), interpolation=cv2.INTER_LINEAR))
    return np.asarray(np.clip(mask, 0.0, 1.0), dtype=np.float32)


def person_alpha(
    image: RGBImage,
    face_point: tuple[float, float],
    valid: Alpha | None = None,
    config: MatteConfig = MatteConfig(),
) -> Alpha:
    """The person's matte over ``image``; ``valid`` (1 where real pixels are) multiplies it."""
    mask = segment(image)
    if config.keep_main_blob:
        mask = _main_blob(mask, face_point)
    mask = _refine(image, mask, config)
    span = max(config.high - config.low, 1e-3)
    alpha = np.clip((mask - config.low) / span, 0.0, 1.0)
    alpha = alpha * alpha * (3.0 - 2.0 * alpha)  # smoothstep
    if valid is not None:
        alpha = alpha * valid
    return np.asarray(alpha, dtype=np.float32)


def _main_blob(mask: Alpha, face_point: tuple[float, float]) -> Alpha:
    """Zero the parts of ``mask`` not connected to the face (kept soft at the edges)."""
    solid = (mask >= 0.5).astype(np.uint8)
    count, labels = cv2.connectedComponents(solid, connectivity=8)
    if count <= 2:
        return mask
    h, w = mask.shape
    x = min(w - 1, max(0, round(face_point[0])))
    y = min(h - 1, max(0, round(face_point[1])))
    label = labels[y, x]
    if label == 0:
        return mask
    keep = (labels == label).astype(np.uint8)
    grow = max(3, round(0.01 * (h + w)))
    near = cv2.dilate(keep, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow)))
    return np.asarray(mask * near, dtype=np.float32)


def _refine(image: RGBImage, mask: Alpha, config: MatteConfig) -> Alpha:
    """Snap the coarse mask to the image's edges with a colour guided filter."""
    h, w = mask.shape
    radius = max(2, round(config.radius * float(np.hypot(h, w))))
    out = guided_filter(image.astype(np.float32) / 255.0, mask, radius, config.eps)
    return np.asarray(np.clip(out, 0.0, 1.0), dtype=np.float32)


def guided_filter(guide: npt.NDArray[np.float32], src: Alpha, radius: int, eps: float) -> Alpha:
    """He et al.'s guided filter with an RGB guide: ``src`` smoothed, following ``guide``'s edges.

    Per window, ``src ~ a . guide + b`` by ridge regression (``eps``); the output averages
    the windows' fits. Box filters make it O(pixels) whatever the radius.
    """
    size = (2 * radius + 1, 2 * radius + 1)

    def box(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.asarray(cv2.boxFilter(x, -1, size, borderType=cv2.BORDER_REFLECT))

    mean_i = box(guide)
    mean_p = box(src)
    cov_ip = box(guide * src[..., None]) - mean_i * mean_p[..., None]
    # Covariance of the guide's channels (symmetric 3x3 per pixel), regularised.
    var = np.empty((*guide.shape[:2], 3, 3), dtype=np.float32)
    for i in range(3):
        for j in range(i, 3):
            c = box(guide[..., i] * guide[..., j]) - mean_i[..., i] * mean_i[..., j]
            var[..., i, j] = var[..., j, i] = c
    var += eps * np.eye(3, dtype=np.float32)
    a = np.asarray(np.linalg.solve(var, cov_ip[..., None])[..., 0], dtype=np.float32)
    b = mean_p - (a * mean_i).sum(axis=2)
    return np.asarray((box(a) * guide).sum(axis=2) + box(b), dtype=np.float32)


def foreground_colors(image: RGBImage, alpha: Alpha) -> RGBImage:
    """Remove the old background's colour from semi-transparent edge pixels.

    Solves ``I = a F + (1 - a) B`` for F, with B the nearby clear-background colour
    (a weighted blur of the pixels with alpha near 0).
    """
    edge = (alpha > 0.02) & (alpha < 0.98)
    if not edge.any():
        return image
    h, w = alpha.shape
    sigma = max(2.0, 0.01 * float(np.hypot(h, w)))
    img = image.astype(np.float32)
    weight = (alpha <= 0.02).astype(np.float32)
    num = cv2.GaussianBlur(img * weight[..., None], (0, 0), sigma)
    den = cv2.GaussianBlur(weight, (0, 0), sigma)[..., None]
    background = np.where(den > 1e-3, num / np.maximum(den, 1e-3), img)
    a = np.maximum(alpha, 0.05)[..., None]
    fg = np.clip((img - (1.0 - a) * background) / a, 0.0, 255.0)
    out = np.where(edge[..., None], fg, img)
    return np.asarray(np.round(out), dtype=np.uint8)


def composite(
    image: RGBImage, alpha: Alpha, background: tuple[int, int, int] | None
) -> Image.Image:
    """RGBA with ``alpha`` when ``background`` is None, else RGB laid on that colour."""
    a = alpha[..., None]
    image = foreground_colors(image, alpha)
    if background is None:
        rgb = np.where(a > 0, image, 0).astype(np.uint8)
        rgba = np.dstack([rgb, np.round(alpha * 255).astype(np.uint8)])
        return Image.fromarray(rgba, "RGBA")
    bg = np.array(background, dtype=np.float32)
    out = image.astype(np.float32) * a + bg * (1.0 - a)
    return Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8), "RGB")
