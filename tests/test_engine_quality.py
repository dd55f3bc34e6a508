"""The local engine on real-portrait failure cases, built as synthetic composites.

Each case comes from ``tests/_portraits.py`` (the cut-out astronaut pasted on backdrops,
with other people, cut by the edge...), and the outcome is checked by a judge that is not
the engine's model: fiducial dots, scikit-image's LBP face cascade, colour measurements.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

pytest.importorskip("ai_edge_litert")
pytest.importorskip("skimage")

import _portraits as P

from idphoto_async.engine import EngineError, EngineRequest, get_engine
from idphoto_async.engine._framing import FramingConfig
from idphoto_async.engine._local import LocalEngine, extend_down
from idphoto_async.engine._matte import composite

Array = npt.NDArray[np.uint8]
SIZE = (295, 413)
CONFIG = FramingConfig()


@pytest.fixture(scope="module")
def engine() -> LocalEngine:
    return LocalEngine()


def refused(engine: LocalEngine, image: Array) -> EngineError:
    with pytest.raises(EngineError) as info:
        engine.process(EngineRequest(P.encode(image), SIZE, "jpg"))
    assert info.value.state == -14
    return info.value


def _group(people: int, scale: float = 0.9) -> Array:
    canvas = P.solid((440 * people + 20, 520), (200, 200, 200))
    for i in range(people):
        canvas = P.paste(canvas, scale, (440 * i, 40))
    return canvas


@pytest.mark.parametrize("people", [2, 3])
def test_people_of_similar_size_are_refused(engine: LocalEngine, people: int) -> None:
    error = refused(engine, _group(people))
    assert error.message.startswith(f"{people} faces of similar size")
    assert "crop to one person" in error.message


def test_a_somewhat_smaller_second_person_is_still_ambiguous(engine: LocalEngine) -> None:
    canvas = P.paste(P.solid((900, 560), (200, 200, 200)), 0.9, (0, 40))
    canvas = P.paste(canvas, 0.65, (480, 120))  # 0.72 of the first face
    assert "faces of similar size" in refused(engine, canvas).message


def test_a_crowd_behind_is_left_out(engine: LocalEngine) -> None:
    """Much smaller people beside the subject's head: success, only the subject remains."""
    canvas = P.solid((900, 640), (120, 130, 140))
    for x in (285, 430):
        canvas = P.paste(canvas, 0.32, (x, 205))
    canvas = P.paste(canvas, 1.0, (200, 88))
    # Sanity: the crowd's faces are inside the photo's frame (their dots are in the source).
    result = engine.process(EngineRequest(P.encode(canvas), SIZE, "png"))
    rgb = P.on_white(P.decode(result.image))
    assert len(P.fiducials(rgb)) == 3  # exactly the subject's three dots
    assert _green_clusters(rgb) == 3
    assert len(P.judge_faces(rgb, min_share=0.3)) == 1


def _green_clusters(rgb: Array) -> int:
    """Separate groups of fiducial-green pixels (each person carries three)."""
    img = rgb.astype(np.int16)
    green = (img[..., 1] - np.maximum(img[..., 0], img[..., 2])) > 110
    from skimage.measure import label

    return int(label(P.dilate_bool(green, 2)).max())


@pytest.mark.parametrize(
    ("name", "crop"),
    [
        ("left", (slice(None), slice(196, None))),
        ("right", (slice(None), slice(None, 252))),
        ("top", (slice(88, None), slice(None))),
        ("chin", (slice(None, 160), slice(None))),
    ],
)
def test_a_face_cut_by_the_edge_is_refused(
    engine: LocalEngine, name: str, crop: tuple[slice, slice]
) -> None:
    image = np.ascontiguousarray(P.astronaut()[crop])
    message = refused(engine, image).message
    assert "cut by the image edge" in message or message.startswith("no face found"), name


def test_hair_cut_at_the_top_is_accepted(engine: LocalEngine) -> None:
    """Only the face must be whole: a crop through the hair still makes a photo."""
    result = engine.process(EngineRequest(P.encode(P.astronaut()[40:]), SIZE, "jpg"))
    m = P.geometry(result.image)
    assert abs(m["eye"] - CONFIG.eye_line) <= 0.03, m


def _magenta(rgb: Array) -> float:
    img = rgb.astype(np.int16)
    return float(
        np.mean((np.minimum(img[..., 0], img[..., 2]) - img[..., 1] > 80) & (img[..., 0] > 150))
    )


def test_busy_background_leaves_no_remnant(engine: LocalEngine) -> None:
    """A logo wall of magenta lettering (a colour the portrait has none of) is removed."""
    source = P.paste(P.logo_wall((800, 640)), 1.0, (140, 128))
    data = P.encode(source)
    basic = get_engine("basic").process(EngineRequest(data, SIZE, "jpg"))
    assert _magenta(P.on_white(P.decode(basic.image))) > 0.005  # the judge sees the wall
    result = engine.process(EngineRequest(data, SIZE, "jpg"))
    assert _magenta(P.on_white(P.decode(result.image))) < 0.0005
    m = P.geometry(result.image)
    assert abs(m["eye"] - CONFIG.eye_line) <= 0.02 and abs(m["roll"]) <= 2.0, m


