"""The ``local`` engine: face detection, ID-photo framing, person cut-out, background."""

from __future__ import annotations

import io
import logging
import re

import attrs
import cv2
import numpy as np
from PIL import Image

from ._base import EngineError, EngineRequest, EngineResult, OutputFormat
from ._decode import RGBImage, decode_image
from ._face import Face, FaceConfig, find_face
from ._framing import Framing, FramingConfig, frame
from ._matte import Alpha, MatteConfig, composite, person_alpha

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

    def process(self, request: EngineRequest) -> EngineResult:
        """Make the ID photo or raise `EngineError` (-7 bad image, -14 no face)."""
        background = parse_color(request.bg_color) if request.format == "jpg" else None
        image = decode_image(request.image)
        try:
            face = find_face(image, self.config.face)
            size = request.size or (image.shape[1], image.shape[0])
            framing = frame(face.keypoints, size, self.config.framing)
            photo, valid = render(image, framing)
            alpha = person_alpha(photo, _body_point(face, framing), valid, self.config.matte)
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

    Big reductions are done first with area averaging (no aliasing); outside the source the
    pixels repeat the edge (good for segmentation) and ``valid`` is 0 there.
    """
    matrix = framing.matrix.copy()
    source = image
    if framing.scale < 0.9:
        h, w = image.shape[:2]
        nw, nh = max(1, round(w * framing.scale)), max(1, round(h * framing.scale))
        source = np.asarray(cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA), np.uint8)
        matrix[:, 0] *= w / nw
        matrix[:, 1] *= h / nh
    flags = cv2.INTER_CUBIC if framing.scale > 1.1 else cv2.INTER_LINEAR
    photo = cv2.warpAffine(
        source, matrix, framing.size, flags=flags, borderMode=cv2.BORDER_REPLICATE
    )
    ones = np.ones(source.shape[:2], dtype=np.float64)
    valid = cv2.warpAffine(ones, matrix, framing.size, flags=cv2.INTER_LINEAR, borderValue=(0.0,))
    return np.asarray(photo, dtype=np.uint8), np.asarray(valid, dtype=np.float32)


def encode(img: Image.Image, fmt: OutputFormat, config: LocalConfig) -> bytes:
    """PNG (optimised) or JPEG bytes."""
    buf = io.BytesIO()
    if fmt == "jpg":
        img.convert("RGB").save(buf, "JPEG", quality=config.jpeg_quality, optimize=True)
    else:
        img.save(buf, "PNG", optimize=False, compress_level=3)
    return buf.getvalue()


def _body_point(face: Face, framing: Framing) -> tuple[float, float]:
    """A point surely on the person in the output: between the eyes and the chin."""
    eye, chin = face.keypoints.eye_centre, face.keypoints.chin
    return framing.apply(((eye[0] + chin[0]) / 2, (eye[1] + chin[1]) / 2))


def _note(face: Face, valid: Alpha) -> str:
    notes = []
    if face.faces_found > 1:
        notes.append(f"{face.faces_found} faces found; used the largest, most central one")
    if not face.from_mesh:
        notes.append("face landmarks not found; framing from the face box (approximate)")
    if float(np.mean(valid < 0.5)) > 0.005:
        notes.append("the photo extends past the source image; the gap is background")
    return "; ".join(notes)
