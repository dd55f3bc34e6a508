"""Client-side validation of the create options (size, format, bg_color, return_type)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idphoto_async._constants import SIZE_MAX, SIZE_MIN
from idphoto_async._errors import ValidationError
from idphoto_async._options import CreateOptions, ReturnType, make_options

valid_side = st.integers(SIZE_MIN, SIZE_MAX)
bad_side = st.integers(max_value=SIZE_MIN - 1) | st.integers(min_value=SIZE_MAX + 1)
hex_color = st.text(alphabet="0123456789abcdefABCDEF", min_size=6, max_size=6)


def _outcome(**kwargs: Any) -> CreateOptions | ValidationError:
    """The options, or the ValidationError; any other exception fails the test."""
    try:
        return make_options(**kwargs)
    except ValidationError as exc:
        return exc


def _rejects(field: str, **kwargs: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        make_options(**kwargs)
    assert info.value.field == field
    return info.value


# --- size --------------------------------------------------------------------------------


@given(valid_side, valid_side)
def test_valid_sizes_round_trip_through_form_fields(width: int, height: int) -> None:
    text = f"{width}x{height}"
    for size in (text, (width, height), [width, height]):
        options = make_options(size=size)
        assert options.size == (width, height)
        assert options.form_fields() == {"size": text}


@given(st.one_of(st.tuples(bad_side, valid_side), st.tuples(valid_side, bad_side)))
def test_out_of_range_sizes_are_rejected(size: tuple[int, int]) -> None:
    message = str(_rejects("size", size=size))
    assert "between 100 and 2000" in message
    if all(abs(side) < 10**9 for side in size):
        _rejects("size", size=f"{size[0]}x{size[1]}")


@pytest.mark.parametrize("size", ["99x400", "300x2001", "0x0", "100000000000000000000x300"])
def test_out_of_range_size_strings(size: str) -> None:
    assert "between 100 and 2000" in str(_rejects("size", size=size))


def test_boundaries_and_leading_zeros_are_accepted() -> None:
    assert make_options(size="100x2000").size == (100, 2000)
    assert make_options(size="0300x0400").form_fields() == {"size": "300x400"}


def test_upper_case_x_says_to_use_lower_case() -> None:
    assert "lower-case x" in str(_rejects("size", size="300X400"))


@pytest.mark.parametrize(
    "size",
    [
        "300*400",
        "300 x 400",
        " 300x400",
        "300x400\n",
        "+300x400",
        "-300x400",
        "300.0x400",
        "300x400x500",
        "300x",
        "x400",
        "",
        "300×400",
        "３００x４００",
    ],
)
def test_malformed_size_strings(size: str) -> None:
    message = str(_rejects("size", size=size))
    assert "295x413" in message


@pytest.mark.parametrize(
    "size",
    [(300,), (300, 400, 500), (True, 400), (300, 400.0), ("300", "400"), 300, 300.0, {1, 2}],
)
def test_malformed_size_values(size: Any) -> None:
    _rejects("size", size=size)


@given(st.text(max_size=30))
def test_arbitrary_size_text_only_raises_validation_error(text: str) -> None:
    outcome = _outcome(size=text)
    match = re.fullmatch(r"([0-9]+)x([0-9]+)", text)
    if isinstance(outcome, ValidationError):
        assert outcome.field == "size"
    else:
        assert match is not None
        assert outcome.form_fields()["size"] == f"{int(match[1])}x{int(match[2])}"


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.binary(max_size=8)


@given(scalars | st.lists(scalars, max_size=3) | st.tuples(scalars, scalars))
def test_arbitrary_size_values_only_raise_validation_error(value: Any) -> None:
    outcome = _outcome(size=value)
    if isinstance(outcome, ValidationError):
        assert outcome.field == "size"
    else:
        assert value is None or all(SIZE_MIN <= side <= SIZE_MAX for side in value)


# --- format and bg_color -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("png", "png"),
        ("PNG", "png"),
        ("jpg", "jpg"),
        ("JPG", "jpg"),
        ("jpeg", "jpg"),
        ("JpEg", "jpg"),
    ],
)
def test_formats_are_normalised(value: str, expected: str) -> None:
    options = make_options(format=value)
    assert options.format == expected
    assert options.form_fields() == {"format": expected}
    assert options.output_format == expected
    assert options.extension == f".{expected}"


def test_default_output_format_is_png() -> None:
    options = make_options()
    assert options.output_format == "png"
    assert options.extension == ".png"
    assert options.form_fields() == {}
    assert options == CreateOptions()


@given(st.text(max_size=10) | st.integers() | st.none())
def test_arbitrary_formats_only_raise_validation_error(value: Any) -> None:
    outcome = _outcome(format=value)
    if isinstance(outcome, ValidationError):
        assert outcome.field == "format"
        assert "'png'" in str(outcome)
        assert "'jpg'" in str(outcome)
    else:
        assert value is None or value.lower() in ("png", "jpg", "jpeg")
        assert outcome.output_format in ("png", "jpg")


@given(hex_color, st.booleans())
def test_colours_are_normalised_to_upper_case(color: str, hash_prefix: bool) -> None:
    options = make_options(format="jpg", bg_color=f"#{color}" if hash_prefix else color)
    assert options.bg_color == color.upper()
    assert options.form_fields() == {"format": "jpg", "bg_color": color.upper()}


@pytest.mark.parametrize(
    "color", ["FFF", "#FFF", "FFFFFFF", "GGGGGG", "##FFFFFF", " FFFFFF", "FFFFFF\n", "0xFFFFFF", 0]
)
def test_bad_colours_are_rejected(color: Any) -> None:
    message = str(_rejects("bg_color", format="jpg", bg_color=color))
    assert "RRGGBB" in message


@given(st.text(max_size=10) | st.integers())
def test_arbitrary_colours_only_raise_validation_error(value: Any) -> None:
    outcome = _outcome(format="jpg", bg_color=value)
    if isinstance(outcome, ValidationError):
        assert outcome.field == "bg_color"
    else:
        assert outcome.bg_color is not None
        assert re.fullmatch(r"[0-9A-F]{6}", outcome.bg_color)


@pytest.mark.parametrize("fmt", [None, "png", "PNG"])
def test_bg_color_needs_jpg(fmt: str | None) -> None:
    message = str(_rejects("bg_color", format=fmt, bg_color="FFFFFF"))
    assert "format='jpg'" in message


# --- return_type -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("url", ReturnType.URL),
        ("URL", ReturnType.URL),
        (1, ReturnType.URL),
        ("1", ReturnType.URL),
        (ReturnType.URL, ReturnType.URL),
        ("base64", ReturnType.BASE64),
        (2, ReturnType.BASE64),
        (ReturnType.BASE64, ReturnType.BASE64),
    ],
)
def test_return_types(value: Any, expected: ReturnType) -> None:
    options = make_options(return_type=value)
    assert options.return_type is expected
    assert options.form_fields() == {"return_type": str(int(expected))}


@given(st.text(max_size=8) | st.integers() | st.booleans() | st.floats())
def test_arbitrary_return_types_only_raise_validation_error(value: Any) -> None:
    outcome = _outcome(return_type=value)
    if isinstance(outcome, ValidationError):
        assert outcome.field == "return_type"
        assert "'url'" in str(outcome)
        assert "'base64'" in str(outcome)
    else:
        assert outcome.return_type in (ReturnType.URL, ReturnType.BASE64)
        assert not isinstance(value, bool | float)


def test_all_fields_together_and_direct_construction_validates() -> None:
    options = make_options(size=(295, 413), format="jpeg", bg_color="#438edb", return_type="url")
    assert options.form_fields() == {
        "size": "295x413",
        "format": "jpg",
        "bg_color": "438EDB",
        "return_type": "1",
    }
    assert CreateOptions(size="295x413", format="jpg", bg_color="438EDB", return_type=1) == options
    with pytest.raises(ValidationError):
        CreateOptions(size="1x1")


def test_huge_int_in_message_is_not_printed() -> None:
    message = str(_rejects("size", size=(10**5000, 300)))
    assert "too large to show" in message
    assert len(message) < 300
