"""Input discovery: every input resolved to one identity, once, with one output path.

`InputPlanner.plan` turns one raw input (a path, a folder, a URL, a `BatchItem` or a
``(source, options)`` pair) into what the run works on, in input order:

- folders are walked (sorted, lazily; never into the output directory);
- each photo gets an identity: its real path, or its normalised URL. A photo already taken
  under another name (``img/b.jpg`` twice, ``./img/b.jpg``, a folder and a file inside it) is
  a duplicate and is dropped: one photo, one create, one output;
- its output path under OUT, with a short hash when another input already has the name;
- with a `Shard`, only this shard's share is kept, but names are claimed for every input, so
  every shard names every output the same way.

Blocking (it lists folders and resolves links): the run calls it from a worker thread.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import attrs

from .._errors import ValidationError
from .._journal import input_key
from .._options import CreateOptions, make_options
from .._paths import (
    BatchInput,
    BatchItem,
    check_inside,
    is_within,
    output_name,
    to_item,
    under,
    walk,
    with_hash,
)
from ._layout import check_argument, real
from ._outcome import BatchOutcome
from ._seen import SeenSet
from ._shard import Shard

__all__ = ["DUPLICATE", "OTHER_SHARD", "InputPlanner", "PlannedInput", "normalise_url"]

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


@attrs.frozen
class PlannedInput:
    """One photo to make: its item, options, output and journal key.

    Paths are text: the batch never parses a per-input path with pathlib (see
    `idphoto_async._paths.posix_text`)."""

    item: BatchItem
    options: CreateOptions
    dest: str
    relative: str
    """``dest`` relative to the output directory (POSIX), as the journal keeps it."""
    key: str
    """The journal key: the photo's identity (path, size, mtime; or URL) with its options."""

    @property
    def name(self) -> str:
        """The input as the caller named it."""
        return self.item.source


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


DUPLICATE: Final = _Marker("DUPLICATE")
"""Planned instead of an input that names a photo already taken."""
OTHER_SHARD: Final = _Marker("OTHER_SHARD")
"""Planned instead of an input that belongs to another shard."""

Plan = PlannedInput | BatchOutcome | _Marker


def normalise_url(url: str) -> str:
    """A URL as an identity: scheme and host lower case, default port and fragment dropped."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port if parts.port not in (None, _DEFAULT_PORTS.get(scheme)) else None
    auth = (
        f"{parts.username}{':' + parts.password if parts.password else ''}@"
        if parts.username
        else ""
    )
    netloc = f"{auth}{host}{f':{port}' if port else ''}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def _journal_identity(item: BatchItem, identity: str) -> str:
    """What makes an input the same input next time: the URL, or path + size + mtime."""
    if item.is_url:
        return item.source
    try:
        st = os.stat(item.source)
    except OSError as exc:
        raise ValidationError(
            f"cannot read {item.source!r}: {exc.strerror or exc}", field="image_file"
        ) from None
    return f"{identity}|{st.st_size}|{st.st_mtime_ns}"


def _rejected(name: str, exc: Exception) -> BatchOutcome:
    error = exc if isinstance(exc, ValidationError) else ValidationError(str(exc))
    return BatchOutcome(input=name, status="failed", error=error)


def show(value: object) -> str:
    """A short text for an input that could not be read as one."""
    text = os.fspath(value) if isinstance(value, str | os.PathLike) else repr(value)
    return str(text)[:300]


class InputPlanner:
    """Plans the inputs of one run (see the module docstring); close it when done.

    Not thread-safe: one caller at a time.
    """

    def __init__(
        self,
        out_root: str | os.PathLike[str],
        options: Mapping[str, Any],
        *,
        shard: Shard | None = None,
    ) -> None:
        self.out_root = os.fspath(out_root)
        self._raw_options = {k: v for k, v in options.items() if v is not None}
        self._options = make_options(**self._raw_options)
        self._shard = shard
        self._photos = SeenSet()
        self._outputs = SeenSet()

    def close(self) -> None:
        """Forget what was seen (its temporary databases are deleted)."""
        self._photos.close()
        self._outputs.close()

    def __enter__(self) -> InputPlanner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def plan(self, raw: BatchInput) -> Iterator[Plan]:
        """What to do for ``raw``: planned photos, rejections and markers, in order.

        Raises `BatchConfigError` if ``raw`` is empty or overlaps the output directory.
        """
        try:
            item = to_item(raw)
        except (ValidationError, TypeError, ValueError) as exc:
            yield _rejected(show(raw), exc)
            return
        resolved = check_argument(item.source, self.out_root)
        if resolved is None or not os.path.isdir(resolved):
            yield self._plan_item(item, resolved)
            return
        for found in walk(item.source, skip=[self.out_root]):
            yield self._plan_item(attrs.evolve(found, options=item.options))

    def _options_of(self, item: BatchItem) -> CreateOptions:
        if not item.options:
            return self._options
        try:
            return make_options(**{**self._raw_options, **item.options})
        except TypeError as exc:
            raise ValidationError(str(exc)) from None

    def _plan_item(self, item: BatchItem, resolved: str | None = None) -> Plan:
        """The plan of one photo; ``resolved``: its real path, if known already."""
        try:
            options = self._options_of(item)
        except ValidationError as exc:
            return _rejected(item.source, exc)
        if not item.is_url and resolved is None:
            resolved = real(item.source)
        # The same photo under any name: its real path, or its normalised URL.
        identity = normalise_url(item.source) if resolved is None else resolved
        fields = options.form_fields()
        if not self._photos.add(json.dumps([identity, fields], sort_keys=True)):
            return DUPLICATE
        relative = self._claim(item, options.extension)
        dest = under(self.out_root, relative)
        if self._shard is not None and not self._shard.owns(identity):
            return OTHER_SHARD
        try:
            if resolved is not None and is_within(resolved, self.out_root):
                raise ValidationError(
                    f"{item.source} leads into the output directory (through a link): an "
                    "output could replace it",
                    field="image_file",
                )
            check_inside(self.out_root, dest, item.source)
            journal_identity = _journal_identity(item, identity)
        except ValidationError as exc:
            return _rejected(item.source, exc)
        key = input_key(journal_identity, {**fields, "output": relative})
        return PlannedInput(item, options, dest, relative, key)

    def _claim(self, item: BatchItem, extension: str) -> str:
        """The output name of ``item`` (relative to the output directory, POSIX text); with a
        short hash if another input already has it."""
        name = output_name(item, extension)
        if not self._outputs.add(os.path.normcase(name)):
            name = with_hash(name, item.source)
            self._outputs.add(os.path.normcase(name))
        return name
