"""Image inputs: type sniffing, the seed's upload limits, multipart uploads and image URLs.

Files are checked from their header only (size from ``os.stat``, dimensions from Pillow's
lazy open), so a 20 MB upload is never read whole before it is streamed.
"""

from __future__ import annotations

import io
import os
import re
import stat
import unicodedata
import warnings
from types import TracebackType
from typing import IO, BinaryIO, Final, TypeAlias
from urllib.parse import quote, urlsplit, urlunsplit

import attrs
from PIL import Image, UnidentifiedImageError

from ._constants import INLINE_UPLOAD_BYTES, MAX_DIMENSION, MAX_UPLOAD_BYTES
from ._errors import ValidationError

__all__ = [
    "ImageFileLike",
    "ImageInfo",
    "Upload",
    "inspect_image_bytes",
    "inspect_image_fileobj",
    "inspect_image_path",
    "prepare_upload",
    "sniff_format",
    "validate_image_url",
    "validate_source",
]

ImageFileLike: TypeAlias = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]
"""What ``image_file`` accepts: a path, the bytes of an image, or a binary file object."""

_HEADER_BYTES: Final = 32
_MAX_URL_CHARS: Final = 2048
_CONVERT = "convert it to JPG or PNG"

# (magic bytes, offset) -> canonical name; the names are Pillow's format names, lower-cased.
_MAGIC: Final[tuple[tuple[bytes, int, str], ...]] = (
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"BM", 0, "bmp"),
    (b"WEBP", 8, "webp"),  # after b"RIFF" and the chunk size, checked below
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
    (b"\x01\xda", 0, "sgi"),
)
# Extensions the API lists, for uploads that have no file name of their own.
_EXTENSIONS: Final = {
    "jpeg": "jpg",
    "png": "png",
    "bmp": "bmp",
    "webp": "webp",
    "tiff": "tiff",
    "sgi": "rgb",
}
# Other types people try, named in the error message.
_OTHER_TYPES: Final[tuple[tuple[bytes, int, str], ...]] = (
    (b"GIF8", 0, "a GIF image"),
    (b"%PDF", 0, "a PDF document"),
    (b"ftypavif", 4, "an AVIF image"),
    (b"ftyphei", 4, "a HEIC image"),
    (b"ftypmif1", 4, "a HEIF image"),
    (b"ftypmsf1", 4, "a HEIF image"),
    (b"PK\x03\x04", 0, "a ZIP archive"),
    (b"\x00\x00\x01\x00", 0, "an ICO icon"),
    (b"<svg", 0, "an SVG drawing"),
    (b"8BPS", 0, "a Photoshop document"),
)
_INVALID_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_HOST_RE = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=-]+")
_SUB_DELIMS = "!$&'()*+,;="
_PATH_SAFE = f"%/:@{_SUB_DELIMS}"
_QUERY_SAFE = f"%/?:@{_SUB_DELIMS}"


def sniff_format(header: bytes) -> str | None:
    """The image type the API accepts from a file's first bytes, or ``None``.

    Returns ``"jpeg"``, ``"png"``, ``"bmp"``, ``"webp"``, ``"tiff"`` (LZW-compressed
    too) or ``"sgi"`` (``.rgb``).
    """
    for magic, offset, name in _MAGIC:
        if header[offset : offset + len(magic)] == magic and (
            name != "webp" or header.startswith(b"RIFF")
        ):
            return name
    return None


@attrs.frozen
class ImageInfo:
    """What the header of an accepted image says."""

    format: str
    """Canonical type from `sniff_format`."""
    width: int
    height: int
    size_bytes: int

    @property
    def content_type(self) -> str:
        """The MIME type of the image."""
        Image.init()  # registers every plugin's MIME type (once)
        return Image.MIME.get(self.format.upper(), "application/octet-stream")

    @property
    def extension(self) -> str:
        """The usual file extension of the image type, with a dot."""
        return f".{_EXTENSIONS.get(self.format, self.format)}"


def _describe(header: bytes) -> str:
    """Name an unsupported file type for the error message."""
    for magic, offset, name in _OTHER_TYPES:
        if header[offset : offset + len(magic)] == magic:
            return name
    try:
        text = header.decode("utf-8")
    except UnicodeDecodeError:
        return "of an unknown type"
    if all(char.isprintable() or char.isspace() for char in text):
        return "a text file"
    return "of an unknown type"


