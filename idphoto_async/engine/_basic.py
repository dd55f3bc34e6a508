"""The ``basic`` engine: Pillow only. It does NOT detect faces or segment the person."""

from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError

from ._base import EngineError, EngineRequest, EngineResult

__all__ = ["BasicEngine"]


class BasicEngine:
    """Crop, resize and re-encode; no face detection, no person segmentation.

    It decodes the image (applying the EXIF orientation), crops the centre to the requested
    aspect ratio and resizes it. It cannot cut the person out: a PNG result is RGBA but stays
    as opaque as the source (the background is NOT made transparent), and a JPG result is the
    image composited on ``bg_color`` (white by default), which only shows where the source
    itself was transparent. Use the ``local`` engine for real ID photos.
    """

    name = "basic"

    def process(self, request: EngineRequest) -> EngineResult:
        """Make the (cropped, resized) photo or raise EngineError(-7) for a non-image."""
        image = _decode(request.image)
        if request.size is not None and request.size != image.size:
            image = ImageOps.fit(image, request.size, Image.Resampling.LANCZOS)
        out = io.BytesIO()
        if request.format == "jpg":
            background = Image.new("RGBA", image.size, "#" + (request.bg_color or "FFFFFF"))
            Image.alpha_composite(background, image).convert("RGB").save(out, "JPEG", quality=95)
        else:
            image.save(out, "PNG")
        return EngineResult(out.getvalue())


def _decode(data: bytes) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as source:
            source.load()
            image = ImageOps.exif_transpose(source)
            return image.convert("RGBA")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise EngineError(-7, "invalid image file: it cannot be decoded as an image") from None
