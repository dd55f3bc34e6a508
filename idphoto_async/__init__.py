"""idphoto-async: an async (asyncio and trio) SDK, CLI and local server for the ID Photo API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._aiohttp import AiohttpTransport
from ._batch import (
    BatchConfigError,
    BatchOutcome,
    BatchOutcomes,
    BatchRunner,
    BatchStats,
    RecreatePolicy,
    Shard,
    run_batch,
)
from ._client import AsyncIDPhotoClient, ImageFile
from ._errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
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
from ._limiter import Limiter, Reservation, TokenBucketLimiter
from ._models import Task, TaskResult, TaskState
from ._options import CreateOptions, ReturnType
from ._paths import BatchItem
from ._polling import PollSchedule
from ._pool import HTTPBackend
from ._retry import Retry, RetryPolicy, RetryPredicate
from ._sync_client import IDPhotoClient

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ._redis_limiter import LimiterUnavailableError, RedisLimiter

_LAZY = {"RedisLimiter", "LimiterUnavailableError"}


def __getattr__(name: str) -> Any:
    # The Redis limiter needs the optional `redis` extra: import it only when asked for.
    if name in _LAZY:
        from . import _redis_limiter

        return getattr(_redis_limiter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AiohttpTransport",
    "AsyncIDPhotoClient",
    "AuthenticationError",
    "BadRequestError",
    "BatchConfigError",
    "BatchItem",
    "BatchOutcome",
    "BatchOutcomes",
    "BatchRunner",
    "BatchStats",
    "ClientClosedError",
    "CreateOptions",
    "DownloadError",
    "HTTPBackend",
    "IDPhotoClient",
    "IDPhotoError",
    "ImageFile",
    "Limiter",
    "LimiterTimeoutError",
    "LimiterUnavailableError",
    "MalformedResponseError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PollSchedule",
    "RateLimitError",
    "RecreatePolicy",
    "RedisLimiter",
    "Reservation",
    "ResultExpiredError",
    "Retry",
    "RetryPolicy",
    "RetryPredicate",
    "ReturnType",
    "ServerError",
    "Shard",
    "Task",
    "TaskFailedError",
    "TaskResult",
    "TaskState",
    "TaskTimeoutError",
    "TokenBucketLimiter",
    "ValidationError",
    "__version__",
    "run_batch",
]
