"""The local engine on the astronaut portrait (NASA, public domain, via scikit-image).

Metamorphic tests: whatever we do to the input (shift, shrink, wide border, tilt, busy
background), the ID photo the engine makes must have the same geometry, measured by running
face detection on the OUTPUT:

* eye line at ``EYE_LINE`` of the height from the top, within ``EYE_TOL`` of the height;
* chin-to-crown at ``HEAD_SHARE`` of the height, within ``HEAD_TOL``;
* face centre at half the width, within ``CENTRE_TOL`` of the width;
* eye line level within ``ROLL_TOL`` degrees.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

pytest.importorskip("ai_edge_litert")
cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")

from idphoto_async.engine import EngineError, EngineRequest  # noqa: E402
from idphoto_async.engine._face import find_face  # noqa: E402
from idphoto_async.engine._framing import (  # noqa: E402
    FaceKeypoints,
    FramingConfig,
    frame,
)
from idphoto_async.engine._local import LocalEngine, parse_color  # noqa: E402

Array = npt.NDArray[np.uint8]
CONFIG = FramingConfig()
EYE_LINE, EYE_TOL = CONFIG.eye_line, 0.02
HEAD_SHARE, HEAD_TOL = CONFIG.head_share, 0.04
CENTRE_TOL = 0.02
ROLL_TOL = 2.0
SIZES = [(295, 413), (413, 531), (600, 600)]


@pytest.fixture(scope="module")
def engine() -> LocalEngine:
    return LocalEngine()


@pytest.fixture(scope="module")
def astronaut() -> Array:
    return np.asarray(skdata.astronaut(), dtype=np.uint8)


def encode(image: Array, fmt: str = "PNG", **params: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, fmt, **params)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def on_white(img: Image.Image) -> Array:
    if img.mode == "RGBA":
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        white.alpha_composite(img)
        img = white
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def measure(data: bytes) -> dict[str, float]:
    """Eye line, head share and face centre of an output photo, as fractions of its size."""
    rgb = on_white(decode(data))
    height, width = rgb.shape[:2]
    face = find_face(rgb).keypoints
    return {
        "eye": face.eye_centre[1] / height,
        "head": (face.chin[1] - face.crown(CONFIG.crown_factor)[1]) / height,
        "centre": face.face_centre_x() / width,
        "roll": face.roll,
    }


def _shift(a: Array) -> Array:
    m = np.array([[1.0, 0.0, 90.0], [0.0, 1.0, 40.0]])
    return np.asarray(cv2.warpAffine(a, m, (512, 512), borderMode=cv2.BORDER_REPLICATE))


def _shrink(a: Array) -> Array:
    return np.asarray(cv2.resize(a, (256, 256), interpolation=cv2.INTER_AREA))


def _wide_border(a: Array) -> Array:
    return np.asarray(
        cv2.copyMakeBorder(a, 300, 300, 300, 300, cv2.BORDER_CONSTANT, value=(90, 120, 90))
    )


def _tilt(a: Array) -> Array:
    m = cv2.getRotationMatrix2D((256.0, 256.0), 7.0, 1.0)
    return np.asarray(cv2.warpAffine(a, m, (512, 512), borderMode=cv2.BORDER_REFLECT))


def _busy(a: Array) -> Array:
    noise = np.random.default_rng(0).integers(0, 256, (700, 820, 3), dtype=np.uint8)
    canvas = np.asarray(cv2.GaussianBlur(noise, (0, 0), 1.5), dtype=np.uint8)
    canvas[250:610, 380:740] = cv2.resize(a, (360, 360), interpolation=cv2.INTER_AREA)
    return canvas


TRANSFORMS: dict[str, Callable[[Array], Array]] = {
    "identity": lambda a: a,
    "shift": _shift,
    "shrink": _shrink,
    "wide_border": _wide_border,
    "tilt_7deg": _tilt,
    "busy_background": _busy,
}


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("transform", list(TRANSFORMS))
def test_framing_is_invariant(
    engine: LocalEngine, astronaut: Array, transform: str, size: tuple[int, int]
) -> None:
    source = encode(TRANSFORMS[transform](astronaut))
    result = engine.process(EngineRequest(source, size, "jpg"))
    assert decode(result.image).size == size
    m = measure(result.image)
    assert abs(m["eye"] - EYE_LINE) <= EYE_TOL, m
    assert abs(m["head"] - HEAD_SHARE) <= HEAD_TOL, m
    assert abs(m["centre"] - 0.5) <= CENTRE_TOL, m
    assert abs(m["roll"]) <= ROLL_TOL, m


def test_jpg_background_is_bg_color(engine: LocalEngine, astronaut: Array) -> None:
    """Top corners (the bottom ones are shoulders) are the colour, within JPEG error."""
    result = engine.process(EngineRequest(encode(astronaut), (413, 531), "jpg", "3366CC"))
    rgb = np.asarray(decode(result.image).convert("RGB"), dtype=np.int16)
    for patch in (rgb[:12, :12], rgb[:12, -12:]):
        assert np.abs(patch - np.array([0x33, 0x66, 0xCC])).max() <= 8


def test_jpg_default_background_is_white(engine: LocalEngine, astronaut: Array) -> None:
    result = engine.process(EngineRequest(encode(astronaut), (300, 400), "jpg"))
    rgb = np.asarray(decode(result.image).convert("RGB"), dtype=np.int16)
    assert rgb[:12, :12].min() >= 247


def test_png_is_transparent_around_an_opaque_face(engine: LocalEngine, astronaut: Array) -> None:
    result = engine.process(EngineRequest(encode(astronaut), (295, 413), "png", "3366CC"))
    img = decode(result.image)
    assert img.mode == "RGBA"
    alpha = np.asarray(img.getchannel("A"))
    assert alpha[:10, :10].max() == 0
    assert alpha[:10, -10:].max() == 0
    eye_y = round(EYE_LINE * 413)
    assert alpha[eye_y - 10 : eye_y + 40, 137:158].min() == 255


def test_default_size_is_the_source_size(engine: LocalEngine, astronaut: Array) -> None:
    result = engine.process(EngineRequest(encode(astronaut)))
    assert decode(result.image).size == (512, 512)
    assert decode(result.image).format == "PNG"


def test_exif_rotated_input_gives_the_same_photo(engine: LocalEngine, astronaut: Array) -> None:
    upright = engine.process(EngineRequest(encode(astronaut, "JPEG", quality=95), (295, 413)))
    stored = Image.fromarray(astronaut).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    rotated = engine.process(EngineRequest(buf.getvalue(), (295, 413)))
    a, b = measure(upright.image), measure(rotated.image)
    for key in ("eye", "head", "centre"):
        assert abs(a[key] - b[key]) <= 0.01, (a, b)
    diff = np.abs(on_white(decode(upright.image)).astype(int) - on_white(decode(rotated.image)))
    assert diff.mean() < 6


@pytest.mark.parametrize("name", ["gradient", "coffee"])
def test_no_face_is_state_minus_14(engine: LocalEngine, name: str) -> None:
    if name == "gradient":
        ramp = np.linspace(0, 255, 400, dtype=np.uint8)
        image = np.dstack([np.tile(ramp, (300, 1))] * 3)
    else:
        image = np.asarray(skdata.coffee(), dtype=np.uint8)
    with pytest.raises(EngineError) as info:
        engine.process(EngineRequest(encode(image), (295, 413), "jpg"))
    assert info.value.state == -14
    assert info.value.message.startswith("no face found")


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 40],
    ids=["empty", "text", "broken-png"],
)
def test_not_an_image_is_state_minus_7(engine: LocalEngine, data: bytes) -> None:
    with pytest.raises(EngineError) as info:
        engine.process(EngineRequest(data))
    assert info.value.state == -7


def test_truncated_jpeg_is_state_minus_7(engine: LocalEngine, astronaut: Array) -> None:
    data = encode(astronaut, "JPEG")
    with pytest.raises(EngineError) as info:
        engine.process(EngineRequest(data[: len(data) // 2]))
    assert info.value.state == -7


def test_several_faces_take_the_largest_and_say_so(engine: LocalEngine, astronaut: Array) -> None:
    big = cv2.resize(astronaut, (400, 400), interpolation=cv2.INTER_AREA)
    small = cv2.resize(astronaut, (220, 220), interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 720, 3), 200, dtype=np.uint8)
    canvas[40:440, 20:420] = big
    canvas[130:350, 470:690] = small
    result = engine.process(EngineRequest(encode(canvas), (295, 413), "jpg"))
    assert "2 faces found" in result.note
    m = measure(result.image)
    assert abs(m["head"] - HEAD_SHARE) <= HEAD_TOL


def test_threads_give_the_same_result(engine: LocalEngine, astronaut: Array) -> None:
    requests = [
        EngineRequest(encode(TRANSFORMS[name](astronaut)), (295, 413), "jpg")
        for name in ("identity", "shift", "tilt_7deg")
    ]
    sequential = [engine.process(r).image for r in requests]
    with ThreadPoolExecutor(3) as pool:
        parallel = list(pool.map(engine.process, requests * 2))
    for i, res in enumerate(parallel):
        expected = on_white(decode(sequential[i % 3])).astype(int)
        assert np.abs(on_white(decode(res.image)) - expected).mean() < 1.0


def test_frame_is_pure_geometry() -> None:
    """A tilted face maps to level eyes at the eye line with the configured head share."""
    face = FaceKeypoints(
        right_eye=(100, 100), left_eye=(140, 110), chin=(110, 170), forehead=(125, 60)
    )
    framing = frame(face, (300, 400), CONFIG)
    (_, ry), (_, ly) = framing.apply(face.right_eye), framing.apply(face.left_eye)
    xs = [framing.apply(p)[0] for p in (face.eye_centre, face.forehead, face.chin)]
    assert sum(xs) / 3 == pytest.approx(150)
    assert ry == pytest.approx(ly)
    assert (ry + ly) / 2 == pytest.approx(EYE_LINE * 400)
    crown = framing.apply(face.crown(CONFIG.crown_factor))
    chin = framing.apply(face.chin)
    assert (chin[1] - crown[1]) / 400 == pytest.approx(HEAD_SHARE, abs=0.02)
    assert framing.roll == pytest.approx(face.roll)


def test_framing_config_is_validated() -> None:
    with pytest.raises(ValueError, match="head_share"):
        FramingConfig(head_share=1.5)


def test_parse_color() -> None:
    assert parse_color(None) == (255, 255, 255)
    assert parse_color("3366cc") == (0x33, 0x66, 0xCC)
    assert parse_color("#FF0000") == (255, 0, 0)
    with pytest.raises(ValueError, match="RRGGBB"):
        parse_color("red")


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parent.parent / "samples").glob("0*")), ids=lambda p: p.name
)
def test_samples_succeed(engine: LocalEngine, path: Path) -> None:
    assert path.stat().st_size < 150_000
    result = engine.process(EngineRequest(path.read_bytes(), (295, 413), "jpg"))
    m = measure(result.image)
    assert abs(m["eye"] - EYE_LINE) <= EYE_TOL, m
    assert abs(m["head"] - HEAD_SHARE) <= HEAD_TOL, m
