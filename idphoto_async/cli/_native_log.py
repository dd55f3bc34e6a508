"""Keep native libraries' log lines (mediapipe, TFLite) off the user's terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def native_stderr_to(path: Path) -> Iterator[None]:
    """Send what native code writes to file descriptor 2 into ``path``.

    mediapipe's C++ side logs INFO/WARNING lines to fd 2 on every model load, with no
    setting to silence it from Python. Python's own ``sys.stderr`` (our messages, progress
    bar, tracebacks) keeps writing to the terminal through a duplicate of the original fd.
    """
    sys.stderr.flush()
    terminal = os.fdopen(
        os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace"
    )
    previous = sys.stderr
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 2)
    sys.stderr = terminal
    try:
        yield
    finally:
        terminal.flush()
        os.dup2(terminal.fileno(), 2)
        sys.stderr = previous
        terminal.close()
