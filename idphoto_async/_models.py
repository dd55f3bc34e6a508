"""Typed values the API returns: task states, tasks and task results."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import attrs

from ._constants import MAX_TASK_ID_CHARS, RESULT_TTL
from ._errors import MalformedResponseError

__all__ = ["ImageKind", "Task", "TaskResult", "TaskState"]

ImageKind = Literal["url", "base64"]


class TaskState(enum.IntEnum):
    """Every ``data.state`` code of the API, with its meaning.

    1 means succeeded, greater than 1 still processing, less than 0 failed. A code the
    API adds later is still accepted: it becomes a pseudo-member named ``UNKNOWN_<code>``
    that follows the same sign rule.
    """

    PROMPT_INVALID = -17
    THIRD_PARTY_REVIEW_REJECTED = -16
    INSUFFICIENT_RESOURCES = -15
    CONTENT_NOT_SUITABLE = -14
    CANCELED = -13
    EMPTY_RESULT = -11
    INTERNAL_REVIEW_REJECTED = -10
    LOOP_FAILED = -9
    TIMED_OUT = -8
    INVALID_IMAGE = -7
    URL_IMAGE_TOO_LARGE = -5
    SOURCE_DOWNLOAD_FAILED = -3
    RESULT_UPLOAD_FAILED = -2
    FAILED = -1
    QUEUED = 0
    SUCCEEDED = 1
    PREPARING = 2
    WAITING = 3
    PROCESSING = 4
    PUBLISHING = 5
    LOOP_PROCESSING = 6

    @classmethod
    def _missing_(cls, value: object) -> TaskState | None:
        if isinstance(value, int) and not isinstance(value, bool):
            member = int.__new__(cls, value)
            member._name_ = f"UNKNOWN_{'MINUS_' if value < 0 else ''}{abs(value)}"
            member._value_ = value
            return member
        return None

    @property
    def is_done(self) -> bool:
        """The task succeeded and its image is ready."""
        return self.value == 1

    @property
    def is_failed(self) -> bool:
        """The task ended in failure (any negative code)."""
        return self.value < 0

    @property
    def is_processing(self) -> bool:
        """The task is queued or still being worked on (0 or greater than 1)."""
        return self.value == 0 or self.value > 1

    @property
    def description(self) -> str:
        """The API's own words for this code."""
        return _DESCRIPTIONS.get(self.value, f"Unknown task state {self.value}.")

    @property
    def retryable(self) -> bool:
        """Whether creating the task again may succeed (only meaningful when failed)."""
        return self.value in _RETRYABLE or (self.is_failed and self.value not in _DESCRIPTIONS)


_DESCRIPTIONS: dict[int, str] = {
    -17: "Processing failed because the prompt is invalid.",
    -16: "Processing failed because a third-party review detected prohibited content.",
    -15: "Processing failed due to insufficient resources.",
    -14: "Processing failed because the input image content does not meet the requirements.",
    -13: "Processing failed because the task was canceled due to an exception.",
    -11: "Processing failed because the result is empty.",
    -10: "Processing failed because internal review detected prohibited content.",
    -9: "Processing failed because the internal program failed during loop processing.",
    -8: "Processing timed out. The maximum processing time is 180 seconds.",
    -7: "Invalid image file (e.g. corrupted image or incorrect format).",
    -5: "The image_url image exceeds the size limit (30MB).",
    -3: "The server failed to download your file. Check that the source image URL is available.",
    -2: "Processing completed, but uploading the result to OSS failed.",
    -1: "Processing failed.",
    0: "Queued. The task is waiting in the queue.",
    1: "Completed. Processing succeeded.",
    2: "Preparing.",
    3: "Waiting.",
    4: "Processing in progress.",
    5: "Internally publishing the result.",
    6: "Processing. Internal loop processing is in progress.",
}

# Failures on the service's side that a fresh task may not meet again. The others depend on
# the input itself (its content, format, size or URL) and fail the same way every time.
_RETRYABLE: frozenset[int] = frozenset({-15, -13, -11, -9, -8, -2, -1})