def test_no_remnant_on_a_noisy_background(engine: LocalEngine) -> None:
    """Beside the jaw (below the hair, above the shoulders) the photo is transparent."""
    source = P.paste(P.noise((800, 640)), 1.0, (140, 128))
    result = engine.process(EngineRequest(P.encode(source), SIZE, "png"))
    alpha = np.asarray(P.decode(result.image).getchannel("A"), dtype=np.float32) / 255
    m = P.geometry(result.image)
    eye_row = round(m["eye"] * SIZE[1])
    beside_jaw = slice(eye_row + 60, eye_row + 110)
    assert alpha[beside_jaw, :12].max() < 0.1
    assert alpha[beside_jaw, -12:].max() < 0.1
    assert alpha[beside_jaw, 140:155].min() > 0.9  # the face itself is opaque


@pytest.mark.parametrize(("tilt", "rows"), [(0.0, 186), (0.0, 230), (12.0, 200), (-10.0, 200)])
def test_the_body_reaches_the_bottom_edge(engine: LocalEngine, tilt: float, rows: int) -> None:
    """A source that ends just under the chin (and tilted ones): no edge above the bottom."""
    turned = Image.fromarray(P.astronaut()).rotate(
        tilt, Image.Resampling.BICUBIC, fillcolor=(128,) * 3
    )
    source = np.ascontiguousarray(np.asarray(turned)[:rows])
    result = engine.process(EngineRequest(P.encode(source), SIZE, "png"))
    alpha = np.asarray(P.decode(result.image).getchannel("A"), dtype=np.float32) / 255
    width = SIZE[0]
    centre = alpha[:, width // 4 : 3 * width // 4]
    assert centre[-1].min() > 0.9  # the bottom row under the face is the person
    # No horizontal or slanted cut: down each central column the person never stops.
    below_chin = centre[round(0.85 * SIZE[1]) :]
    assert (np.diff(below_chin, axis=0) > -0.2).all()
    m = P.geometry(result.image)
    assert abs(m["roll"]) <= 2.0, m
    # The fiducial judge reads chin-to-crown about 3 % larger than the engine's landmarks.
    assert CONFIG.head_share - 0.03 <= m["head"] <= CONFIG.max_head_share + 0.04, m


def test_extend_down_repeats_each_columns_lowest_real_row() -> None:
    photo = np.zeros((6, 3, 3), dtype=np.uint8)
    photo[:, :, 0] = np.arange(6)[:, None] * 10
    valid = np.ones((6, 3), dtype=np.float32)
    valid[4:, 0] = 0  # column 0 ends after row 3
    valid[2:, 2] = 0  # column 2 after row 1
    out, ok = extend_down(photo, valid)
    assert out[:, 0, 0].tolist() == [0, 10, 20, 30, 30, 30]
    assert out[:, 1, 0].tolist() == [0, 10, 20, 30, 40, 50]
    assert out[:, 2, 0].tolist() == [0, 10, 10, 10, 10, 10]
    assert ok.min() == 1.0


def test_decontamination_removes_the_background_colour() -> None:
    """A soft hair edge over pink, with the matte too generous: no pink glow on white."""
    width = 120
    person, pink = np.array([110.0, 80.0, 50.0]), np.array([255.0, 105.0, 180.0])
    x = np.arange(width, dtype=np.float32)
    true_alpha = np.clip((70 - x) / 10, 0, 1)  # person on the left, a 10 px soft edge
    rows = np.tile(true_alpha, (80, 1))
    image = np.round(rows[..., None] * person + (1 - rows[..., None]) * pink).astype(np.uint8)
    loose = np.clip(rows + 0.3, 0, 1).astype(np.float32)  # a matte that overshoots
    loose[:, 78:] = 0
    decontaminated = np.asarray(composite(image, loose, (255, 255, 255)), dtype=np.float32)
    naive = loose[..., None] * image + (1 - loose[..., None]) * 255.0
    band = (loose > 0.02) & (loose < 0.98)

    def pinkness(rgb: npt.NDArray[np.floating[object]]) -> float:
        return float(
            np.clip(np.minimum(rgb[..., 0], rgb[..., 2]) - rgb[..., 1], 0, None)[band].mean()
        )

    assert pinkness(naive) > 20
    assert pinkness(decontaminated) < 3


def test_passport_framing_numbers() -> None:
    """The documented defaults: ICAO 9303 asks chin to crown 70-80 % and eyes 30-50 %."""
    assert 0.70 <= CONFIG.head_share <= 0.80
    assert 0.30 <= CONFIG.eye_line <= 0.50
    assert CONFIG.max_head_share <= 0.80 and CONFIG.max_eye_line <= 0.50


def test_the_default_framing_is_passport_grade(engine: LocalEngine) -> None:
    result = engine.process(EngineRequest(P.encode(P.astronaut()), SIZE, "jpg"))
    m = P.geometry(result.image)
    assert 0.70 <= m["head"] <= 0.80, m
    assert 0.30 <= m["eye"] <= 0.50, m
