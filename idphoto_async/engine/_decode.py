"""Decode uploaded bytes into an upright RGB array (any format Pillow reads)."""

from __future__ import annotations

import io
import warnings

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from .._constants import MAX_DIMENSION
from ._base import EngineError

INVALID_IMAGE = -7
ORIENTATION = 0x0112
"""The EXIF orientation tag."""

RGBImage = npt.NDArray[np.uint8]
"""An (H, W, 3) uint8 RGB array."""


def decode_image(data: bytes, max_dimension: int = MAX_DIMENSION) -> RGBImage:
    """Decode ``data`` to an upright (EXIF orientation applied) RGB array.

    Transparent pixels are laid on white. Raises ``EngineError(-7)`` when ``data`` is not
    an image Pillow can read, is truncated, or is larger than ``max_dimension`` on a side.
    """
    if not data:
        raise EngineError(INVALID_IMAGE, "invalid image file: the upload is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                _check_size(img.size, max_dimension)
                img.load()
                # exif_transpose copies the image even when there is nothing to turn.
                turned = img.getexif().get(ORIENTATION, 1) not in (0, 1)
                return _to_rgb(ImageOps.exif_transpose(img) if turned else img)
    except EngineError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise EngineError(
            INVALID_IMAGE, "invalid image file: not an image format that can be read"
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise EngineError(INVALID_IMAGE, f"invalid image file: corrupted image ({exc})") from None


def _check_size(size: tuple[int, int], max_dimension: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise EngineError(INVALID_IMAGE, "invalid image file: the image has no pixels")
    if max(width, height) > max_dimension:
        raise EngineError(
            INVALID_IMAGE,
            f"invalid image file: {width}x{height} exceeds the {max_dimension}x{max_dimension}"
            " resolution limit",
        )


def _to_rgb(img: Image.Image) -> RGBImage:
    """Any mode -> RGB; alpha is flattened on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) or 1.0
        img = Image.fromarray((arr * (255.0 / hi)).clip(0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
