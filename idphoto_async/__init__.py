"""idphoto-async: an async (asyncio and trio) SDK, CLI and local server for the ID Photo API."""

from __future__ import annotations

from ._client import AsyncIDPhotoClient, ImageFile
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
from ._limiter import Limiter, TokenBucketLimiter
from ._models import Task, TaskResult, TaskState
from ._options import CreateOptions, ReturnType
from ._polling import PollSchedule
from ._retry import RetryPolicy

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncIDPhotoClient",
    "AuthenticationError",
    "BadRequestError",
    "CreateOptions",
    "DownloadError",
    "IDPhotoError",
    "ImageFile",
    "Limiter",
    "LimiterTimeoutError",
    "MalformedResponseError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PollSchedule",
    "RateLimitError",
    "ResultExpiredError",
    "RetryPolicy",
    "ReturnType",
    "ServerError",
    "Task",
    "TaskFailedError",
    "TaskResult",
    "TaskState",
    "TaskTimeoutError",
    "TokenBucketLimiter",
    "ValidationError",
    "__version__",
]