def _parse_timestamp(value: object, field: str) -> datetime | None:
    """Parse the API's timestamps: epoch seconds (as number or string) or ISO 8601."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise MalformedResponseError(f"data.{field} is a boolean, expected a timestamp")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise MalformedResponseError(
                    f"data.{field} is not a timestamp: {value[:40]!r}"
                ) from None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    else:
        raise MalformedResponseError(f"data.{field} has type {type(value).__name__}")
    if seconds > 1e11:  # milliseconds
        seconds /= 1000.0
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedResponseError(f"data.{field} is out of range: {value!r}") from None


def _short_repr(value: str | None) -> str:
    if value is None or len(value) <= 80:
        return repr(value)
    return f"{value[:60]!r}...<{len(value)} chars>"


def _require_task_id(data: Mapping[str, Any]) -> str:
    if not isinstance(data, Mapping):
        raise MalformedResponseError("data is not an object")
    task_id = data.get("task_id")
    if not isinstance(task_id, str) or not task_id or len(task_id) > MAX_TASK_ID_CHARS:
        raise MalformedResponseError("the response has no valid data.task_id")
    return task_id


@attrs.frozen
class Task:
    """A task created in async mode: poll it with `AsyncIDPhotoClient.wait`."""

    task_id: str
    created_at: datetime | None = None
    """When the client saw the task created (UTC)."""

    @classmethod
    def from_api(cls, data: Mapping[str, Any], *, now: datetime | None = None) -> Task:
        """Build from the ``data`` object of an async create response."""
        return cls(task_id=_require_task_id(data), created_at=now or datetime.now(UTC))


@attrs.frozen
class TaskResult:
    """The state of a task, as a query (or a sync create) returns it."""

    task_id: str
    state: TaskState
    progress: int = 0
    image: str | None = attrs.field(default=None, repr=lambda v: _short_repr(v))
    image_kind: ImageKind | None = None
    created_at: datetime | None = None
    processed_at: datetime | None = None
    completed_at: datetime | None = None
    message: str = ""

    @property
    def is_done(self) -> bool:
        """Succeeded, with an image."""
        return self.state.is_done

    @property
    def is_failed(self) -> bool:
        """Ended in failure."""
        return self.state.is_failed

    @property
    def is_processing(self) -> bool:
        """Queued or still processing."""
        return self.state.is_processing

    @property
    def is_url(self) -> bool:
        """The image is a URL (``return_type=1``) rather than base64 data."""
        return self.image_kind == "url"

    @property
    def expires_at(self) -> datetime | None:
        """When the result (and its URL) stops being available, if known."""
        anchor = self.completed_at or self.processed_at or self.created_at
        return anchor + timedelta(seconds=RESULT_TTL) if anchor else None

    @classmethod
    def from_api(cls, data: Mapping[str, Any], *, message: str = "") -> TaskResult:
        """Build from the ``data`` object of a query or sync create response.

        Raises `MalformedResponseError` for anything that does not fit the API.
        """
        if not isinstance(data, Mapping):
            raise MalformedResponseError("data is not an object")
        task_id = _require_task_id(data)
        raw_state = data.get("state")
        if isinstance(raw_state, str) and raw_state.lstrip("-").isdigit():
            raw_state = int(raw_state)
        if isinstance(raw_state, float) and raw_state.is_integer():
            raw_state = int(raw_state)
        if not isinstance(raw_state, int) or isinstance(raw_state, bool):
            raise MalformedResponseError(f"task {task_id}: data.state is missing or not an integer")
        if not -1000 <= raw_state <= 1000:
            raise MalformedResponseError(f"task {task_id}: data.state {raw_state} is out of range")
        state = TaskState(raw_state)
        progress = data.get("progress", 0)
        if isinstance(progress, str) and progress.isdigit():
            progress = int(progress)
        if not isinstance(progress, int | float) or isinstance(progress, bool):
            raise MalformedResponseError(f"task {task_id}: data.progress is not a number")
        progress = int(max(0, min(100, progress)))
        image = data.get("image")
        if image is not None and not isinstance(image, str):
            raise MalformedResponseError(f"task {task_id}: data.image is not a string")
        image = image or None
        kind: ImageKind | None = None
        if image is not None:
            kind = "url" if image.startswith(("http://", "https://")) else "base64"
        if state.is_done and image is None:
            raise MalformedResponseError(f"task {task_id}: state is 1 but data.image is empty")
        return cls(
            task_id=task_id,
            state=state,
            progress=100 if state.is_done else progress,
            image=image,
            image_kind=kind,
            created_at=_parse_timestamp(data.get("created_at"), "created_at"),
            processed_at=_parse_timestamp(data.get("processed_at"), "processed_at"),
            completed_at=_parse_timestamp(data.get("completed_at"), "completed_at"),
            message=message if isinstance(message, str) else "",
        )
