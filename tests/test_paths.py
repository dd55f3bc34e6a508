"""Input discovery and output mapping: nothing lands outside the output directory."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idphoto_async._errors import ValidationError
from idphoto_async._paths import (
    BatchItem,
    check_inside,
    discover,
    is_url,
    output_path,
    to_item,
    url_name,
)


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_is_url() -> None:
    assert is_url("https://e.com/a.jpg")
    assert is_url("HTTP://e.com/a.jpg")
    assert not is_url("ftp://e.com/a.jpg")
    assert not is_url("photos/http:/a.jpg")


def test_discover_walks_sorted_recursive_images_only(tmp_path: Path) -> None:
    root = tmp_path / "in"
    for rel in ["b.jpg", "a.PNG", "sub/c.webp", "sub/deeper/d.jpeg", "notes.txt", ".hidden.jpg"]:
        _touch(root / rel)
    _touch(root / ".git" / "x.jpg")
    items = list(discover([str(root)]))
    assert [str(i.name) for i in items] == ["a", "b", "sub/c", "sub/deeper/d"]
    assert all(Path(i.source).is_file() for i in items)


def test_discover_is_lazy(tmp_path: Path) -> None:
    root = tmp_path / "in"
    for n in range(5):
        _touch(root / f"d{n}" / "a.jpg")
    gen = discover([str(root)])
    first = next(gen)
    assert first.name == PurePosixPath("d0/a")


def test_discover_skips_the_output_dir_inside_the_input(tmp_path: Path) -> None:
    _touch(tmp_path / "a.jpg")
    _touch(tmp_path / "out" / "a.png")
    items = list(discover([str(tmp_path)], exclude=[tmp_path / "out"]))
    assert [i.name for i in items] == [PurePosixPath("a")]


def test_discover_files_urls_and_missing(tmp_path: Path) -> None:
    f = _touch(tmp_path / "x" / "photo one.jpg")
    items = list(discover([str(f), "https://e.com/p/face.jpg?x=1", str(tmp_path / "missing.png")]))
    assert items[0].name == PurePosixPath("photo one")
    assert items[1].is_url
    assert str(items[1].name).startswith("face-")
    assert items[2].name == PurePosixPath("missing")  # fails later, alone, with a reason


def test_discover_does_not_follow_directory_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "in"
    _touch(root / "a.jpg")
    outside = tmp_path / "elsewhere"
    _touch(outside / "secret.jpg")
    os.symlink(outside, root / "link")
    os.symlink(root, root / "loop")
    os.symlink(outside / "secret.jpg", root / "file-link.jpg")
    names = [str(i.name) for i in discover([str(root)])]
    assert names == ["a", "file-link"]


def test_url_names_are_safe_and_distinct() -> None:
    a = url_name("https://e.com/a/../../etc/passwd.jpg")
    b = url_name("https://e.com/b/passwd.jpg")
    assert a != b
    assert "/" not in a
    assert a.startswith("passwd-")
    assert url_name("https://e.com/").startswith("image-")
    assert url_name("https://e.com/%E5%BC%A0%E4%B8%89.png").startswith("张三-")


def test_to_item_maps_relative_paths_and_flattens_the_rest(tmp_path: Path) -> None:
    assert to_item("photos/a.jpg").name == PurePosixPath("photos/a")
    assert to_item(Path("photos/a.jpg")).name == PurePosixPath("photos/a")
    assert to_item("../up/a.jpg").name == PurePosixPath("a")
    assert to_item(str(tmp_path / "abs.jpeg")).name == PurePosixPath("abs")
    item = to_item(("b.jpg", {"size": "300x400"}))
    assert item.options == {"size": "300x400"}
    with pytest.raises(ValidationError):
        to_item(("b.jpg", "size"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a/b", "a/b.png"),
        ("../../etc/passwd", "etc/passwd.png"),
        ("/abs/x", "abs/x.png"),
        ("sp ace/ü n i", "sp ace/ü n i.png"),
        ("..", None),
    ],
)
def test_output_path_stays_inside(tmp_path: Path, name: str, expected: str | None) -> None:
    dest = Path(output_path(tmp_path, BatchItem("src", PurePosixPath(name)), ".png"))
    assert dest.is_relative_to(tmp_path)
    if expected is not None:
        assert dest.relative_to(tmp_path).as_posix() == expected


@given(st.text(min_size=0, max_size=40))
def test_output_path_never_escapes(name: str) -> None:
    root = Path("/tmp/out-root")
    item = to_item(name) if name and not is_url(name) else BatchItem("s", PurePosixPath("x"))
    dest = Path(output_path(root, item, ".jpg"))
    assert dest.is_relative_to(root)
    assert ".." not in dest.relative_to(root).parts
    assert dest != root


def test_check_inside_catches_symlinks_out(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(tmp_path / "elsewhere", out / "sub")
    dest = output_path(out.resolve(), BatchItem("s", PurePosixPath("sub/a")), ".png")
    with pytest.raises(ValidationError, match="outside"):
        check_inside(out.resolve(), dest, "s")
    check_inside(out.resolve(), out.resolve() / "ok.png", "s")


@pytest.mark.parametrize(
    ("path", "root", "inside"),
    [
        ("/a/b", "/a/b", True),
        ("/a/b/c.png", "/a/b", True),
        ("/a/bc/c.png", "/a/b", False),  # a sibling sharing the prefix is not inside
        ("/a", "/a/b", False),
        ("/x", "/", True),
        ("/", "/", True),
    ],
)
def test_is_within_compares_whole_path_parts(path: str, root: str, inside: bool) -> None:
    from idphoto_async._paths import is_within

    assert is_within(path, root) is inside
    assert is_within(Path(path), Path(root)) is inside
    assert Path(path).is_relative_to(root) is inside  # the same answer as pathlib's
