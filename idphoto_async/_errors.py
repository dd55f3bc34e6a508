"""Every error the SDK raises, each saying what to do next.

Hierarchy::

    IDPhotoError
    ├── ValidationError            input the API would reject; no request was sent
    ├── APIError
    │   ├── APIStatusError         the API answered with a non-200 status
    │   │   ├── BadRequestError        400
    │   │   ├── AuthenticationError    401
    │   │   ├── NotFoundError          404
    │   │   ├── PayloadTooLargeError   413
    │   │   ├── RateLimitError         429
    │   │   └── ServerError            5xx
    │   ├── APIConnectionError     no answer (refused, reset, DNS, TLS)
    │   │   └── APITimeoutError
    │   └── MalformedResponseError the answer does not fit the API
    ├── TaskFailedError            the task ended with a negative state
    ├── TaskTimeoutError           the task did not finish in time
    ├── ResultExpiredError         the result URL is gone (kept for 1 hour)
    ├── DownloadError              the result download failed, was cut short or not saved
    ├── ClientClosedError          the client was used after ``aclose()``
    ├── LimiterTimeoutError        no request slot within the caller's timeout
    └── LimiterUnavailableError    the shared (Redis) limiter cannot be reached

Every error is built with its data and never changed after it is raised. An `APIError`
carries the request (``method``, ``url``; never the key), ``task_may_exist``, ``task_id``
where an answer named one, and for an answer its ``status_code`` and a bounded ``body``
excerpt. ``str(error)`` is one readable sentence saying what to do next.

No message or repr ever contains the API key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict, Unpack

if TYPE_CHECKING:
    from ._models import TaskState

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "DownloadError",
    "IDPhotoError",
    "LimiterTimeoutError",
    "MalformedResponseError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitError",
    "ResultExpiredError",
    "ServerError",
    "TaskFailedError",
    "TaskTimeoutError",
    "ValidationError",
    "status_error",
]

BODY_EXCERPT_CHARS = 500
"""An error keeps at most this many characters of the answer's body."""


class ErrorContext(TypedDict, total=False):
    """What an `APIError` knows of its request and answer (keyword arguments of each class)."""

    method: str | None
    url: str | None
    task_may_exist: bool
    task_id: str | None
    body: str | None


class IDPhotoError(Exception):
    """Base class of every error raised by idphoto-async."""

    retryable: bool = False
    """Whether trying the same thing again may succeed."""


class ValidationError(IDPhotoError, ValueError):
    """An input the API would reject, caught before any request (costs no credit, no QPS)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class APIError(IDPhotoError):
    """Talking to the API failed.

    Args:
        message: the readable sentence (``str(error)``).
        method: the request's HTTP method (``"POST"`` for a create).
        url: the request's URL (the key travels in a header, never in it).
        task_may_exist: for a create: the request may have reached the service and made a
            task (and so may be charged). Creating again may pay twice.
        task_id: the task an answer named, if any (poll it instead of creating again).
        body: an excerpt (at most `BODY_EXCERPT_CHARS`, key masked) of the answer's body.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        url: str | None = None,
        task_may_exist: bool = False,
        task_id: str | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.task_may_exist = task_may_exist
        self.task_id = task_id
        self.body = None if body is None else body[:BODY_EXCERPT_CHARS]


class APIStatusError(APIError):
    """The API answered with a non-200 status (in HTTP or in the JSON ``status``)."""

    status_code: int = 0
    advice: str = "Check the request and try again."

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        **context: Unpack[ErrorContext],
    ) -> None:
        if status_code is not None:
            self.status_code = status_code
        self.api_message = message
        self.retry_after = retry_after
        super().__init__(
            f"HTTP {self.status_code}: {message or 'no message'}. {self.advice}", **context
        )


class BadRequestError(APIStatusError):
    """400: a parameter is missing or has a wrong value."""

    status_code = 400
    advice = "A parameter is missing or has an incorrect value: fix the request, do not retry it."


class AuthenticationError(APIStatusError):
    """401: the API key is wrong or the service is not enabled for it."""

    status_code = 401
    advice = (
        "Check the API key (argument api_key or env IDPHOTO_API_KEY) and that the service is "
        "enabled for it."
    )


class NotFoundError(APIStatusError):
    """404: no such URL or task id (tasks are kept for 1 hour)."""

    status_code = 404
    advice = "Check the base URL and the task_id; results are kept for 1 hour only."


class PayloadTooLargeError(APIStatusError):
    """413: the uploaded file is too large."""

    status_code = 413
    advice = "Upload at most 20 MB (4096 x 4096 pixels); shrink or recompress the image."