def _check_size(size_bytes: int, label: str) -> None:
    if size_bytes > MAX_UPLOAD_BYTES:
        raise ValidationError(
            f"{label} is {size_bytes:,} bytes, over the API's limit of 20 MB "
            f"({MAX_UPLOAD_BYTES:,} bytes): compress it below 20 MB (for example save it as JPG "
            "at a lower quality) or resize it.",
            field="image_file",
        )
    if size_bytes == 0:
        raise ValidationError(f"{label} is empty: pass a JPG or PNG image.", field="image_file")


def _read_dimensions(stream: IO[bytes], fmt: str, label: str) -> tuple[int, int]:
    """Width and height from the header only (Pillow's lazy open decodes no pixels)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's notes on odd headers help no one here
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream, formats=[fmt.upper()]) as image:
                width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValidationError(
            f"{label} has far too many pixels: resize it to at most {MAX_DIMENSION} x "
            f"{MAX_DIMENSION} pixels.",
            field="image_file",
        ) from None
    except (OSError, SyntaxError, ValueError, TypeError, EOFError, IndexError) as exc:
        detail = "" if isinstance(exc, UnidentifiedImageError) else f" ({exc})"
        raise ValidationError(
            f"{label} looks like a {fmt.upper()} image but cannot be read{detail}: it is "
            f"corrupted or truncated; re-save it or {_CONVERT}.",
            field="image_file",
        ) from None
    return width, height


def _check_dimensions(width: int, height: int, label: str) -> None:
    # Pillow itself refuses a side of 0 ("not identified by this driver").
    if width > MAX_DIMENSION or height > MAX_DIMENSION:
        raise ValidationError(
            f"{label} is {width} x {height} pixels, over the API's limit: resize it to at most "
            f"{MAX_DIMENSION} x {MAX_DIMENSION} pixels.",
            field="image_file",
        )


def _inspect_stream(stream: IO[bytes], size_bytes: int, label: str) -> ImageInfo:
    """Check an image read from the start of ``stream`` (whose length is already checked)."""
    header = stream.read(_HEADER_BYTES)
    if not isinstance(header, bytes):
        raise ValidationError(
            f"{label} is open in text mode: open it in binary mode ('rb').", field="image_file"
        )
    fmt = sniff_format(header)
    if fmt is None:
        raise ValidationError(
            f"{label} is {_describe(header)}, not an image type the API accepts (JPG, PNG, BMP, "
            f"WEBP, TIFF, SGI/RGB): {_CONVERT}.",
            field="image_file",
        )
    stream.seek(0)
    width, height = _read_dimensions(stream, fmt, label)
    _check_dimensions(width, height, label)
    return ImageInfo(format=fmt, width=width, height=height, size_bytes=size_bytes)


def _stat_file(name: str) -> os.stat_result:
    label = f"Image file {name!r}"
    try:
        info = os.stat(name)
    except FileNotFoundError:
        raise ValidationError(
            f"{label} does not exist: check the path.", field="image_file"
        ) from None
    except (OSError, ValueError) as exc:
        raise ValidationError(
            f"{label} cannot be read ({exc}): check the path and its permissions.",
            field="image_file",
        ) from None
    if stat.S_ISDIR(info.st_mode):
        raise ValidationError(
            f"{label} is a directory: pass an image file (the CLI walks directories).",
            field="image_file",
        )
    if not stat.S_ISREG(info.st_mode):
        raise ValidationError(
            f"{label} is not a regular file: pass an image file, or its bytes.",
            field="image_file",
        )
    return info


def _open_file(name: str) -> BinaryIO:
    try:
        return open(name, "rb")
    except OSError as exc:
        raise ValidationError(
            f"Image file {name!r} cannot be read ({exc.strerror or exc}): check its permissions.",
            field="image_file",
        ) from None


def inspect_image_path(path: str | os.PathLike[str]) -> ImageInfo:
    """Check an image file against the API's limits, reading only its header."""
    name = os.fspath(path)
    size_bytes = _stat_file(name).st_size
    label = f"Image file {name!r}"
    _check_size(size_bytes, label)
    with _open_file(name) as stream:
        return _inspect_stream(stream, size_bytes, label)


def inspect_image_bytes(data: bytes | bytearray | memoryview) -> ImageInfo:
    """Check the bytes of an image against the API's limits."""
    size_bytes = memoryview(data).nbytes
    _check_size(size_bytes, "The image data")
    return _inspect_stream(io.BytesIO(data), size_bytes, "The image data")


