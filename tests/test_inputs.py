"""Image inputs: sniffing, the seed's limits, uploads, image URLs and the source rule."""

from __future__ import annotations

import io
import os
import struct
import time
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from idphoto_async import _inputs
from idphoto_async._constants import INLINE_UPLOAD_BYTES, MAX_UPLOAD_BYTES
from idphoto_async._errors import ValidationError
from idphoto_async._inputs import (
    ImageInfo,
    Upload,
    inspect_image_bytes,
    inspect_image_fileobj,
    inspect_image_path,
    prepare_upload,
    sniff_format,
    validate_image_url,
    validate_source,
)

# (Pillow format, save options, canonical name, file suffix)
FORMATS = [
    ("JPEG", {}, "jpeg", ".jpg"),
    ("PNG", {}, "png", ".png"),
    ("BMP", {}, "bmp", ".bmp"),
    ("WEBP", {}, "webp", ".webp"),
    ("TIFF", {}, "tiff", ".tif"),
    ("TIFF", {"compression": "tiff_lzw"}, "tiff", ".tiff"),
    ("SGI", {}, "sgi", ".rgb"),
]
FORMAT_IDS = ["jpeg", "png", "bmp", "webp", "tiff", "tiff-lzw", "sgi"]


def image_bytes(pil_format: str = "JPEG", size: tuple[int, int] = (12, 9), **options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 120, 40)).save(buffer, pil_format, **options)
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG with an IHDR declaring ``width`` x ``height`` and no pixel data at all."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def rejected(call: Any, *args: Any) -> str:
    """The message of the ValidationError ``call(*args)`` raises."""
    with pytest.raises(ValidationError) as info:
        call(*args)
    return str(info.value)


@pytest.fixture
def jpeg_path(tmp_path: Path) -> Path:
    path = tmp_path / "portrait.jpg"
    path.write_bytes(image_bytes())
    return path


# --- sniff_format --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00", "png"),
        (b"BM\x00\x00", "bmp"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "webp"),
        (b"II*\x00\x08\x00", "tiff"),
        (b"MM\x00*\x00\x00", "tiff"),
        (b"\x01\xda\x01\x01", "sgi"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", None),
        (b"XXXX\x10\x00\x00\x00WEBP", None),
        (b"GIF89a", None),
        (b"%PDF-1.7", None),
        (b"\x00\x00\x00\x18ftypheic", None),
        (b"hello world", None),
        (b"\xff\xd8", None),
        (b"", None),
    ],
)
def test_sniff_format(header: bytes, expected: str | None) -> None:
    assert sniff_format(header) == expected


@given(st.binary(max_size=40))
def test_sniff_format_never_raises(header: bytes) -> None:
    assert sniff_format(header) in (None, "jpeg", "png", "bmp", "webp", "tiff", "sgi")


# --- real images in every accepted format ---------------------------------------------------


@pytest.mark.parametrize(("pil_format", "options", "name", "suffix"), FORMATS, ids=FORMAT_IDS)
def test_every_accepted_format(
    tmp_path: Path, pil_format: str, options: dict[str, Any], name: str, suffix: str
) -> None:
    data = image_bytes(pil_format, **options)
    path = tmp_path / f"photo{suffix}"
    path.write_bytes(data)
    expected = ImageInfo(format=name, width=12, height=9, size_bytes=len(data))
    assert sniff_format(data[:32]) == name
    assert inspect_image_path(path) == expected
    assert inspect_image_path(str(path)) == expected
    assert inspect_image_bytes(data) == expected
    assert inspect_image_bytes(bytearray(data)) == expected
    with path.open("rb") as stream:
        assert inspect_image_fileobj(stream) == expected
    assert expected.content_type == Image.MIME[pil_format]
    with prepare_upload(path) as upload:
        assert upload.filename == path.name
        assert upload.content_type == expected.content_type
        assert upload.info == expected
    with prepare_upload(data) as upload:
        assert upload.filename == f"image{expected.extension}"