class RateLimitError(APIStatusError):
    """429: more requests per second than the key allows."""

    status_code = 429
    retryable = True
    advice = (
        "Too many requests for this key's QPS (default 2): lower qps, share one limiter between "
        "clients of the same key, or ask the vendor for a higher QPS."
    )


class ServerError(APIStatusError):
    """5xx: the service failed."""

    status_code = 500
    retryable = True
    advice = "The service failed; retry later, and contact support if it persists."


class APIConnectionError(APIError):
    """No answer from the API (connection refused or reset, DNS, TLS)."""

    retryable = True

    def __init__(
        self,
        message: str = "Could not connect to the API.",
        **context: Unpack[ErrorContext],
    ) -> None:
        super().__init__(
            f"{message} Check the network and base_url; the call can be retried.", **context
        )


class APITimeoutError(APIConnectionError):
    """The request timed out (in any phase: connect, send, headers, body)."""

    def __init__(
        self,
        message: str = "The request timed out.",
        **context: Unpack[ErrorContext],
    ) -> None:
        super().__init__(message, **context)


class MalformedResponseError(APIError):
    """The API's answer does not fit its documented shape."""

    retryable = True

    def __init__(self, message: str, **context: Unpack[ErrorContext]) -> None:
        self.detail = message
        super().__init__(
            f"Unexpected response from the API: {message}. Check base_url points at the ID Photo "
            "API; retry later if it does.",
            **context,
        )


class TaskFailedError(IDPhotoError):
    """The task ended with a negative state."""

    def __init__(self, task_id: str, state: TaskState, message: str = "") -> None:
        self.task_id = task_id
        self.state = state
        self.reason = state.description
        self.api_message = message
        self.retryable = state.retryable
        hint = (
            "Creating the task again may succeed."
            if self.retryable
            else "Retrying the same input will fail the same way: fix the input."
        )
        extra = f" ({message})" if message and message.lower() != "success" else ""
        super().__init__(
            f"Task {task_id} failed with state {int(state)} ({state.name}): {self.reason}{extra} "
            f"{hint} Quote the task_id if you contact support."
        )


class TaskTimeoutError(IDPhotoError):
    """The task did not finish within the time given to it."""

    retryable = True

    def __init__(self, task_id: str, waited: float) -> None:
        self.task_id = task_id
        self.waited = waited
        super().__init__(
            f"Task {task_id} was still processing after {waited:.0f} s (the service's limit is "
            "180 s). Query it later with get(task_id); results are kept for 1 hour."
        )


class ResultExpiredError(IDPhotoError):
    """The result URL no longer works (results are kept for 1 hour)."""

    def __init__(self, task_id: str | None, detail: str = "") -> None:
        self.task_id = task_id
        super().__init__(
            f"The result of task {task_id or '?'} has expired or is gone{detail}. Results are "
            "kept for 1 hour: create the task again (this costs a credit)."
        )


class DownloadError(IDPhotoError):
    """Downloading, checking or saving the result failed; nothing was left under the final name.

    ``retryable`` is True for a failed or cut transfer (a new download may work) and False
    when the destination cannot be written (a folder, a read-only path, a full disk).
    """

    retryable: bool = True

    def __init__(
        self,
        message: str,
        *,
        task_id: str | None = None,
        retryable: bool = True,
        advice: str = "The destination was not written; the download can be retried.",
    ) -> None:
        self.task_id = task_id
        self.retryable = retryable
        super().__init__(f"{message} {advice}")


class ClientClosedError(IDPhotoError):
    """The client was used after `aclose()` (or after its ``async with`` block)."""

    def __init__(self, what: str = "AsyncIDPhotoClient") -> None:
        super().__init__(
            f"This {what} is closed (aclose() was called or its `with` block ended): "
            "create a new client, or keep this one open for as long as it is used."
        )


class LimiterTimeoutError(IDPhotoError):
    """No request slot became free within the caller's timeout (shed load, retry later)."""

    retryable = True

    def __init__(self, timeout: float, retry_after: float | None = None) -> None:
        self.timeout = timeout
        self.retry_after = retry_after
        super().__init__(
            f"No request slot within {timeout:g} s: the key's QPS is fully used. Retry later "
            "(answer 503 with Retry-After in a web handler) or raise the timeout."
        )


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    429: RateLimitError,
}


def status_error(
    status_code: int,
    message: str,
    *,
    retry_after: float | None = None,
    **context: Unpack[ErrorContext],
) -> APIStatusError:
    """The exception for a non-200 status, with the seed's meaning."""
    cls = _STATUS_CLASSES.get(status_code)
    if cls is None:
        cls = ServerError if status_code >= 500 else APIStatusError
    return cls(message, status_code=status_code, retry_after=retry_after, **context)