def _fileobj_label(fileobj: object) -> str:
    name = getattr(fileobj, "name", None)
    return f"Image file object {name!r}" if isinstance(name, str) else "The image file object"


def inspect_image_fileobj(fileobj: IO[bytes]) -> ImageInfo:
    """Check a seekable binary file object, from its start (what httpx uploads).

    The stream position is restored.
    """
    label = _fileobj_label(fileobj)
    try:
        position = fileobj.tell()
        size_bytes = fileobj.seek(0, os.SEEK_END)
    except (OSError, ValueError, AttributeError) as exc:
        raise ValidationError(
            f"{label} cannot be used ({exc}): pass an open, seekable binary file, a path or bytes.",
            field="image_file",
        ) from None
    try:
        _check_size(size_bytes, label)
        fileobj.seek(0)
        return _inspect_stream(fileobj, size_bytes, label)
    finally:
        fileobj.seek(position)


def _is_seekable(fileobj: IO[bytes]) -> bool:
    seekable = getattr(fileobj, "seekable", None)
    try:
        return bool(seekable()) if callable(seekable) else False
    except (OSError, ValueError):
        return False


_READ_CHUNK: Final = 64 * 1024


def _read_unseekable(fileobj: IO[bytes]) -> bytes:
    """Read a pipe or socket into memory, one byte past the limit at most, in chunks (one
    ``read`` of the whole 20 MB cap would allocate all of it for any image)."""
    chunks: list[bytes] = []
    total = 0
    while total <= MAX_UPLOAD_BYTES:
        chunk = fileobj.read(min(_READ_CHUNK, MAX_UPLOAD_BYTES + 1 - total))
        if not isinstance(chunk, bytes):
            raise ValidationError(
                f"{_fileobj_label(fileobj)} is open in text mode: open it in binary mode ('rb').",
                field="image_file",
            )
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


@attrs.define
class Upload:
    """An ``image_file`` checked and ready for a multipart upload; close it when done."""

    filename: str
    content_type: str
    info: ImageInfo
    _source: str | bytes | IO[bytes] = attrs.field(repr=False, alias="source")
    _stream: IO[bytes] | None = attrs.field(default=None, init=False, repr=False)

    def httpx_file(self) -> tuple[str, IO[bytes], str]:
        """The tuple for ``httpx``'s ``files={"image_file": ...}``.

        A large file's path is opened (once) and streamed from disk; httpx seeks back to 0
        on retries.
        """
        if self._stream is None:
            if isinstance(self._source, str):
                self._stream = _open_file(self._source)
            elif isinstance(self._source, bytes):
                self._stream = io.BytesIO(self._source)
            else:
                self._stream = self._source
        return self.filename, self._stream, self.content_type

    def close(self) -> None:
        """Close the stream this upload opened (never a file object the caller passed)."""
        stream, self._stream = self._stream, None
        if stream is not None and stream is not self._source:
            stream.close()

    def __enter__(self) -> Upload:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _upload(source: str | bytes | IO[bytes], info: ImageInfo, filename: str | None) -> Upload:
    name = os.path.basename(filename) if filename else f"image{info.extension}"
    return Upload(filename=name, content_type=info.content_type, info=info, source=source)


def _read_small_file(name: str) -> tuple[bytes, ImageInfo] | None:
    """A file of at most `INLINE_UPLOAD_BYTES`, read whole and checked; None if larger."""
    size = _stat_file(name).st_size
    if size > INLINE_UPLOAD_BYTES:
        return None
    with _open_file(name) as stream:
        # A buffer of the file's size: read(cap) allocates the whole cap and shrinks it,
        # and a 1 MiB block freed per photo grows glibc's heap for good (see
        # docs/batch.md, "Memory").
        data = stream.read(size + 1)
    if len(data) > size:  # grew since the stat: stream it instead
        return None
    label = f"Image file {name!r}"
    _check_size(len(data), label)
    return data, _inspect_stream(io.BytesIO(data), len(data), label)