def test_type_comes_from_the_bytes_not_the_extension(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(image_bytes("JPEG"))
    assert inspect_image_path(path).format == "jpeg"
    with prepare_upload(path) as upload:
        assert upload.content_type == "image/jpeg"
        assert upload.filename == "photo.png"


def test_trailing_data_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "padded.png"
    path.write_bytes(image_bytes("PNG"))
    with path.open("r+b") as stream:
        stream.truncate(MAX_UPLOAD_BYTES)  # sparse: 20 MB, all but the header never written
    info = inspect_image_path(path)
    assert (info.width, info.height, info.size_bytes) == (12, 9, MAX_UPLOAD_BYTES)


# --- the seed's limits ----------------------------------------------------------------------


def test_declared_5000x5000_png_is_rejected_without_decoding(tmp_path: Path) -> None:
    data = png_header(5000, 5000)
    assert len(data) < 100  # no pixel data at all: the size must come from the header
    path = tmp_path / "huge.png"
    path.write_bytes(data)
    start = time.perf_counter()
    for message in (rejected(inspect_image_path, path), rejected(inspect_image_bytes, data)):
        assert "5000 x 5000" in message
        assert "resize it to at most 4096 x 4096" in message
        assert "huge.png" in message or "image data" in message
    assert time.perf_counter() - start < 0.5


def test_4096_is_allowed_and_4097_is_not() -> None:
    assert inspect_image_bytes(png_header(4096, 4096)).width == 4096
    assert "4096 x 4097" in rejected(inspect_image_bytes, png_header(4096, 4097))


@pytest.mark.parametrize("side", [10_000, 20_000])  # Pillow warns, then refuses
def test_decompression_bombs_are_rejected(side: int) -> None:
    assert "resize it to at most 4096 x 4096" in rejected(
        inspect_image_bytes, png_header(side, side)
    )


def test_file_over_20_mb_is_rejected_from_its_size(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0")
    os.truncate(path, MAX_UPLOAD_BYTES + 1)  # sparse
    message = rejected(inspect_image_path, path)
    assert "big.jpg" in message
    assert "compress it below 20 MB" in message
    assert f"{MAX_UPLOAD_BYTES + 1:,} bytes" in message


def test_bytes_and_file_objects_over_20_mb_are_rejected() -> None:
    data = b"\xff\xd8\xff" + bytes(MAX_UPLOAD_BYTES)
    assert "compress it below 20 MB" in rejected(inspect_image_bytes, data)
    assert "compress it below 20 MB" in rejected(inspect_image_fileobj, io.BytesIO(data))


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"name,size\nalice,3\n", "a text file"),
        (image_bytes("GIF"), "a GIF image"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "a PDF document"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00", "a HEIC image"),
        (b"\x00\x01\x02\x03\xfe\xfd", "of an unknown type"),
        (b"\xff\xfe\xfd\xfc", "of an unknown type"),
        (b"plain\x00text", "of an unknown type"),
    ],
)
def test_unsupported_types_are_named(tmp_path: Path, data: bytes, named: str) -> None:
    path = tmp_path / "upload.jpg"
    path.write_bytes(data)
    for message in (rejected(inspect_image_path, path), rejected(inspect_image_bytes, data)):
        assert named in message
        assert "convert it to JPG or PNG" in message


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    assert "is empty" in rejected(inspect_image_path, path)
    assert "is empty" in rejected(inspect_image_bytes, b"")


@pytest.mark.parametrize(
    "data",
    [b"\xff\xd8\xff" + b"\x00" * 100, b"BM not a bitmap", b"\x89PNG\r\n\x1a\n" + b"\x00" * 8],
    ids=["jpeg", "bmp", "png"],
)
def test_corrupt_images_are_rejected(data: bytes) -> None:
    message = rejected(inspect_image_bytes, data)
    assert "corrupted or truncated" in message
    assert "0x" not in message  # no Pillow object reprs


def test_truncated_png_says_why() -> None:
    assert "Truncated" in rejected(inspect_image_bytes, png_header(300, 300)[:20])


@given(
    st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"RIFF\0\0\0\0WEBP", b"II*\0"])
    | st.sampled_from([b"MM\0*", b"\x01\xda"]),
    st.binary(max_size=200),
)
def test_garbage_after_a_magic_number_only_raises_validation_error(
    magic: bytes, rest: bytes
) -> None:
    try:
        info = inspect_image_bytes(magic + rest)
    except ValidationError:
        return
    assert 1 <= info.width <= 4096
    assert 1 <= info.height <= 4096


