"""BlazeFace face detection on the raw models: letterbox, SSD anchors, decoding, weighted NMS.

The pre- and post-processing follow the published model cards and graph settings of the
two detectors (short range: 128 px input, 896 anchors on strides 8/16; full range: 192 px,
2304 anchors on stride 4). Boxes and the six keypoints (right eye, left eye, nose tip,
mouth, right ear, left ear) come back in source-image pixels.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from ._decode import RGBImage
from ._imaging import resize
from ._runtime import model

Floats = npt.NDArray[np.float64]


@attrs.frozen
class DetectorSpec:
    """How one BlazeFace model's outputs are laid out."""

    model: str
    input_size: int
    strides: tuple[int, ...]
    anchors_per_layer: int
    """Anchors per grid cell contributed by each layer (aspect ratio 1, plus interpolated)."""


SHORT_RANGE = DetectorSpec("face_detection_short", 128, (8, 16, 16, 16), 2)
FULL_RANGE = DetectorSpec("face_detection_full", 192, (4,), 1)
CLOSE_FACE = 0.2
"""A face this share of the image's longer side is one the short-range model sees well."""


@attrs.frozen
class Detection:
    """One face: box (x, y, width, height) and six keypoints, in source pixels."""

    box: tuple[float, float, float, float]
    keypoints: Floats = attrs.field(eq=False)
    """(6, 2): right eye, left eye, nose tip, mouth centre, right ear, left ear."""
    score: float

    @property
    def side(self) -> float:
        """The face's size: the larger side of its box."""
        return max(self.box[2], self.box[3])

    @property
    def centre(self) -> tuple[float, float]:
        x, y, w, h = self.box
        return (x + w / 2, y + h / 2)


@cache
def anchors(spec: DetectorSpec) -> Floats:
    """(N, 2) anchor centres in [0, 1] (SSD anchors with a fixed size of 1)."""
    centres: list[tuple[float, float]] = []
    layer = 0
    while layer < len(spec.strides):
        stride = spec.strides[layer]
        same = 0
        while layer + same < len(spec.strides) and spec.strides[layer + same] == stride:
            same += 1
        cells = math.ceil(spec.input_size / stride)
        per_cell = same * spec.anchors_per_layer
        for y in range(cells):
            for x in range(cells):
                centres.extend([((x + 0.5) / cells, (y + 0.5) / cells)] * per_cell)
        layer += same
    return np.array(centres, dtype=np.float64)


def letterbox(image: RGBImage, side: int) -> tuple[npt.NDArray[np.float32], float, float, float]:
    """``image`` fitted into a ``side`` square (zero padding), scaled to [-1, 1].

    Returns the tensor, the scale (tensor px per source px) and the padding (x, y).
    """
    h, w = image.shape[:2]
    scale = side / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = resize(image, (nw, nh))
    px, py = (side - nw) // 2, (side - nh) // 2
    tensor = np.full((side, side, 3), -1.0, dtype=np.float32)
    tensor[py : py + nh, px : px + nw] = small.astype(np.float32) / 127.5 - 1.0
    return tensor, scale, float(px), float(py)


def decode(
    raw_boxes: npt.NDArray[np.floating[Any]],
    raw_scores: npt.NDArray[np.floating[Any]],
    spec: DetectorSpec,
    min_score: float,
) -> tuple[Floats, Floats]:
    """Raw model outputs -> (M, 16) boxes [xc, yc, w, h, kx0, ky0, ...] in [0, 1] and scores."""
    logits = np.clip(raw_scores.reshape(-1).astype(np.float64), -100.0, 100.0)
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = scores >= min_score
    raw = raw_boxes[keep].astype(np.float64) / spec.input_size
    centre = anchors(spec)[keep]
    raw[:, 0:2] += centre
    raw[:, 4::2] += centre[:, :1]
    raw[:, 5::2] += centre[:, 1:]
    return raw, scores[keep]


def _iou(a: Floats, others: Floats) -> Floats:
    """IoU of one [xc, yc, w, h, ...] row with many."""
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx0, by0 = others[:, 0] - others[:, 2] / 2, others[:, 1] - others[:, 3] / 2
    bx1, by1 = others[:, 0] + others[:, 2] / 2, others[:, 1] + others[:, 3] / 2
    iw = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None)
    ih = np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    inter = iw * ih
    union = a[2] * a[3] + others[:, 2] * others[:, 3] - inter
    return np.asarray(inter / np.maximum(union, 1e-12), dtype=np.float64)


def weighted_nms(
    boxes: Floats, scores: Floats, threshold: float = 0.3
) -> list[tuple[Floats, float]]:
    """Blend overlapping candidates (IoU > ``threshold``), weighted by score; best first."""
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    out: list[tuple[Floats, float]] = []
    while len(scores):
        overlap = _iou(boxes[0], boxes) > threshold
        weights = scores[overlap]
        blended = (boxes[overlap] * weights[:, None]).sum(axis=0) / weights.sum()
        out.append((blended, float(scores[0])))
        boxes, scores = boxes[~overlap], scores[~overlap]
    return out


def detect(image: RGBImage, spec: DetectorSpec, min_score: float = 0.5) -> list[Detection]:
    """The faces one detector finds in ``image``, best first."""
    tensor, scale, px, py = letterbox(image, spec.input_size)
    raw_boxes, raw_scores = model(spec.model).run(tensor)
    boxes, scores = decode(raw_boxes, raw_scores, spec, min_score)
    found = []
    for row, score in weighted_nms(boxes, scores):
        pix = row * spec.input_size
        points = (np.vstack([pix[0:2], pix[4:].reshape(6, 2)]) - (px, py)) / scale
        w, h = pix[2] / scale, pix[3] / scale
        (xc, yc), keypoints = points[0], points[1:]
        if w > 1 and h > 1:
            box = (float(xc - w / 2), float(yc - h / 2), float(w), float(h))
            found.append(Detection(box, keypoints, score))
    return found


def detect_all(image: RGBImage, min_score: float = 0.5) -> list[Detection]:
    """Faces from both detectors (close faces and small faces in wide shots), each once.

    The full-range model runs only when the short-range one finds no face at least
    ``CLOSE_FACE`` of the image's longer side (it is coarse on faces smaller than that).
    A face both find keeps the more confident detection.
    """
    found = detect(image, SHORT_RANGE, min_score)
    if any(d.side >= CLOSE_FACE * max(image.shape[:2]) for d in found):
        return found
    for det in detect(image, FULL_RANGE, min_score):
        same = [i for i, other in enumerate(found) if box_iou(det.box, other.box) >= 0.3]
        if not same:
            found.append(det)
        elif all(det.score > found[i].score for i in same):
            found = [d for i, d in enumerate(found) if i not in same] + [det]
    return found


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / max(a[2] * a[3] + b[2] * b[3] - inter, 1e-12)
