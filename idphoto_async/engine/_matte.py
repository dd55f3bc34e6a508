"""Cut the person out (selfie segmentation + edge refinement) and lay them on the background."""

from __future__ import annotations

import threading
from typing import Any

import attrs
import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from ._decode import RGBImage

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


_local = threading.local()


def _segmenter() -> Any:
    """This thread's selfie-segmentation solution (mediapipe objects are not thread-safe)."""
    seg = getattr(_local, "segmenter", None)
    if seg is None:
        from mediapipe.python.solutions import selfie_segmentation

        seg = _local.segmenter = selfie_segmentation.SelfieSegmentation(model_selection=0)
    return seg


def person_alpha(
    image: RGBImage,
    face_point: tuple[float, float],
    valid: Alpha | None = None,
    config: MatteConfig = MatteConfig(),
) -> Alpha:
    """The person's matte over ``image``; ``valid`` (1 where real pixels are) multiplies it."""
    mask = np.asarray(_segmenter().process(image).segmentation_mask, dtype=np.float32)
    if config.keep_main_blob:
        mask = _main_blob(mask, face_point)
    mask = _refine(image, mask, config)
    span = max(config.high - config.low, 1e-3)
    alpha = np.clip((mask - config.low) / span, 0.0, 1.0)
    alpha = alpha * alpha * (3.0 - 2.0 * alpha)  # smoothstep
    if valid is not None:
        alpha = alpha * valid
    return alpha.astype(np.float32)


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
    """Snap the coarse mask to the image's edges (guided filter, or a bilateral fallback)."""
    h, w = mask.shape
    radius = max(2, round(config.radius * float(np.hypot(h, w))))
    ximgproc = getattr(cv2, "ximgproc", None)
    if ximgproc is not None:
        guide = image.astype(np.float32) / 255.0
        out = ximgproc.guidedFilter(guide, mask, radius, config.eps)
    else:  # pragma: no cover - opencv without contrib modules
        out = cv2.bilateralFilter(mask, 2 * radius + 1, 0.1, radius)
        out = cv2.GaussianBlur(out, (0, 0), radius / 3)
    return np.asarray(np.clip(out, 0.0, 1.0), dtype=np.float32)


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
