"""idphoto-async: an async (asyncio and trio) SDK, CLI and local server for the ID Photo API."""

from __future__ import annotations

from ._errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    DownloadError,
    IDPhotoError,
    LimiterTimeoutError,
    MalformedResponseError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ResultExpiredError,
    ServerError,
    TaskFailedError,
    TaskTimeoutError,
    ValidationError,
)
from ._models import Task, TaskResult, TaskState

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "DownloadError",
    "IDPhotoError",
    "LimiterTimeoutError",
    "MalformedResponseError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitError",
    "ResultExpiredError",
    "ServerError",
    "Task",
    "TaskFailedError",
    "TaskResult",
    "TaskState",
    "TaskTimeoutError",
    "ValidationError",
    "__version__",
]
