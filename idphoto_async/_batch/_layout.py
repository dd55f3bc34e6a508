"""Where a batch reads and writes, checked before any request: nothing may overwrite anything.

The output directory, the journal, the report and the inputs must not collide: an output
never replaces an input (so OUT is never an input folder, nor inside one that is walked into
it), the report never truncates the journal or an input, and each of them must be writable.
Every refusal is a `BatchConfigError`: one sentence that says what to change.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from .._errors import ValidationError
from .._journal import Journal
from .._paths import IMAGE_EXTENSIONS, is_url, is_within

__all__ = [
    "BatchConfigError",
    "check_argument",
    "check_side_files",
    "prepare_out_dir",
    "real",
]

_SIDECARS: Final = ("", "-wal", "-shm", "-journal", "-lock")
"""The journal's database and the files kept beside it (SQLite's, and the lock file)."""


class BatchConfigError(ValidationError):
    """The batch cannot start as configured (paths collide, a path is not writable...).

    Raised before any request is sent; the message says what to change.
    """


def real(path: str | os.PathLike[str]) -> str:
    """The absolute path with every symlink resolved (the path need not exist), as text: it
    runs for every input, which pathlib would parse (see `idphoto_async._paths.posix_text`)."""
    return os.path.realpath(os.path.abspath(path))


def check_argument(raw: str, out_root: str | os.PathLike[str]) -> str | None:
    """Refuse an input argument that is empty or overlaps the output directory ``out_root``;
    return its resolved path (None for a URL).

    A folder equal to OUT or inside it would have its images replaced by their outputs (and
    walked again as inputs by the next run); so would a file inside OUT. OUT inside an input
    folder is fine: the walk never enters it. Blocking (it resolves links).
    """
    if not raw.strip():
        raise BatchConfigError(
            "an input is an empty name: remove the empty argument (an empty string is not "
            "the current folder; write . for that)",
            field="inputs",
        )
    if is_url(raw):
        return None
    path, root = real(raw), os.fspath(out_root)
    if os.path.isdir(path):
        if is_within(path, root):
            where = "is" if path == root else "is inside"
            raise BatchConfigError(
                f"the input folder {raw} {where} the output directory {root}: its images "
                "would be replaced by their ID photos; choose an -o/out_dir outside it",
                field="out_dir",
            )
    elif is_within(path, root):
        raise BatchConfigError(
            f"the input {raw} is inside the output directory {root}: an output could "
            "replace it; move it or choose another -o/out_dir",
            field="out_dir",
        )
    return path


def check_side_files(
    out_root: Path,
    arguments: Iterable[str],
    *,
    journal: str | os.PathLike[str] | None,
    report: str | os.PathLike[str] | None = None,
) -> None:
    """Refuse a journal or report that is a folder, or that would overwrite the other, an
    input, a walked input or an output. Blocking."""
    inputs = [a for a in arguments if a.strip() and not is_url(a)]
    files = {real(a) for a in inputs if not os.path.isdir(a)}
    folders = [real(a) for a in inputs if os.path.isdir(a)]
    named: list[tuple[str, Path]] = []
    if journal is not None:
        named.append(("--journal", Path(real(journal))))
    if report is not None:
        named.append(("--report", Path(real(report))))
    for flag, path in named:
        if path.is_dir() or path == out_root:
            raise BatchConfigError(
                f"{flag} {path} is a directory: give a file name", field=flag.strip("-")
            )
        if str(path) in files:
            raise BatchConfigError(
                f"{flag} {path} is one of the inputs: it would be overwritten; choose another path",
                field=flag.strip("-"),
            )
        walked = [os.fspath(out_root), *folders]
        if path.suffix.lower() in IMAGE_EXTENSIONS and any(is_within(path, d) for d in walked):
            raise BatchConfigError(
                f"{flag} {path} has an image name inside an input or output folder: it could "
                "be an input or an output; choose a name without an image extension",
                field=flag.strip("-"),
            )
    if journal is not None and report is not None:
        store = Journal(journal)  # `x.jsonl` means the database `x.sqlite3` (imported once)
        journal_path, report_path = real(store.path), real(report)
        guarded = {journal_path + s for s in _SIDECARS}
        if store.legacy_path is not None:
            guarded.add(real(store.legacy_path))
        if report_path in guarded:
            raise BatchConfigError(
                f"--report {report_path} would overwrite the journal (which keeps what was "
                "paid for): choose another report path",
                field="report",
            )


def prepare_out_dir(out_dir: Path) -> Path:
    """Create ``out_dir`` if needed, check it can be written; return its real path. Blocking."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise BatchConfigError(
            f"the output directory {out_dir} exists and is not a directory: choose another "
            "-o/out_dir",
            field="out_dir",
        ) from None
    except OSError as exc:
        raise BatchConfigError(
            f"cannot create the output directory {out_dir}: {exc.strerror or exc}; choose a "
            "writable -o/out_dir",
            field="out_dir",
        ) from None
    try:
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".idphoto-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise BatchConfigError(
            f"cannot write in the output directory {out_dir}: {exc.strerror or exc}; choose a "
            "writable -o/out_dir",
            field="out_dir",
        ) from None
    return Path(real(out_dir))
