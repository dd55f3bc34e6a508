"""Options of the create request (size, format, bg_color, return_type), validated client-side.

Every value the API would reject raises `ValidationError` here, before any request.
"""

from __future__ import annotations

import enum
import numbers
import re
from collections.abc import Sequence
from typing import Literal, TypeAlias

import attrs

from ._constants import SIZE_MAX, SIZE_MIN
from ._errors import ValidationError

__all__ = [
    "BgColorLike",
    "CreateOptions",
    "FormatLike",
    "OutputFormat",
    "ReturnType",
    "ReturnTypeLike",
    "SizeLike",
    "make_options",
]

OutputFormat = Literal["png", "jpg"]

SizeLike: TypeAlias = str | Sequence[int]
"""``"WxH"`` (lower-case x) or ``(w, h)``."""
FormatLike: TypeAlias = str
"""``"png"`` or ``"jpg"`` (``"jpeg"`` and any case accepted)."""
BgColorLike: TypeAlias = str
"""``"RRGGBB"`` hex (a leading ``#`` and lower case accepted)."""


class ReturnType(enum.IntEnum):
    """How the result image is returned: ``return_type`` of the API."""

    URL = 1
    BASE64 = 2


ReturnTypeLike: TypeAlias = ReturnType | int | str
"""``"url"``/``"base64"``, ``1``/``2`` or a `ReturnType`."""


_SIZE_EXAMPLE = "for example size='295x413' or size=(295, 413)"
_SIZE_RE = re.compile(r"([0-9]+)x([0-9]+)")
_SIZE_UPPER_X_RE = re.compile(r"[0-9]+X[0-9]+")
_COLOR_RE = re.compile(r"#?([0-9A-Fa-f]{6})")
_FORMATS: dict[str, OutputFormat] = {"png": "png", "jpg": "jpg", "jpeg": "jpg"}
_RETURN_TYPES: dict[str, ReturnType] = {
    "url": ReturnType.URL,
    "1": ReturnType.URL,
    "base64": ReturnType.BASE64,
    "2": ReturnType.BASE64,
}


def _show(value: object) -> str:
    """A short, safe repr of a user value for messages."""
    try:
        text = repr(value)
    except ValueError:  # an int too large to print
        return "(a number too large to show)"
    return text if len(text) <= 60 else f"{text[:50]}...<{len(text)} chars>"


def _side(value: int, name: str) -> int:
    if not SIZE_MIN <= value <= SIZE_MAX:
        raise ValidationError(
            f"size {name} {_show(value)} is out of range: each side must be between "
            f"{SIZE_MIN} and {SIZE_MAX} pixels, {_SIZE_EXAMPLE}.",
            field="size",
        )
    return value


def _parse_digits(text: str) -> int:
    """Whole number from ASCII digits; absurdly long ones map to just above the maximum."""
    digits = text.lstrip("0") or "0"
    return int(digits) if len(digits) <= 9 else SIZE_MAX + 1


def _size_from_str(value: str) -> tuple[int, int]:
    match = _SIZE_RE.fullmatch(value)
    if match is None:
        hint = (
            "use a lower-case x as the separator"
            if _SIZE_UPPER_X_RE.fullmatch(value)
            else "use 'WIDTHxHEIGHT' in whole pixels with a lower-case x and nothing else"
        )
        raise ValidationError(
            f"size {_show(value)} is malformed: {hint}, {_SIZE_EXAMPLE}.", field="size"
        )
    return _parse_digits(match[1]), _parse_digits(match[2])


def _size_from_sequence(value: object) -> tuple[int, int]:
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise ValidationError(
            f"size must be a 'WxH' string or a (width, height) pair, got {_show(value)}, "
            f"{_SIZE_EXAMPLE}.",
            field="size",
        )
    for side in value:
        if isinstance(side, bool) or not isinstance(side, numbers.Integral):
            raise ValidationError(
                f"size sides must be whole numbers of pixels, got {_show(side)} in "
                f"{_show(value)}, {_SIZE_EXAMPLE}.",
                field="size",
            )
    return int(value[0]), int(value[1])


