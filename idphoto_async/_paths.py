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
    "output_path",
    "to_item",
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


@attrs.frozen
class BatchItem:
    """One batch input: its source, where its output goes (relative, no extension), options."""

    source: str
    """A file path or an http(s) URL."""
    name: PurePosixPath
    """Output path relative to ``out_dir``, without extension."""
    options: Mapping[str, Any] = attrs.field(factory=dict)
    """Create options for this input only (override the batch's)."""

    @property
    def is_url(self) -> bool:
        """The source is a URL."""
        return is_url(self.source)


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


def _clean_relative(parts: Iterable[str]) -> PurePosixPath | None:
    cleaned = [p for p in (_clean_part(x) for x in parts if x not in ("", ".", "..", "/")) if p]
    return PurePosixPath(*cleaned) if cleaned else None


def url_name(url: str) -> PurePosixPath:
    """A safe output name for a URL: the last path segment's stem plus a short hash."""
    path = unquote(urlsplit(url).path)
    stem = _clean_part(PurePosixPath(path).stem) or "image"
    return PurePosixPath(f"{stem[:80]}-{_short_hash(url)}")


def _strip_ext(name: PurePosixPath) -> PurePosixPath:
    return name.with_suffix("") if name.suffix.lower() in IMAGE_EXTENSIONS else name


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
    path = PurePosixPath(Path(source).as_posix())
    if path.is_absolute() or ".." in path.parts:
        rel = _clean_relative([path.name])
    else:
        rel = _clean_relative(path.parts)
    if rel is None:
        rel = PurePosixPath(f"input-{_short_hash(source)}")
    return BatchItem(source, _strip_ext(rel), options)


def output_path(out_dir: Path, item: BatchItem, extension: str) -> Path:
    """Where ``item``'s result goes under ``out_dir`` (lexically; no file system access)."""
    rel = _clean_relative(item.name.parts) or PurePosixPath(f"input-{_short_hash(item.source)}")
    target = out_dir.joinpath(*rel.parts)
    return target.with_name(target.name + extension)


def with_hash(dest: Path, source: str) -> Path:
    """``dest`` with a short hash of ``source`` added to its name (to tell clashes apart)."""
    return dest.with_name(f"{dest.stem}-{_short_hash(source)}{dest.suffix}")


def is_within(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is ``root`` or inside it; both absolute and resolved (a string test:
    pathlib's ``is_relative_to`` costs ten times as much, and it runs for every input)."""
    p, r = os.fspath(path), os.fspath(root)
    return p == r or p.startswith(r if r.endswith(os.sep) else r + os.sep)


def check_inside(out_dir: Path, dest: Path, source: str) -> None:
    """Raise `ValidationError` if ``dest`` really lands outside ``out_dir``.

    ``out_dir`` must be resolved; a symlink already inside it could lead elsewhere. Blocking
    (it follows links): call it from a worker thread.
    """
    if not is_within(os.path.realpath(dest), out_dir):
        raise ValidationError(
            f"the output for {source!r} would land outside {out_dir} (through a symlink); "
            "remove the link or choose another output directory",
            field="out_dir",
        )


def _walk(root: Path, base: PurePosixPath, skip: frozenset[Path]) -> Iterator[BatchItem]:
    """Image files under ``root``, sorted, depth first, one directory listed at a time.

    Symlinked directories are not followed (no loops, no leaving the tree); symlinked files
    are taken (their output still lands under ``out_dir``).
    """
    try:
        with os.scandir(root) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        path = Path(entry.path)
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            continue
        if is_dir:
            if entry.name.startswith(".") or path.resolve() in skip:
                continue
            yield from _walk(path, base / entry.name, skip)
        elif (
            Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS
            and not entry.name.startswith(".")
            and entry.is_file()
        ):
            yield BatchItem(entry.path, base / Path(entry.name).stem)


def walk(root: Path, *, skip: Iterable[Path] = ()) -> Iterator[BatchItem]:
    """The image files under the folder ``root``, named relative to it (see `_walk`).

    ``skip`` lists folders never to enter (the output directory, when it lies inside
    ``root``); they must be resolved paths.
    """
    return _walk(root, PurePosixPath(), frozenset(skip))


def discover(inputs: Iterable[str], *, exclude: Iterable[Path] = ()) -> Iterator[BatchItem]:
    """The batch items for command-line inputs: files, directories (walked lazily), URLs.

    Files below a directory keep their place relative to it; files named directly and URLs
    go to the top of ``out_dir``. A file named directly is taken whatever its extension (the
    client says clearly if it is not an image); a missing path is yielded too, so that it
    fails alone with a clear reason. ``exclude`` lists directories never to walk into (the
    output directory, when it lies inside an input directory).
    """
    skip = frozenset(p.resolve() for p in exclude)
    for raw in inputs:
        if is_url(raw):
            yield BatchItem(raw, url_name(raw))
            continue
        path = Path(raw)
        if path.is_dir():
            yield from _walk(path, PurePosixPath(), skip)
        else:
            name = _clean_relative([path.name]) or PurePosixPath(f"input-{_short_hash(raw)}")
            yield BatchItem(raw, _strip_ext(name))
