"""Numbers and names fixed by the ID Photo API (see the seed) and our defaults."""

from __future__ import annotations

from typing import Final

DEFAULT_BASE_URL: Final = "https://techhk.aoscdn.com"
API_PATH: Final = "/api/tasks/visual/idphoto"
API_KEY_HEADER: Final = "X-API-KEY"
ENV_API_KEY: Final = "IDPHOTO_API_KEY"
ENV_BASE_URL: Final = "IDPHOTO_BASE_URL"

DEFAULT_QPS: Final = 2.0
"""Default requests per second per key."""

RESULT_TTL: Final = 3600.0
"""Seconds a result (and its URL) is kept after the task ends."""

MAX_PROCESSING_SECONDS: Final = 180.0
"""The service fails a task with state -8 after this long."""

SIZE_MIN: Final = 100
SIZE_MAX: Final = 2000
MAX_UPLOAD_BYTES: Final = 20 * 1024 * 1024
MAX_URL_IMAGE_BYTES: Final = 30 * 1024 * 1024
MAX_DIMENSION: Final = 4096

MAX_RESULT_BYTES: Final = 64 * 1024 * 1024
"""Cap on a downloaded result: a 2000x2000 ID photo is far smaller than this."""

INLINE_UPLOAD_BYTES: Final = 1024 * 1024
"""An image file up to this size is read whole when checked and sent as one chunk."""

MAX_TASK_ID_CHARS: Final = 256
"""A task id longer than this is not one the service makes: the answer is refused."""
