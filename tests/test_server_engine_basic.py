"""The basic engine: decode, EXIF transpose, centre crop, resize, PNG/JPG with background."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from idphoto_async.engine import EngineError, EngineRequest, _basic, get_engine
from idphoto_async.engine._basic import BasicEngine


def _png(size: tuple[int, int], mode: str = "RGB", color: object = "red") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, "PNG")  # type: ignore[arg-type]
    return buf.getvalue()


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_registry_name_and_docs_say_what_it_does_not_do() -> None:
    assert get_engine("basic").name == "basic"
    assert "does NOT detect faces" in (_basic.__doc__ or "")
    assert "no face detection" in (BasicEngine.__doc__ or "")


def test_not_an_image_is_minus_7() -> None:
    with pytest.raises(EngineError) as info:
        BasicEngine().process(EngineRequest(b"GIF89a broken"))
    assert info.value.state == -7


def test_png_keeps_size_and_is_opaque_rgba() -> None:
    out = _open(BasicEngine().process(EngineRequest(_png((120, 80)))).image)
    assert (out.format, out.mode, out.size) == ("PNG", "RGBA", (120, 80))
    assert out.getextrema()[3] == (255, 255)


def test_centre_crop_to_the_requested_aspect() -> None:
    source = Image.new("RGB", (300, 100), "blue")
    source.paste((255, 0, 0), (100, 0, 200, 100))  # red centre third
    buf = io.BytesIO()
    source.save(buf, "PNG")
    out = _open(BasicEngine().process(EngineRequest(buf.getvalue(), size=(100, 100))).image)
    rgb = out.convert("RGB")
    assert out.size == (100, 100)
    assert rgb.getpixel((50, 50)) == (255, 0, 0)
    assert rgb.getpixel((2, 50)) == (255, 0, 0)  # the blue sides were cropped away


def test_jpg_composites_on_bg_color() -> None:
    transparent = _png((50, 50), "RGBA", (0, 0, 0, 0))
    request = EngineRequest(transparent, size=(100, 120), format="jpg", bg_color="00FF00")
    out = _open(BasicEngine().process(request).image)
    assert (out.format, out.mode, out.size) == ("JPEG", "RGB", (100, 120))
    red, green, blue = out.getpixel((50, 60))  # type: ignore[misc]
    assert red < 10 and green > 245 and blue < 10


def test_jpg_default_background_is_white() -> None:
    transparent = _png((50, 50), "RGBA", (0, 0, 0, 0))
    out = _open(BasicEngine().process(EngineRequest(transparent, format="jpg")).image)
    assert min(out.getpixel((25, 25))) > 245  # type: ignore[arg-type]


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees
    buf = io.BytesIO()
    Image.new("RGB", (200, 100), "red").save(buf, "JPEG", exif=exif)
    out = _open(BasicEngine().process(EngineRequest(buf.getvalue())).image)
    assert out.size == (100, 200)
