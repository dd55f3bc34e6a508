"""The ``local`` engine: face detection, ID-photo framing, person cut-out, background."""

from __future__ import annotations

import io
import logging
import re

import attrs
import numpy as np
from PIL import Image

from ._base import EngineError, EngineRequest, EngineResult, OutputFormat
from ._decode import RGBImage, decode_image
from ._face import Face, FaceConfig, find_face
from ._framing import Framing, FramingConfig, frame
from ._imaging import warp
from ._matte import Alpha, MatteConfig, Subject, composite, person_alpha
from ._runtime import MODELS, model

log = logging.getLogger(__name__)

PROCESSING_FAILED = -1
_HEX = re.compile(r"#?([0-9a-fA-F]{6})")


@attrs.frozen
class LocalConfig:
    """All knobs of the local engine."""

    framing: FramingConfig = attrs.field(factory=FramingConfig)
    face: FaceConfig = attrs.field(factory=FaceConfig)
    matte: MatteConfig = attrs.field(factory=MatteConfig)
    jpeg_quality: int = 92


class LocalEngine:
    """Real ID photos offline: TensorFlow Lite models shipped in this package, run on LiteRT.

    ``process`` is synchronous and thread-safe (each thread keeps its own models);
    run it off the event loop.
    """

    name = "local"

    def __init__(self, config: LocalConfig | None = None) -> None:
        self.config = config or LocalConfig()

    def warm_up(self) -> None:
        """Load this thread's models now (a worker does it once, before its first photo)."""
        for name in MODELS:
            model(name)

    def process(self, request: EngineRequest) -> EngineResult:
        """Make the ID photo or raise `EngineError` (-7 bad image, -14 no face)."""
        background = parse_color(request.bg_color) if request.format == "jpg" else None
        image = decode_image(request.image)
        try:
            face = find_face(image, self.config.face)
            source_size = (image.shape[1], image.shape[0])
            size = request.size or source_size
            framing = frame(face.keypoints, size, self.config.framing, source_size)
            photo, valid = render(image, framing)
            alpha = person_alpha(photo, _subject(face, framing), valid, self.config.matte)
            data = encode(composite(photo, alpha, background), request.format, self.config)
        except EngineError:
            raise
        except Exception as exc:
            log.exception("local engine failed")
            raise EngineError(PROCESSING_FAILED, f"processing failed: {exc}") from exc
        return EngineResult(image=data, note=_note(face, valid))


def parse_color(value: str | None) -> tuple[int, int, int]:
    """``RRGGBB`` (optionally with ``#``) to an RGB tuple; None is white."""
    if value is None:
        return (255, 255, 255)
    match = _HEX.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"bg_color must be RRGGBB hex, got {value!r}")
    hexa = match.group(1)
    return (int(hexa[0:2], 16), int(hexa[2:4], 16), int(hexa[4:6], 16))


def render(image: RGBImage, framing: Framing) -> tuple[RGBImage, Alpha]:
    """Warp ``image`` into the output frame; also return where real source pixels landed.

    Where the source ends above the frame's bottom (a short source, or the slanted edge a
    roll correction leaves), each column's lowest real row is carried down to the bottom,
    so the body reaches the edge instead of stopping at a straight or slanted line.
    """
    photo, valid = warp(image, framing.matrix, framing.size)
    return extend_down(photo, valid)


def extend_down(photo: RGBImage, valid: Alpha) -> tuple[RGBImage, Alpha]:
    """Repeat each column's lowest fully-real pixel below it; those pixels become valid."""
    h = valid.shape[0]
    real = valid >= 0.999
    if real[-1].all() or not real.any():
        return photo, valid
    rows = np.arange(h)[:, None]
    lowest = np.where(real.any(axis=0), h - 1 - np.argmax(real[::-1], axis=0), -1)
    below = (rows > lowest[None, :]) & (lowest[None, :] >= 0)
    if not below.any():
        return photo, valid
    source_row = np.where(below, lowest[None, :], rows)
    cols = np.broadcast_to(np.arange(photo.shape[1])[None, :], source_row.shape)
    extended = photo[source_row, cols]
    return np.ascontiguousarray(extended), np.where(below, 1.0, valid).astype(np.float32)


def encode(img: Image.Image, fmt: OutputFormat, config: LocalConfig) -> bytes:
    """PNG (optimised) or JPEG bytes."""
    buf = io.BytesIO()
    if fmt == "jpg":
        img.convert("RGB").save(buf, "JPEG", quality=config.jpeg_quality, optimize=True)
    else:
        img.save(buf, "PNG", optimize=False, compress_level=3)
    return buf.getvalue()


def _subject(face: Face, framing: Framing) -> Subject:
    """The face's eyes, chin and the other faces' boxes, in output pixels."""
    others = []
    for x, y, w, h in face.others:
        corners = [framing.apply(p) for p in ((x, y), (x + w, y), (x, y + h), (x + w, y + h))]
        xs, ys = [c[0] for c in corners], [c[1] for c in corners]
        others.append((min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)))
    return Subject(
        framing.apply(face.keypoints.eye_centre), framing.apply(face.keypoints.chin), others
    )


def _note(face: Face, valid: Alpha) -> str:
    notes = []
    if face.faces_found > 1:
        notes.append(
            f"{face.faces_found} faces found; used the largest, the others are much smaller"
        )
    if float(np.mean(valid < 0.5)) > 0.005:
        notes.append("the photo extends past the source image; the gap is background")
    return "; ".join(notes)
