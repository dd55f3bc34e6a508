"""The SDK's logger, ``logging.getLogger("idphoto_async")``, and what goes to it.

- DEBUG: one line per API request (method, path, status, milliseconds, attempt).
- INFO: every retry (what, why, after how long) and every 429 pause.
- WARNING: a create that may have been charged without giving back a usable task.

Nothing logged ever holds the API key: lines are built from methods, paths, statuses and
error sentences, none of which contain it. The SDK adds no handler (configure logging in
the application, e.g. ``logging.basicConfig(level=logging.INFO)``).
"""

from __future__ import annotations

import logging
from typing import Final

__all__ = ["LOGGER_NAME", "logger"]

LOGGER_NAME: Final = "idphoto_async"

logger: Final = logging.getLogger(LOGGER_NAME)