# --- paths that are not image files --------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    message = rejected(inspect_image_path, tmp_path / "nope.jpg")
    assert "nope.jpg" in message
    assert "does not exist" in message


def test_directory(tmp_path: Path) -> None:
    assert "is a directory" in rejected(inspect_image_path, tmp_path)


def test_fifo_is_not_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    assert "not a regular file" in rejected(inspect_image_path, fifo)


def test_bad_path_string() -> None:
    assert "cannot be read" in rejected(inspect_image_path, "bad\x00name.jpg")


def test_unreadable_file(jpeg_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def deny(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(_inputs, "open", deny, raising=False)
    message = rejected(inspect_image_path, jpeg_path)
    assert "portrait.jpg" in message
    assert "Permission denied" in message
    assert "permissions" in message


def test_unreadable_file_for_real(jpeg_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads everything")
    jpeg_path.chmod(0)
    assert "cannot be read" in rejected(inspect_image_path, jpeg_path)


# --- file objects --------------------------------------------------------------------------


def test_file_object_position_is_restored(jpeg_path: Path) -> None:
    with jpeg_path.open("rb") as stream:
        stream.seek(7)
        assert inspect_image_fileobj(stream).format == "jpeg"
        assert stream.tell() == 7
    buffer = io.BytesIO(b"GIF89a" + bytes(20))
    buffer.seek(3)
    rejected(inspect_image_fileobj, buffer)
    assert buffer.tell() == 3


def test_text_mode_file_object(jpeg_path: Path) -> None:
    with jpeg_path.open("r", encoding="latin-1") as stream:
        assert "binary mode" in rejected(inspect_image_fileobj, stream)
        assert "binary mode" in rejected(prepare_upload, stream)


def test_closed_file_object(jpeg_path: Path) -> None:
    stream = jpeg_path.open("rb")
    stream.close()
    assert "seekable binary file" in rejected(inspect_image_fileobj, stream)


# --- uploads -------------------------------------------------------------------------------


def test_small_path_upload_is_read_when_checked(jpeg_path: Path) -> None:
    """No file I/O left for the event loop: the bytes come with the check (worker thread)."""
    with prepare_upload(jpeg_path) as upload:
        filename, stream, content_type = upload.httpx_file()
        assert (filename, content_type) == ("portrait.jpg", "image/jpeg")
        assert isinstance(stream, io.BytesIO)
        assert stream.read() == jpeg_path.read_bytes()


def large_png(directory: Path) -> Path:
    """A valid PNG padded (sparsely) past `INLINE_UPLOAD_BYTES`."""
    path = directory / "large.png"
    path.write_bytes(image_bytes("PNG"))
    with path.open("r+b") as grow:
        grow.truncate(INLINE_UPLOAD_BYTES + 1)
    return path


def test_large_path_upload_streams_from_an_open_file_and_closes_it(tmp_path: Path) -> None:
    path = large_png(tmp_path)
    upload = prepare_upload(path)
    filename, stream, content_type = upload.httpx_file()
    assert (filename, content_type) == ("large.png", "image/png")
    assert isinstance(stream, io.BufferedReader)  # an open file, not the bytes
    assert not stream.closed
    assert upload.httpx_file()[1] is stream  # opened once
    assert stream.read() == path.read_bytes()
    upload.close()
    assert stream.closed
    upload.close()  # twice is fine


def test_upload_is_a_context_manager(jpeg_path: Path) -> None:
    with prepare_upload(str(jpeg_path)) as upload:
        stream = upload.httpx_file()[1]
    assert stream.closed


def test_bytes_upload(jpeg_path: Path) -> None:
    data = jpeg_path.read_bytes()
    with prepare_upload(memoryview(data)) as upload:
        filename, stream, content_type = upload.httpx_file()
        assert (filename, content_type) == ("image.jpg", "image/jpeg")
        assert stream.read() == data
    assert stream.closed


def test_file_object_upload_is_used_as_is_and_left_open(jpeg_path: Path) -> None:
    with jpeg_path.open("rb") as source:
        with prepare_upload(source) as upload:
            assert upload.filename == "portrait.jpg"
            assert upload.httpx_file()[1] is source
        assert not source.closed
    anonymous = io.BytesIO(jpeg_path.read_bytes())
    with prepare_upload(anonymous) as upload:
        assert upload.filename == "image.jpg"


class _Pipe(io.RawIOBase):
    """A non-seekable binary stream, like a pipe or a socket."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.name = 3  # file descriptors have an int name

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._data.readinto(buffer)


def test_unseekable_stream_is_read_into_memory(jpeg_path: Path) -> None:
    data = jpeg_path.read_bytes()
    with prepare_upload(_Pipe(data)) as upload:  # type: ignore[arg-type]
        assert upload.filename == "image.jpg"
        assert upload.httpx_file()[1].read() == data


def test_an_unseekable_stream_is_read_in_chunks_not_into_the_cap(jpeg_path: Path) -> None:
    import tracemalloc

    data = jpeg_path.read_bytes()
    prepare_upload(_Pipe(data))  # type: ignore[arg-type]  # first use: lazy imports
    tracemalloc.start()
    try:
        with prepare_upload(_Pipe(data)) as upload:  # type: ignore[arg-type]
            assert upload.httpx_file()[1].read() == data
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024, peak  # not the 20 MB cap


def test_unseekable_text_stream() -> None:
    stream = io.TextIOWrapper(_Pipe(b"text"), encoding="ascii")
    assert "binary mode" in rejected(prepare_upload, stream)


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, 0)])
def test_images_without_pixels(width: int, height: int) -> None:
    assert "corrupted" in rejected(inspect_image_bytes, png_header(width, height))


def test_unseekable_stream_over_20_mb(jpeg_path: Path) -> None:
    pipe = _Pipe(b"\xff\xd8\xff" + bytes(MAX_UPLOAD_BYTES))
    assert "compress it below 20 MB" in rejected(prepare_upload, pipe)


def test_seekable_that_fails_counts_as_unseekable(jpeg_path: Path) -> None:
    class Broken(_Pipe):
        def seekable(self) -> bool:
            raise OSError("no")

    with prepare_upload(Broken(jpeg_path.read_bytes())) as upload:  # type: ignore[arg-type]
        assert upload.info.format == "jpeg"


@pytest.mark.parametrize("value", [123, None, 4.5, ["a.jpg"]])
def test_upload_of_the_wrong_type(value: Any) -> None:
    assert "path, bytes or a binary file object" in rejected(prepare_upload, value)


def test_url_passed_as_image_file() -> None:
    assert "image_url" in rejected(prepare_upload, "https://example.com/a.jpg")


def test_path_upload_whose_file_vanished(jpeg_path: Path, tmp_path: Path) -> None:
    large = large_png(tmp_path)
    upload = prepare_upload(large)
    large.unlink()
    assert "cannot be read" in rejected(upload.httpx_file)
    data = jpeg_path.read_bytes()
    with prepare_upload(jpeg_path) as small:  # already read whole: nothing to vanish
        jpeg_path.unlink()
        assert small.httpx_file()[1].read() == data


def test_upload_goes_through_httpx_multipart(jpeg_path: Path) -> None:
    seen: dict[str, bytes] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["body"] = request.read()
        return httpx.Response(200, json={"status": 200})

    with (
        prepare_upload(jpeg_path) as upload,
        httpx.Client(transport=httpx.MockTransport(handler)) as client,
    ):
        client.post(
            "https://api.test/x", data={"sync": "0"}, files={"image_file": upload.httpx_file()}
        )
    body = seen["body"]
    assert b'name="image_file"; filename="portrait.jpg"' in body
    assert b"Content-Type: image/jpeg" in body
    assert jpeg_path.read_bytes() in body


def test_upload_repr_is_short(jpeg_path: Path) -> None:
    with prepare_upload(jpeg_path.read_bytes()) as upload:
        assert "\\xff" not in repr(upload)
        assert isinstance(upload, Upload)


# --- image URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/a.jpg", "https://example.com/a.jpg"),
        ("HTTP://Example.COM:8080/A.jpg?x=1&y=2#f", "http://example.com:8080/A.jpg?x=1&y=2#f"),
        ("https://example.com/my%20photo.jpg", "https://example.com/my%20photo.jpg"),
        ("https://example.com/a%2Fb.jpg?q=%3D", "https://example.com/a%2Fb.jpg?q=%3D"),
        ("https://example.com/100%.jpg", "https://example.com/100%25.jpg"),
        ("https://example.com/%zz", "https://example.com/%25zz"),
        ("https://example.com/fotos/café.jpg", "https://example.com/fotos/caf%C3%A9.jpg"),
        (
            'https://example.com/a"<b>|{c}^`.jpg',
            "https://example.com/a%22%3Cb%3E%7C%7Bc%7D%5E%60.jpg",
        ),
        ("https://example.com/[x].jpg?k=[v]", "https://example.com/%5Bx%5D.jpg?k=%5Bv%5D"),
        ("https://example.com/a.jpg#x#y", "https://example.com/a.jpg#x%23y"),
        ("https://bücher.de/p.jpg", "https://xn--bcher-kva.de/p.jpg"),
        ("http://[::1]:8000/p.jpg", "http://[::1]:8000/p.jpg"),
        ("http://127.0.0.1/p.jpg", "http://127.0.0.1/p.jpg"),
        ("https://user:p%40ss@example.com/p.jpg", "https://user:p%40ss@example.com/p.jpg"),
        ("https://example.com", "https://example.com"),
    ],
)
def test_valid_urls_are_percent_encoded_once(url: str, expected: str) -> None:
    assert validate_image_url(url) == expected
    assert validate_image_url(expected) == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/a.jpg", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("example.com/a.jpg", "http or https"),
        ("", "http or https"),
        ("https:///a.jpg", "no host"),
        ("https://", "no host"),
        ("https://exa mple.com/a.jpg", "' '"),
        ("https://example.com/a b.jpg", "%20"),
        ("https://example.com/a.jpg\n", "'\\n'"),
        ("https://example.com/\x00.jpg", "'\\x00'"),
        ("https://example.com/\u200b.jpg", "'\\u200b'"),
        ("https://example.com/\ud800.jpg", "'\\ud800'"),
        ("https://example.com:99999/a.jpg", "not a valid URL"),
        ("https://example.com:port/a.jpg", "not a valid URL"),
        ("http://[::1/a.jpg", "not a valid URL"),
        ("https://exa<mple.com/a.jpg", "host name"),
        ("https://xn--a.xn--b\u00e9/", "host name"),
        ("https://" + "a" * 64 + "é.com/", "host name"),
        ("https://example.com/" + "a" * 2030, "over 2048"),
        ("https://example.com/" + "é" * 700, "once percent-encoded"),
    ],
)
def test_invalid_urls(url: str, problem: str) -> None:
    message = rejected(validate_image_url, url)
    assert problem in message
    assert "https://example.com/photo.jpg" in message


def test_url_of_the_wrong_type() -> None:
    assert "must be a string" in rejected(validate_image_url, b"https://example.com/a.jpg")


@given(st.text(max_size=60))
def test_arbitrary_text_only_raises_validation_error(text: str) -> None:
    for candidate in (text, f"https://example.com/{text}", f"http://{text}"):
        try:
            url = validate_image_url(candidate)
        except ValidationError as exc:
            assert exc.field == "image_url"
            continue
        assert url.isascii()
        assert len(url) <= 2048
        assert urlsplit(url).scheme in ("http", "https")
        assert validate_image_url(url) == url  # idempotent: never double-encodes


# --- exactly one image source --------------------------------------------------------------


def test_exactly_one_source() -> None:
    validate_source("a.jpg", None)
    validate_source(None, "https://example.com/a.jpg")
    validate_source(b"", None)
    assert "pass image_file" in rejected(validate_source, None, None)
    assert "only one" in rejected(validate_source, "a.jpg", "https://example.com/a.jpg")


def test_a_small_file_is_read_into_a_buffer_of_its_own_size(jpeg_path: Path) -> None:
    """Not one of the inline cap (1 MiB) shrunk afterwards: one such block freed per photo
    grew the process's heap for good in a long batch (docs/batch.md, "Memory")."""
    import tracemalloc

    prepare_upload(str(jpeg_path))  # first use: Pillow's lazy imports, not the read
    tracemalloc.start()
    try:
        upload = prepare_upload(str(jpeg_path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert upload.info.format == "jpeg"
    assert peak < INLINE_UPLOAD_BYTES // 4, peak
