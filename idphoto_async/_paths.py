"""Batch inputs: discovering them (lazily) and mapping each to an output path under OUT.

Every output is ``out_dir / <relative name><extension>`` where the relative name comes from
the input tree (files found under a directory keep their place below it; files named
directly and URLs land at the top). Names are cleaned so that nothing can land outside
``out_dir``: no ``..``, no absolute parts, no control characters, and the final path is
checked against symlinks inside ``out_dir`` that lead out of it.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Final, TypeAlias
from urllib.parse import unquote, urlsplit

import attrs

from ._errors import ValidationError

__all__ = [
    "IMAGE_EXTENSIONS",
    "BatchInput",
    "BatchItem",
    "check_inside",
    "discover",
    "is_url",
    "output_name",
    "output_path",
    "path_text",
    "posix_text",
    "to_item",
    "under",
    "walk",
    "with_hash",
]

IMAGE_EXTENSIONS: Final = frozenset(
    {
        ".jpg", ".jpeg", ".bmp", ".png", ".webp", ".tiff", ".tif",
        ".bitmap", ".raw", ".rgb", ".jfif", ".lzw",
    }
)  # fmt: skip
"""File extensions the API accepts (seed, Guidelines and Limits #5); used to walk folders."""

_MAX_NAME: Final = 120
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")


def is_url(source: str) -> bool:
    """Whether ``source`` is an ``http(s)://`` URL (sent as ``image_url``)."""
    return source[:8].lower().startswith(("http://", "https://"))


def posix_text(text: str) -> str:
    """``str(PurePosixPath(text))`` without building the path: empty and ``.`` parts dropped,
    a leading ``/`` (or exactly ``//``) kept, ``.`` for nothing.

    Per-input paths are kept as text, never parsed by pathlib: pathlib interns every part of
    every path it parses (`sys.intern`), so a batch would fill the interpreter's table of
    interned strings with every input's names (see docs/batch.md, Memory).
    """
    if text.startswith("//") and not text.startswith("///"):
        root = "//"
    else:
        root = "/" if text.startswith("/") else ""
    return root + "/".join(p for p in text.split("/") if p and p != ".") or "."


def path_text(path: str | os.PathLike[str]) -> str:
    """``str(Path(path))`` (the same normalisation: ``~`` not expanded, ``..`` kept), without
    a pathlib parse on POSIX systems (see `posix_text`)."""
    text = os.fspath(path)
    if not isinstance(text, str):
        raise TypeError(f"expected a text path, not {type(text).__name__}")
    if os.sep != "/":  # pragma: no cover - Windows: drives and backslashes, pathlib's rules
        return str(Path(text))
    return posix_text(text)


def _posix_parts(path: str) -> tuple[bool, list[str]]:
    """Whether ``path`` is absolute, and its parts (``PurePosixPath(Path(path).as_posix())``'s,
    the root left out), without a pathlib parse on POSIX systems."""
    if os.sep != "/":  # pragma: no cover - Windows: pathlib's rules
        path = Path(path).as_posix()
    return path.startswith("/"), [p for p in path.split("/") if p and p != "."]


def _suffix(name: str) -> str:
    """``PurePath(name).suffix`` of one path component."""
    i = name.rfind(".")
    return name[i:] if 0 < i < len(name) - 1 else ""


def _stem(name: str) -> str:
    """``PurePath(name).stem`` of one path component."""
    suffix = _suffix(name)
    return name[: -len(suffix)] if suffix else name


def _name_text(name: str | PurePosixPath) -> str:
    return posix_text(name) if isinstance(name, str) else name.as_posix()


@attrs.frozen(repr=False, match_args=False)
class BatchItem:
    """One batch input: its source, where its output goes (relative, no extension), options.

    ``name`` may be given as a `PurePosixPath` or as POSIX text (normalised as
    `PurePosixPath` would); it is kept as text, and read back as a `PurePosixPath`.
    """

    __match_args__ = ("source", "name", "options")

    source: str
    """A file path or an http(s) URL."""
    _name: str = attrs.field(converter=_name_text, alias="name")
    """`name` as POSIX text (the batch reads only this: no pathlib parse per input)."""
    options: Mapping[str, Any] = attrs.field(factory=dict)
    """Create options for this input only (override the batch's)."""

    @property
    def name(self) -> PurePosixPath:
        """Output path relative to ``out_dir``, without extension."""
        return PurePosixPath(self._name)

    @property
    def name_text(self) -> str:
        """`name` as POSIX text."""
        return self._name

    @property
    def is_url(self) -> bool:
        """The source is a URL."""
        return is_url(self.source)

    def __repr__(self) -> str:
        return (
            f"BatchItem(source={self.source!r}, name=PurePosixPath({self._name!r}), "
            f"options={self.options!r})"
        )


BatchInput: TypeAlias = (
    "str | os.PathLike[str] | BatchItem | tuple[str | os.PathLike[str], Mapping[str, Any]]"
)
"""What ``run_batch`` accepts: a path, a URL, a ready item, or ``(source, options)``."""


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _clean_part(part: str) -> str:
    """One safe path component (may be empty)."""
    part = unicodedata.normalize("NFC", part)
    part = _UNSAFE.sub("_", part).strip(" .")
    if len(part) > _MAX_NAME:
        part = part[:_MAX_NAME]
    return part


def _clean_relative(parts: Iterable[str]) -> str | None:
    """The cleaned parts as POSIX text (None if nothing is left)."""
    cleaned = [p for p in (_clean_part(x) for x in parts if x not in ("", ".", "..", "/")) if p]
    return "/".join(cleaned) if cleaned else None


def url_name(url: str) -> str:
    """A safe output name for a URL: the last path segment's stem plus a short hash."""
    parts = [p for p in unquote(urlsplit(url).path).split("/") if p and p != "."]
    stem = _clean_part(_stem(parts[-1]) if parts else "") or "image"
    return f"{stem[:80]}-{_short_hash(url)}"


def _strip_ext(name: str) -> str:
    head, sep, last = name.rpartition("/")
    return f"{head}{sep}{_stem(last)}" if _suffix(last).lower() in IMAGE_EXTENSIONS else name


def to_item(value: BatchInput) -> BatchItem:
    """Normalise one ``run_batch`` input.

    A relative path inside the working directory keeps its relative place under ``out_dir``;
    any other path lands at the top under its own name.
    """
    if isinstance(value, BatchItem):
        return value
    options: Mapping[str, Any] = {}
    if isinstance(value, tuple):
        value, options = value
        if not isinstance(options, Mapping):
            raise ValidationError("an input pair must be (source, options_dict)")
    source = os.fspath(value)
    if not isinstance(source, str):
        raise ValidationError(f"input {source!r} is not a text path or URL")
    if is_url(source):
        return BatchItem(source, url_name(source), options)
    absolute, parts = _posix_parts(source)
    rel = _clean_relative(parts[-1:] if absolute or ".." in parts else parts)
    if rel is None:
        rel = f"input-{_short_hash(source)}"
    return BatchItem(source, _strip_ext(rel), options)


def output_name(item: BatchItem, extension: str) -> str:
    """``item``'s output path relative to ``out_dir``, as POSIX text (cleaned again: an
    item may come from the caller)."""
    name = _clean_relative(item.name_text.split("/")) or f"input-{_short_hash(item.source)}"
    return name + extension


def under(out_dir: str | os.PathLike[str], name: str) -> str:
    """The file of the output name ``name`` (relative POSIX text) under ``out_dir``."""
    return os.path.join(out_dir, *name.split("/"))


def output_path(out_dir: str | os.PathLike[str], item: BatchItem, extension: str) -> str:
    """Where ``item``'s result goes under ``out_dir`` (lexically; no file system access)."""
    return under(out_dir, output_name(item, extension))


def with_hash(name: str, source: str) -> str:
    """The output name ``name`` (POSIX text) with a short hash of ``source`` added to its
    last part's stem (to tell clashes apart)."""
    head, sep, last = name.rpartition("/")
    return f"{head}{sep}{_stem(last)}-{_short_hash(source)}{_suffix(last)}"


def is_within(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is ``root`` or inside it; both absolute and resolved (a string test:
    pathlib's ``is_relative_to`` costs ten times as much, and it runs for every input)."""
    p, r = os.fspath(path), os.fspath(root)
    return p == r or p.startswith(r if r.endswith(os.sep) else r + os.sep)


def check_inside(out_dir: str | os.PathLike[str], dest: str, source: str) -> None:
    """Raise `ValidationError` if ``dest`` really lands outside ``out_dir``.

    ``out_dir`` must be resolved; a symlink already inside it could lead elsewhere. Blocking
    (it follows links): call it from a worker thread.
    """
    if not is_within(os.path.realpath(dest), out_dir):
        raise ValidationError(
            f"the output for {source!r} would land outside {os.fspath(out_dir)} (through a "
            "symlink); remove the link or choose another output directory",
            field="out_dir",
        )


def _walk(root: str, base: str, skip: frozenset[str]) -> Iterator[BatchItem]:
    """Image files under ``root``, sorted, depth first, one directory listed at a time;
    ``base`` is their names' prefix (POSIX text, empty or ending in ``/``).

    Symlinked directories are not followed (no loops, no leaving the tree); symlinked files
    are taken (their output still lands under ``out_dir``).
    """
    try:
        with os.scandir(root) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        name = entry.name
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            continue
        if is_dir:
            if name.startswith(".") or os.path.realpath(entry.path) in skip:
                continue
            yield from _walk(entry.path, f"{base}{name}/", skip)
        elif (
            _suffix(name).lower() in IMAGE_EXTENSIONS
            and not name.startswith(".")
            and entry.is_file()
        ):
            yield BatchItem(entry.path, base + _stem(name))


def walk(
    root: str | os.PathLike[str], *, skip: Iterable[str | os.PathLike[str]] = ()
) -> Iterator[BatchItem]:
    """The image files under the folder ``root``, named relative to it (see `_walk`).

    ``skip`` lists folders never to enter (the output directory, when it lies inside
    ``root``); they must be resolved paths.
    """
    return _walk(path_text(root), "", frozenset(os.fspath(p) for p in skip))


def discover(
    inputs: Iterable[str], *, exclude: Iterable[str | os.PathLike[str]] = ()
) -> Iterator[BatchItem]:
    """The batch items for command-line inputs: files, directories (walked lazily), URLs.

    Files below a directory keep their place relative to it; files named directly and URLs
    go to the top of ``out_dir``. A file named directly is taken whatever its extension (the
    client says clearly if it is not an image); a missing path is yielded too, so that it
    fails alone with a clear reason. ``exclude`` lists directories never to walk into (the
    output directory, when it lies inside an input directory).
    """
    skip = frozenset(os.path.realpath(p) for p in exclude)
    for raw in inputs:
        if is_url(raw):
            yield BatchItem(raw, url_name(raw))
            continue
        text = path_text(raw)  # as Path(raw): "" is "."
        if os.path.isdir(text):
            yield from _walk(text, "", skip)
        else:
            name = _clean_relative(_posix_parts(text)[1][-1:]) or f"input-{_short_hash(raw)}"
            yield BatchItem(raw, _strip_ext(name))
