"""Errors read back from the journal, rebuilt through their own constructors.

A failure journaled by an earlier run is reported again as the same class with the same
fields (a restored `TaskFailedError` has its ``task_id`` and ``state``; an `APIStatusError`
its ``status_code``) and the same message, word for word.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from .. import _errors
from .._errors import IDPhotoError
from .._journal import ErrorInfo
from .._models import TaskState

__all__ = ["restore_error"]

Factory = Callable[[ErrorInfo, str | None], IDPhotoError]


def _task_failed(info: ErrorInfo, task_id: str | None) -> IDPhotoError:
    if info.state is None:
        return IDPhotoError(info.message)
    return _errors.TaskFailedError(task_id or "?", TaskState(info.state))


def _status(info: ErrorInfo, task_id: str | None) -> IDPhotoError:
    return _errors.status_error(info.http_status or 0, info.message, task_id=task_id)


_FACTORIES: Final[dict[str, Factory]] = {
    "TaskFailedError": _task_failed,
    "TaskTimeoutError": lambda _info, task_id: _errors.TaskTimeoutError(task_id or "?", 0.0),
    "ResultExpiredError": lambda _info, task_id: _errors.ResultExpiredError(task_id),
    "DownloadError": lambda info, task_id: _errors.DownloadError(
        info.message, task_id=task_id, retryable=not info.permanent
    ),
    "ValidationError": lambda info, _task_id: _errors.ValidationError(info.message),
    "APIConnectionError": lambda info, _task_id: _errors.APIConnectionError(info.message),
    "APITimeoutError": lambda info, _task_id: _errors.APITimeoutError(info.message),
    "MalformedResponseError": lambda info, _task_id: _errors.MalformedResponseError(info.message),
}


def restore_error(info: ErrorInfo, task_id: str | None) -> IDPhotoError:
    """The error ``info`` describes, as an instance of its class with its fields."""
    factory = _FACTORIES.get(info.type)
    if factory is None and info.http_status is not None:
        factory = _status
    error = factory(info, task_id) if factory is not None else IDPhotoError(info.message)
    error.args = (info.message,)  # the message as it was first reported, word for word
    return error
