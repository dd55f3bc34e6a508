"""Find the main face: BlazeFace detection, then face-mesh landmarks around it."""

from __future__ import annotations

import attrs
import numpy as np
import numpy.typing as npt

from ._base import EngineError
from ._decode import RGBImage
from ._detector import detect_all
from ._framing import FaceKeypoints
from ._landmarks import CHIN, FOREHEAD, LEFT_EYE, RIGHT_EYE, landmarks

NO_FACE = -14
NO_FACE_MESSAGE = (
    "no face found: the input image content does not meet the requirements "
    "(a clearly visible, roughly frontal face is needed)"
)

Points = npt.NDArray[np.float64]
Box = tuple[float, float, float, float]


@attrs.frozen
class FaceConfig:
    """Face-finding knobs."""

    min_confidence: float = 0.5


@attrs.frozen
class Face:
    """The face the photo is made of, in source-image pixels."""

    keypoints: FaceKeypoints
    box: Box
    """Detection box (x, y, width, height)."""
    faces_found: int
    from_mesh: bool
    """False when the mesh failed and the keypoints come from the detector's six points."""


def find_face(image: RGBImage, config: FaceConfig = FaceConfig()) -> Face:
    """The largest, most central face in ``image``; ``EngineError(-14)`` if there is none."""
    found = detect_all(image, config.min_confidence)
    if not found:
        raise EngineError(NO_FACE, NO_FACE_MESSAGE)
    height, width = image.shape[:2]
    main = max(found, key=lambda d: _prominence(d.box, width, height))
    points = landmarks(image, main)
    keypoints = (
        _keypoints(points) if points is not None else _keypoints_from_detection(main.keypoints)
    )
    return Face(keypoints, main.box, len(found), points is not None)


def _prominence(box: Box, width: int, height: int) -> float:
    """Area, discounted by distance from the image centre (0 at a corner's distance)."""
    x, y, w, h = box
    dx = (x + w / 2 - width / 2) / (width / 2)
    dy = (y + h / 2 - height / 2) / (height / 2)
    off_centre = min(1.0, float(np.hypot(dx, dy)) / np.sqrt(2))
    return float(w * h * (1.0 - 0.75 * off_centre))


def _keypoints(pts: Points) -> FaceKeypoints:
    return FaceKeypoints(
        right_eye=_point(pts[list(RIGHT_EYE)].mean(axis=0)),
        left_eye=_point(pts[list(LEFT_EYE)].mean(axis=0)),
        chin=_point(pts[CHIN]),
        forehead=_point(pts[FOREHEAD]),
    )


def _keypoints_from_detection(six: Points) -> FaceKeypoints:
    """Approximate chin and forehead from the detector's eyes and mouth (mesh fallback)."""
    right_eye, left_eye, mouth = six[0], six[1], six[3]
    eyes = (right_eye + left_eye) / 2
    down = mouth - eyes
    return FaceKeypoints(
        right_eye=_point(right_eye),
        left_eye=_point(left_eye),
        chin=_point(mouth + 0.58 * down),
        forehead=_point(eyes - 0.68 * down),
    )


def _point(p: Points) -> tuple[float, float]:
    return (float(p[0]), float(p[1]))
