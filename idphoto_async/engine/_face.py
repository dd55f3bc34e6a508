"""Find the one subject: BlazeFace detection, the refusals, then face-mesh landmarks.

An ID photo holds one whole face. The image is refused (state -14) when no face is found,
when another face is of comparable size (the subject is ambiguous), or when the subject's
face is cut by the image edge. Much smaller faces (a crowd behind) are kept as ``others``
so the cut-out can leave them out.
"""

from __future__ import annotations

import attrs
import numpy as np
import numpy.typing as npt

from ._base import EngineError
from ._decode import RGBImage
from ._detector import detect_all
from ._framing import FaceKeypoints
from ._landmarks import CHIN, FACE_OVAL, FOREHEAD, LEFT_EYE, RIGHT_EYE, landmarks

NO_FACE = -14
NO_FACE_MESSAGE = (
    "no face found: the input image content does not meet the requirements "
    "(a clearly visible, roughly frontal face is needed)"
)
CUT_FACE_MESSAGE = (
    "the face is cut by the image edge: the input image content does not meet the "
    "requirements (use a photo that shows the whole head)"
)

Points = npt.NDArray[np.float64]
Box = tuple[float, float, float, float]


def _share(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{attribute.name} must be within (0, 1), got {value}")


@attrs.frozen
class FaceConfig:
    """Face-finding knobs."""

    min_confidence: float = 0.5
    similar_size: float = attrs.field(default=0.6, validator=_share)
    """Another face at least this share of the subject's size makes the photo ambiguous."""
    max_cut: float = attrs.field(default=0.06, validator=_share)
    """How far (share of the face's size) the face outline may pass the image edge."""


@attrs.frozen
class Face:
    """The face the photo is made of, in source-image pixels."""

    keypoints: FaceKeypoints
    box: Box
    """Detection box (x, y, width, height)."""
    faces_found: int
    others: tuple[Box, ...] = ()
    """The boxes of the other (much smaller) faces."""


def find_face(image: RGBImage, config: FaceConfig = FaceConfig()) -> Face:
    """The subject's face in ``image``, or ``EngineError(-14)`` saying why there is none.

    Every detection is confirmed by the face-mesh model's own face-presence score, so a
    detector false positive (a patterned shirt) neither becomes the subject nor a rival.
    """
    height, width = image.shape[:2]
    found = detect_all(image, config.min_confidence)
    found.sort(key=lambda d: _prominence(d.box, width, height), reverse=True)
    faces = [(d, pts) for d in found if (pts := landmarks(image, d)) is not None]
    if not faces:
        raise EngineError(NO_FACE, NO_FACE_MESSAGE)
    (main, points), others = faces[0], faces[1:]
    rivals = [d for d, _ in others if d.side >= config.similar_size * main.side]
    if rivals:
        raise EngineError(
            NO_FACE,
            f"{len(rivals) + 1} faces of similar size: the input image content does not "
            "meet the requirements (crop to one person)",
        )
    if _cut_share(points[list(FACE_OVAL)], width, height) > config.max_cut:
        raise EngineError(NO_FACE, CUT_FACE_MESSAGE)
    boxes = tuple(d.box for d, _ in others)
    return Face(_keypoints(points), main.box, len(faces), boxes)


def _prominence(box: Box, width: int, height: int) -> float:
    """Area, discounted by distance from the image centre (0 at a corner's distance)."""
    x, y, w, h = box
    dx = (x + w / 2 - width / 2) / (width / 2)
    dy = (y + h / 2 - height / 2) / (height / 2)
    off_centre = min(1.0, float(np.hypot(dx, dy)) / np.sqrt(2))
    return float(w * h * (1.0 - 0.75 * off_centre))


def _cut_share(outline: Points, width: int, height: int) -> float:
    """How far the outline passes the image edge, as a share of the outline's size."""
    size = float(max(np.ptp(outline[:, 0]), np.ptp(outline[:, 1]), 1.0))
    past = max(
        float(-outline[:, 0].min()),
        float(outline[:, 0].max() - (width - 1)),
        float(-outline[:, 1].min()),
        float(outline[:, 1].max() - (height - 1)),
        0.0,
    )
    return past / size


def _keypoints(pts: Points) -> FaceKeypoints:
    return FaceKeypoints(
        right_eye=_point(pts[list(RIGHT_EYE)].mean(axis=0)),
        left_eye=_point(pts[list(LEFT_EYE)].mean(axis=0)),
        chin=_point(pts[CHIN]),
        forehead=_point(pts[FOREHEAD]),
    )


def _point(p: Points) -> tuple[float, float]:
    return (float(p[0]), float(p[1]))
