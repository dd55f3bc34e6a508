"""Reading and checking the create request's form, with the seed's rules and limits."""

from __future__ import annotations

import re

import anyio
import attrs
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.types import Message

from .._constants import SIZE_MAX, SIZE_MIN
from ..engine import OutputFormat
from ._envelope import ApiError

__all__ = ["CreateParams", "read_create_params"]

_FORM_OVERHEAD = 1024 * 1024
"""Room for the other fields and multipart framing around the image file."""
_DRAIN_SECONDS = 10.0
_SIZE_RE = re.compile(r"(\d{1,6})x(\d{1,6})")
_COLOR_RE = re.compile(r"[0-9A-Fa-f]{6}")
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


class _BodyTooLarge(Exception):
    pass


@attrs.frozen
class CreateParams:
    """A valid create request."""

    image: bytes | None = attrs.field(repr=False)
    image_url: str | None
    sync: bool = False
    size: tuple[int, int] | None = None
    format: OutputFormat = "png"
    bg_color: str | None = None
    return_type: int = 1


async def read_create_params(request: Request, max_upload: int) -> CreateParams:
    """Parse and validate; raises `ApiError` 400 or 413.

    Reading stops once the body passes the upload limit; the rest is drained unread (for
    a bounded time) so the client receives the 413 instead of a reset connection.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in _FORM_TYPES:
        raise ApiError(400, "the request body must be multipart/form-data")
    form = await _read_form(request, max_upload + _FORM_OVERHEAD)
    try:
        return await _validate(form, max_upload)
    finally:
        await form.close()


async def _read_form(request: Request, cap: int) -> FormData:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        await _drain(request)
        raise _too_large(cap - _FORM_OVERHEAD)
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > cap:
            raise _BodyTooLarge
        return message

    try:
        return await Request(request.scope, receive).form(max_files=4, max_fields=32)
    except _BodyTooLarge:
        await _drain(request)
        raise _too_large(cap - _FORM_OVERHEAD) from None
    except (MultiPartException, HTTPException) as exc:
        detail = getattr(exc, "detail", None) or getattr(exc, "message", "")
        raise ApiError(400, f"malformed form body: {detail}") from None


async def _drain(request: Request) -> None:
    with anyio.move_on_after(_DRAIN_SECONDS):
        while True:
            message = await request.receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"image_file exceeds the upload limit of {limit // (1024 * 1024)} MB")


def _field(form: FormData, name: str) -> str | None:
    values = form.getlist(name)
    if len(values) > 1:
        raise ApiError(400, f"{name} is given more than once")
    if not values:
        return None
    value = values[0]
    if isinstance(value, UploadFile):
        raise ApiError(400, f"{name} must be a text field, not a file")
    return value.strip() or None


def _choice(form: FormData, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = _field(form, name)
    if value is None:
        return default
    if value not in allowed:
        raise ApiError(400, f"{name} must be one of {', '.join(allowed)} (got {value[:20]!r})")
    return value


def _size(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    match = _SIZE_RE.fullmatch(value)
    if match is None:
        hint = " (use a lowercase x)" if "X" in value else ""
        raise ApiError(400, f"size must be {{width}}x{{height}}, e.g. 300x400{hint}")
    width, height = int(match[1]), int(match[2])
    if not (SIZE_MIN <= width <= SIZE_MAX and SIZE_MIN <= height <= SIZE_MAX):
        raise ApiError(400, f"size: each pixel value must be between {SIZE_MIN} and {SIZE_MAX}")
    return width, height


async def _image_file(form: FormData, max_upload: int) -> bytes | None:
    files = form.getlist("image_file")
    if len(files) > 1:
        raise ApiError(400, "image_file is given more than once")
    if not files:
        return None
    upload = files[0]
    if not isinstance(upload, UploadFile):
        if upload == "":
            return None
        raise ApiError(400, "image_file must be a file upload (multipart/form-data)")
    if upload.size is not None and upload.size > max_upload:
        raise _too_large(max_upload)
    data = await upload.read()
    if len(data) > max_upload:
        raise _too_large(max_upload)
    return data


async def _validate(form: FormData, max_upload: int) -> CreateParams:
    sync = _choice(form, "sync", ("0", "1"), "0")
    size = _size(_field(form, "size"))
    fmt = _choice(form, "format", ("png", "jpg"), "png")
    bg_color = _field(form, "bg_color")
    if bg_color is not None:
        if _COLOR_RE.fullmatch(bg_color) is None:
            raise ApiError(400, "bg_color must be RRGGBB hex, e.g. FFFFFF")
        if fmt != "jpg":
            raise ApiError(400, "bg_color is only valid when format=jpg")
    return_type = _choice(form, "return_type", ("1", "2"), "1")
    image_url = _field(form, "image_url")
    image = await _image_file(form, max_upload)
    if image is not None and image_url is not None:
        raise ApiError(400, "image_url and image_file are mutually exclusive: send exactly one")
    if image is None and image_url is None:
        raise ApiError(400, "an image source is required: image_file or image_url")
    if image_url is not None and not image_url.lower().startswith(("http://", "https://")):
        raise ApiError(400, "image_url must be an http(s) URL")
    return CreateParams(
        image=image,
        image_url=image_url,
        sync=sync == "1",
        size=size,
        format="jpg" if fmt == "jpg" else "png",
        bg_color=bg_color.upper() if bg_color else None,
        return_type=int(return_type),
    )