def convert_size(value: SizeLike | None) -> tuple[int, int] | None:
    """Validate ``size`` and return it as ``(width, height)``."""
    if value is None:
        return None
    width, height = _size_from_str(value) if isinstance(value, str) else _size_from_sequence(value)
    return _side(width, "width"), _side(height, "height")


def convert_format(value: FormatLike | None) -> OutputFormat | None:
    """Validate ``format`` and return ``"png"`` or ``"jpg"``."""
    if value is None:
        return None
    fmt = _FORMATS.get(value.lower()) if isinstance(value, str) and value.isascii() else None
    if fmt is None:
        raise ValidationError(
            f"format {_show(value)} is not supported: use 'png' (transparent background) or "
            "'jpg' (white or bg_color background).",
            field="format",
        )
    return fmt


def convert_bg_color(value: BgColorLike | None) -> str | None:
    """Validate ``bg_color`` and return it as upper-case ``"RRGGBB"``."""
    if value is None:
        return None
    match = _COLOR_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValidationError(
            f"bg_color {_show(value)} is not a colour: use six hex digits RRGGBB, "
            "for example 'FFFFFF' (white) or '#438EDB'.",
            field="bg_color",
        )
    return match[1].upper()


def convert_return_type(value: ReturnTypeLike | None) -> ReturnType | None:
    """Validate ``return_type`` and return a `ReturnType`."""
    if value is None:
        return None
    result: ReturnType | None = None
    if isinstance(value, str):
        result = _RETURN_TYPES.get(value.lower())
    elif isinstance(value, int) and not isinstance(value, bool) and value in (1, 2):
        result = ReturnType(value)
    if result is None:
        raise ValidationError(
            f"return_type {_show(value)} is not supported: use 'url' (or 1) for an image URL, "
            "or 'base64' (or 2) for base64 data.",
            field="return_type",
        )
    return result


@attrs.frozen
class CreateOptions:
    """Validated options of a create request; unset fields are left to the API's defaults."""

    size: tuple[int, int] | None = attrs.field(default=None, converter=convert_size)
    format: OutputFormat | None = attrs.field(default=None, converter=convert_format)
    bg_color: str | None = attrs.field(default=None, converter=convert_bg_color)
    return_type: ReturnType | None = attrs.field(default=None, converter=convert_return_type)

    def __attrs_post_init__(self) -> None:
        if self.bg_color is not None and self.format != "jpg":
            raise ValidationError(
                f"bg_color is only valid for JPG output, but format is {self.format or 'png'}"
                f"{'' if self.format else ' (the default)'}: pass format='jpg' with "
                "bg_color, or drop bg_color for a transparent PNG.",
                field="bg_color",
            )

    def form_fields(self) -> dict[str, str]:
        """The set options as multipart form fields, exactly as the API wants them."""
        fields: dict[str, str] = {}
        if self.size is not None:
            fields["size"] = f"{self.size[0]}x{self.size[1]}"
        if self.format is not None:
            fields["format"] = self.format
        if self.bg_color is not None:
            fields["bg_color"] = self.bg_color
        if self.return_type is not None:
            fields["return_type"] = str(int(self.return_type))
        return fields

    @property
    def output_format(self) -> OutputFormat:
        """The format of the result image (``"png"`` unless ``format`` says otherwise)."""
        return self.format or "png"

    @property
    def extension(self) -> str:
        """The file extension of the result image: ``".png"`` or ``".jpg"``."""
        return f".{self.output_format}"


def make_options(
    *,
    size: SizeLike | None = None,
    format: FormatLike | None = None,
    bg_color: BgColorLike | None = None,
    return_type: ReturnTypeLike | None = None,
) -> CreateOptions:
    """Validate and normalise the create options; raise `ValidationError` on bad input."""
    return CreateOptions(size=size, format=format, bg_color=bg_color, return_type=return_type)
