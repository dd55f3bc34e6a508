"""The local engine on the astronaut portrait (NASA, public domain, via scikit-image).

Metamorphic tests: whatever we do to the input (shift, shrink, wide border, tilt, busy
background), the ID photo the engine makes must have the same geometry, measured on the
OUTPUT by an independent judge (the fiducial dots of ``tests/_portraits.py``, not the
engine's models):

* eye line at ``EYE_LINE`` of the height from the top, within ``EYE_TOL`` of the height;
* chin-to-crown (twice eye-to-chin) at ``HEAD_SHARE`` of the height, within ``HEAD_TOL``;
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
skdata = pytest.importorskip("skimage.data")

from _portraits import astronaut as dotted_astronaut  # noqa: E402
from _portraits import decode, encode, geometry, judge_faces, on_white  # noqa: E402

from idphoto_async.engine import EngineError, EngineRequest  # noqa: E402
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
"""The judge's fiducials are hand-placed: about 0.01 of eye line and 0.02 of head share."""
CENTRE_TOL = 0.02
ROLL_TOL = 2.0
SIZES = [(295, 413), (413, 531), (600, 600)]


@pytest.fixture(scope="module")
def engine() -> LocalEngine:
    return LocalEngine()


@pytest.fixture(scope="module")
def astronaut() -> Array:
    return dotted_astronaut()


measure = geometry


def _shift(a: Array) -> Array:
    out = np.pad(a, ((40, 0), (90, 0), (0, 0)), mode="edge")
    return np.ascontiguousarray(out[:512, :512])


def _shrink(a: Array) -> Array:
    return np.asarray(Image.fromarray(a).resize((256, 256), Image.Resampling.BOX))


def _wide_border(a: Array) -> Array:
    out = np.empty((1112, 1112, 3), dtype=np.uint8)
    out[:] = (90, 120, 90)
    out[300:812, 300:812] = a
    return out


def _tilt(a: Array) -> Array:
    return np.asarray(
        Image.fromarray(a).rotate(7.0, Image.Resampling.BICUBIC, fillcolor=(128,) * 3)
    )


def _busy(a: Array) -> Array:
    noise = np.random.default_rng(0).integers(0, 256, (350, 410, 3), dtype=np.uint8)
    canvas = np.array(Image.fromarray(noise).resize((820, 700), Image.Resampling.BICUBIC))
    canvas[250:610, 380:740] = np.asarray(
        Image.fromarray(a).resize((360, 360), Image.Resampling.BOX)
    )
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
        right_eye=(100, 100), left_eye=(140, 110), chin=(110, 170), forehead=(125, 75)
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
    """Each sample gives one centred face by the independent LBP cascade."""
    assert path.stat().st_size < 150_000
    result = engine.process(EngineRequest(path.read_bytes(), (295, 413), "jpg"))
    faces = judge_faces(on_white(decode(result.image)), min_share=0.3)
    assert len(faces) == 1, faces
    centre = faces[0]["c"] + faces[0]["width"] / 2
    assert abs(centre / 295 - 0.5) <= 0.06, faces
