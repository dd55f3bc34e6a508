"""Find the main face: mediapipe face detection, then face-mesh landmarks around it."""

from __future__ import annotations

import threading
from typing import Any

import attrs
import cv2
import numpy as np
import numpy.typing as npt

from ._base import EngineError
from ._decode import RGBImage
from ._framing import FaceKeypoints

NO_FACE = -14
NO_FACE_MESSAGE = (
    "no face found: the input image content does not meet the requirements "
    "(a clearly visible, roughly frontal face is needed)"
)

# Face-mesh landmark indices (subject's right eye is on the image's left).
_RIGHT_EYE = (33, 133)
_LEFT_EYE = (362, 263)
_CHIN = 152
_FOREHEAD = 10

Points = npt.NDArray[np.float64]
Box = tuple[float, float, float, float]


@attrs.frozen
class FaceConfig:
    """Face-finding knobs."""

    min_confidence: float = 0.5
    crop_factor: float = 3.0
    """The face mesh runs on a square this many face-box sides wide around the face."""
    mesh_max_side: int = 640
    """The mesh crop is shrunk to at most this side (the model works at 192 px)."""


@attrs.frozen
class Face:
    """The face the photo is made of, in source-image pixels."""

    keypoints: FaceKeypoints
    box: Box
    """Detection box (x, y, width, height)."""
    faces_found: int
    from_mesh: bool
    """False when the mesh failed and the keypoints come from the detector's six points."""


class _Models:
    """One thread's mediapipe solution objects (they are not thread-safe), created lazily."""

    def __init__(self) -> None:
        self._detectors: dict[int, Any] = {}
        self._mesh: Any = None

    def detector(self, model: int, min_confidence: float) -> Any:
        if model not in self._detectors:
            from mediapipe.python.solutions import face_detection

            self._detectors[model] = face_detection.FaceDetection(
                model_selection=model, min_detection_confidence=min_confidence
            )
        return self._detectors[model]

    def mesh(self) -> Any:
        if self._mesh is None:
            from mediapipe.python.solutions import face_mesh

            self._mesh = face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, min_detection_confidence=0.3
            )
        return self._mesh


_local = threading.local()


def _models() -> _Models:
    models: _Models | None = getattr(_local, "models", None)
    if models is None:
        models = _local.models = _Models()
    return models


def find_face(image: RGBImage, config: FaceConfig = FaceConfig()) -> Face:
    """The largest, most central face in ``image``; ``EngineError(-14)`` if there is none."""
    boxes = detect_faces(image, config)
    if not boxes:
        raise EngineError(NO_FACE, NO_FACE_MESSAGE)
    box, six = max(boxes, key=lambda b: _prominence(b[0], image.shape[1], image.shape[0]))
    mesh = _mesh_keypoints(image, box, config)
    keypoints = mesh if mesh is not None else _keypoints_from_detection(six)
    return Face(keypoints, box, len(boxes), mesh is not None)


def detect_faces(image: RGBImage, config: FaceConfig = FaceConfig()) -> list[tuple[Box, Points]]:
    """Face boxes (x, y, w, h) and the detector's six keypoints, in pixels.

    Both the short-range model (close faces) and the full-range one (small faces in a wide
    shot) run; a box both find is kept once.
    """
    found: list[tuple[Box, Points]] = []
    for model in (0, 1):
        for box, kps in _detect(image, model, config):
            if all(_iou(box, other) < 0.3 for other, _ in found):
                found.append((box, kps))
    return found


def _detect(image: RGBImage, model: int, config: FaceConfig) -> list[tuple[Box, Points]]:
    height, width = image.shape[:2]
    result = _models().detector(model, config.min_confidence).process(image)
    found = []
    for det in result.detections or ():
        rel = det.location_data.relative_bounding_box
        box = (rel.xmin * width, rel.ymin * height, rel.width * width, rel.height * height)
        kps = np.array(
            [(k.x * width, k.y * height) for k in det.location_data.relative_keypoints],
            dtype=np.float64,
        )
        if box[2] > 1 and box[3] > 1:
            found.append((box, kps))
    return found


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _prominence(box: Box, width: int, height: int) -> float:
    """Area, discounted by distance from the image centre (0 at a corner's distance)."""
    x, y, w, h = box
    dx = (x + w / 2 - width / 2) / (width / 2)
    dy = (y + h / 2 - height / 2) / (height / 2)
    off_centre = min(1.0, float(np.hypot(dx, dy)) / np.sqrt(2))
    return float(w * h * (1.0 - 0.75 * off_centre))


def _mesh_keypoints(image: RGBImage, box: Box, config: FaceConfig) -> FaceKeypoints | None:
    """Run the face mesh on a square crop around ``box``; None if it finds no face."""
    x, y, w, h = box
    side = max(w, h) * config.crop_factor
    x0, y0 = x + w / 2 - side / 2, y + h / 2 - side / 2
    scale = min(1.0, config.mesh_max_side / side)
    out_side = max(1, round(side * scale))
    # Source -> crop: translate by (-x0, -y0) then scale; the area outside the image is grey.
    matrix = np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]])
    crop = cv2.warpAffine(
        image,
        matrix,
        (out_side, out_side),
        flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(128, 128, 128),
    )
    result = _models().mesh().process(crop)
    if not result.multi_face_landmarks:
        return None
    marks = result.multi_face_landmarks[0].landmark
    pts = np.array([(p.x * out_side, p.y * out_side) for p in marks], dtype=np.float64)
    pts = pts / scale + np.array([x0, y0])
    return FaceKeypoints(
        right_eye=_point(pts[list(_RIGHT_EYE)].mean(axis=0)),
        left_eye=_point(pts[list(_LEFT_EYE)].mean(axis=0)),
        chin=_point(pts[_CHIN]),
        forehead=_point(pts[_FOREHEAD]),
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
