"""The engine's raw-model layer: BlazeFace anchors/decoding/NMS, the landmark ROI, provenance."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

pytest.importorskip("ai_edge_litert")
skdata = pytest.importorskip("skimage.data")

from idphoto_async.engine._detector import (  # noqa: E402
    FULL_RANGE,
    SHORT_RANGE,
    Detection,
    DetectorSpec,
    anchors,
    decode,
    detect,
    letterbox,
    weighted_nms,
)
from idphoto_async.engine._landmarks import CHIN, LEFT_EYE, RIGHT_EYE, landmarks, roi_matrix  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
Array = npt.NDArray[np.uint8]


@pytest.fixture(scope="module")
def astronaut() -> Array:
    return np.asarray(skdata.astronaut(), dtype=np.uint8)


def test_anchor_grids_match_the_models() -> None:
    short, full = anchors(SHORT_RANGE), anchors(FULL_RANGE)
    assert short.shape == (896, 2)
    assert full.shape == (2304, 2)
    # Short range: 16x16 cells with 2 anchors, then 8x8 cells with 6 (3 layers of stride 16).
    assert short[0].tolist() == short[1].tolist() == [0.5 / 16, 0.5 / 16]
    assert short[2].tolist() == [1.5 / 16, 0.5 / 16]
    assert short[512].tolist() == short[517].tolist() == [0.5 / 8, 0.5 / 8]
    assert full[-1].tolist() == [47.5 / 48, 47.5 / 48]


def test_decode_offsets_boxes_and_keypoints_by_their_anchor() -> None:
    raw = np.zeros((896, 16))
    raw[2, :4] = [12.8, -6.4, 32.0, 64.0]  # dx, dy, w, h in input pixels (128)
    raw[2, 4:6] = [1.28, 2.56]
    logits = np.full((896, 1), -20.0)
    logits[2] = 3.0
    boxes, scores = decode(raw, logits, SHORT_RANGE, 0.5)
    assert boxes.shape == (1, 16)
    ax, ay = 1.5 / 16, 0.5 / 16
    assert boxes[0, :4] == pytest.approx([ax + 0.1, ay - 0.05, 0.25, 0.5])
    assert boxes[0, 4:6] == pytest.approx([ax + 0.01, ay + 0.02])
    assert scores[0] == pytest.approx(1 / (1 + math.exp(-3.0)))


def test_weighted_nms_blends_overlaps_and_keeps_apart_boxes() -> None:
    pad = [0.0] * 12
    boxes = np.array(
        [[0.5, 0.5, 0.2, 0.2, *pad], [0.52, 0.5, 0.2, 0.2, *pad], [0.1, 0.1, 0.1, 0.1, *pad]]
    )
    out = weighted_nms(boxes, np.array([0.9, 0.3, 0.6]))
    assert len(out) == 2
    (first, s1), (second, s2) = out
    assert s1 == 0.9 and s2 == 0.6
    assert first[0] == pytest.approx((0.5 * 0.9 + 0.52 * 0.3) / 1.2)
    assert second[0] == pytest.approx(0.1)


def test_letterbox_pads_the_short_side() -> None:
    image = np.full((100, 200, 3), 255, dtype=np.uint8)
    tensor, scale, px, py = letterbox(image, 128)
    assert tensor.shape == (128, 128, 3)
    assert (scale, px, py) == (0.64, 0.0, 32.0)
    assert tensor[:32].max() == -1.0
    assert tensor[32:96].min() == 1.0


@pytest.mark.parametrize(
    ("spec", "top", "left"), [(SHORT_RANGE, 40, 120), (FULL_RANGE, 100, 300)], ids=["short", "full"]
)
def test_detection_moves_with_the_face_in_a_padded_image(
    astronaut: Array, spec: DetectorSpec, top: int, left: int
) -> None:
    """A face detected in a square image is found at the same place after padding."""
    (plain,) = detect(astronaut, spec)
    wide = np.pad(astronaut, ((top, 0), (left, 0), (0, 0)), constant_values=40)
    moved = max(detect(wide, spec), key=lambda d: d.score)
    tol = 0.08 * plain.side
    assert moved.box[0] - left == pytest.approx(plain.box[0], abs=tol)
    assert moved.box[1] - top == pytest.approx(plain.box[1], abs=tol)
    assert moved.box[2] == pytest.approx(plain.box[2], rel=0.15)
    right_eye, left_eye = moved.keypoints[0] - (left, top), moved.keypoints[1] - (left, top)
    assert right_eye == pytest.approx(plain.keypoints[0], abs=tol)
    assert right_eye[0] < left_eye[0]  # the subject's right eye is on the image's left


def test_roi_levels_the_eyes_and_centres_the_box() -> None:
    det = Detection(
        (100.0, 100.0, 80.0, 80.0), np.array([[120, 120], [160, 140]] + [[0, 0]] * 4), 1
    )
    m = roi_matrix(det, 192)
    eyes = np.array([[120, 120, 1], [160, 140, 1], [140, 140, 1]], dtype=float) @ m.T
    assert eyes[0, 1] == pytest.approx(eyes[1, 1])
    assert eyes[2] == pytest.approx([96, 96])
    assert np.hypot(*(eyes[1] - eyes[0])) == pytest.approx(np.hypot(40, 20) * 192 / 120)


def _eye_tilt(image: Array) -> float:
    det = max(detect(image, SHORT_RANGE), key=lambda d: d.score)
    pts = landmarks(image, det)
    assert pts is not None and pts.shape == (468, 2)
    right, left = pts[list(RIGHT_EYE)].mean(axis=0), pts[list(LEFT_EYE)].mean(axis=0)
    assert pts[CHIN][1] > (right[1] + left[1]) / 2  # chin below the eyes
    return math.degrees(math.atan2(left[1] - right[1], left[0] - right[0]))


@pytest.mark.parametrize("angle", [-20.0, 12.0, 25.0])
def test_landmarks_follow_a_rotated_face(astronaut: Array, angle: float) -> None:
    turned = Image.fromarray(astronaut).rotate(
        angle, Image.Resampling.BICUBIC, fillcolor=(128,) * 3
    )
    image = np.asarray(turned, dtype=np.uint8)
    # Pillow turns anticlockwise on screen, which raises the image's right side.
    assert _eye_tilt(image) - _eye_tilt(astronaut) == pytest.approx(-angle, abs=2.0)


def test_shipped_models_match_their_sources() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import engine_models
    finally:
        sys.path.pop(0)
    assert engine_models.check_shipped() == []
    names = set(engine_models.sources())
    shipped = {p.name for p in (ROOT / "idphoto_async/engine/models").glob("*.tflite")}
    assert names == shipped
    assert (ROOT / "idphoto_async/engine/models/LICENSE").read_text().count("Apache License") >= 1


def test_the_engine_does_not_need_mediapipe() -> None:
    code = (
        "import sys, io, numpy as np\n"
        "from PIL import Image\n"
        "from skimage.data import astronaut\n"
        "from idphoto_async.engine import get_engine, EngineRequest\n"
        "buf = io.BytesIO(); Image.fromarray(astronaut()).save(buf, 'PNG')\n"
        "get_engine('local').process(EngineRequest(buf.getvalue(), (295, 413), 'jpg'))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mediapipe', 'jax')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # nothing of mediapipe (or jax) is imported