def prepare_upload(image_file: ImageFileLike) -> Upload:
    """Check ``image_file`` (a path, bytes or a binary file object) and prepare its upload.

    Blocking: it reads files (the client runs it through `idphoto_async._file_work.FileWork`
    for a path or bytes, in a worker thread for a file object). A path of at most
    `INLINE_UPLOAD_BYTES` is read whole here, so sending it does no file I/O on the event
    loop; a larger one is streamed from disk when sent.
    """
    if isinstance(image_file, str | os.PathLike):
        name = os.fsdecode(image_file)
        if name.startswith(("http://", "https://")):
            raise ValidationError(
                f"image_file {name[:80]!r} is a URL: pass it as image_url instead.",
                field="image_file",
            )
        small = _read_small_file(name)
        if small is not None:
            return _upload(small[0], small[1], name)
        return _upload(name, inspect_image_path(name), name)
    if isinstance(image_file, bytes | bytearray | memoryview):
        data = bytes(image_file)
        return _upload(data, inspect_image_bytes(data), None)
    if not callable(getattr(image_file, "read", None)):
        raise ValidationError(
            f"image_file must be a path, bytes or a binary file object, not "
            f"{type(image_file).__name__}.",
            field="image_file",
        )
    raw_name = getattr(image_file, "name", None)
    filename = raw_name if isinstance(raw_name, str) else None
    if _is_seekable(image_file):
        return _upload(image_file, inspect_image_fileobj(image_file), filename)
    data = _read_unseekable(image_file)
    return _upload(data, inspect_image_bytes(data), filename)


def _url_error(url: str, problem: str) -> ValidationError:
    return ValidationError(
        f"image_url {url[:80]!r} {problem}. Pass a full http(s) URL of the image, "
        "for example 'https://example.com/photo.jpg'.",
        field="image_url",
    )


def _check_url_characters(url: str) -> None:
    for char in url:
        if char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Cs"):
            raise _url_error(
                url,
                f"contains the character {char!r}: remove spaces and control characters "
                "(encode a space in a path as %20)",
            )


def _normalise_host(url: str, hostname: str) -> str:
    if not hostname.isascii():
        try:
            hostname = hostname.encode("idna").decode("ascii")
        except UnicodeError:
            raise _url_error(url, "has a host name that is not valid") from None
    if ":" in hostname:  # an IPv6 literal, already checked by urlsplit
        return f"[{hostname}]"
    if not _HOST_RE.fullmatch(hostname):
        raise _url_error(url, "has a host name that is not valid")
    return hostname


def _normalise_netloc(url: str, netloc: str, hostname: str | None, port: int | None) -> str:
    if not hostname:
        raise _url_error(url, "has no host")
    result = _normalise_host(url, hostname)
    if port is not None:
        result = f"{result}:{port}"
    userinfo, at, _ = netloc.rpartition("@")
    return f"{quote(userinfo, safe='%:' + _SUB_DELIMS)}@{result}" if at else result


def _encode(text: str, safe: str) -> str:
    """Percent-encode what must be, keeping valid %XX escapes as they are."""
    return quote(_INVALID_PERCENT.sub("%25", text), safe=safe)


def validate_image_url(url: str) -> str:
    """Check an ``image_url`` and return it percent-encoded as URL standards require."""
    if not isinstance(url, str):
        raise ValidationError(
            f"image_url must be a string, not {type(url).__name__}.", field="image_url"
        )
    if len(url) > _MAX_URL_CHARS:
        raise _url_error(url, f"is {len(url)} characters long, over {_MAX_URL_CHARS}")
    _check_url_characters(url)
    try:
        parts = urlsplit(url)
        hostname, port = parts.hostname, parts.port
    except ValueError as exc:
        raise _url_error(url, f"is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _url_error(url, "is not an http or https URL")
    normalised = urlunsplit(
        (
            scheme,
            _normalise_netloc(url, parts.netloc, hostname, port),
            _encode(parts.path, _PATH_SAFE),
            _encode(parts.query, _QUERY_SAFE),
            _encode(parts.fragment, _QUERY_SAFE),
        )
    )
    if len(normalised) > _MAX_URL_CHARS:
        raise _url_error(url, f"is over {_MAX_URL_CHARS} characters once percent-encoded")
    return normalised


def validate_source(image_file: object, image_url: object) -> None:
    """Check that exactly one image source is given (the API requires one, never both)."""
    if image_file is None and image_url is None:
        raise ValidationError(
            "No image given: pass image_file (a path, bytes or binary file) or image_url.",
            field="image_file",
        )
    if image_file is not None and image_url is not None:
        raise ValidationError(
            "Both image_file and image_url were given: pass only one of them.",
            field="image_url",
        )
