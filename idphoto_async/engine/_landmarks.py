"""Face-mesh landmarks (468 points) on the raw model, around one detected face.

The region of interest follows the face-mesh graph: a square 1.5 times the detection box's
longer side, centred on the box and rotated so the eyes are level; the 192 px crop is fed
in [0, 1]; the second output is a face-presence logit.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ._decode import RGBImage
from ._detector import Detection
from ._imaging import invert, warp_image
from ._runtime import model

Points = npt.NDArray[np.float64]

ROI_SCALE = 1.5
MIN_PRESENCE = 0.9
"""Below this face-presence score the crop is not a face (detector false positives)."""
_MODEL = "face_landmark"

RIGHT_EYE = (33, 133)
"""Corners of the subject's right eye (on the image's left)."""
LEFT_EYE = (362, 263)
CHIN = 152
FOREHEAD = 10
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
    377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
"""The face outline, clockwise from the top of the forehead."""


def roi_matrix(detection: Detection, side: int) -> npt.NDArray[np.float64]:
    """2x3 affine map from source pixels to the ``side`` px crop around a detection."""
    right_eye, left_eye = detection.keypoints[0], detection.keypoints[1]
    angle = math.atan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0])
    return _square(detection.centre, ROI_SCALE * detection.side, angle, side)


def _square(
    centre: tuple[float, float], length: float, angle: float, side: int
) -> npt.NDArray[np.float64]:
    """Source -> crop map of a ``length`` square around ``centre``, turned by ``angle``."""
    k = side / length
    cos, sin = math.cos(-angle) * k, math.sin(-angle) * k
    linear = np.array([[cos, -sin], [sin, cos]])
    offset = np.array([side / 2, side / 2]) - linear @ np.array(centre)
    return np.hstack([linear, offset.reshape(2, 1)])


def _roi_from_points(pts: Points, side: int) -> npt.NDArray[np.float64]:
    """The crop map around a first set of landmarks (eye corners level, 1.5x their extent)."""
    right, left = pts[RIGHT_EYE[0]], pts[LEFT_EYE[1]]
    angle = math.atan2(left[1] - right[1], left[0] - right[0])
    cos, sin = math.cos(-angle), math.sin(-angle)
    turned = pts @ np.array([[cos, sin], [-sin, cos]])
    lo, hi = turned.min(axis=0), turned.max(axis=0)
    mid = (lo + hi) / 2
    centre = mid @ np.array([[cos, -sin], [sin, cos]])
    length = ROI_SCALE * float(max(hi - lo))
    return _square((float(centre[0]), float(centre[1])), length, angle, side)


def landmarks(image: RGBImage, detection: Detection) -> Points | None:
    """(468, 2) landmark points in source pixels, or None when the model sees no face.

    A second pass re-crops around the first pass's points (as the face-mesh graph does
    between video frames): the detector's box and eye angle are coarse on small faces.
    """
    side = model(_MODEL).input_size[0]
    first = _run(image, roi_matrix(detection, side))
    if first is None:
        return None
    second = _run(image, _roi_from_points(first, side))
    return second if second is not None else first


def _run(image: RGBImage, matrix: npt.NDArray[np.float64]) -> Points | None:
    net = model(_MODEL)
    side = net.input_size[0]
    crop = warp_image(image, matrix, (side, side))
    raw, presence = net.run(crop.astype(np.float32) / 255.0)
    if 1.0 / (1.0 + math.exp(-float(np.clip(presence.reshape(-1)[0], -50, 50)))) < MIN_PRESENCE:
        return None
    pts = raw.reshape(-1, 3)[:, :2].astype(np.float64)
    inverse = invert(matrix)
    return np.asarray(pts @ inverse[:, :2].T + inverse[:, 2], dtype=np.float64)
