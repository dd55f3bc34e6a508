"""The run's stop conditions: errors that are a property of the run, not of one photo.

- the service refuses the key (401, or a 403 refusal): every other photo would be refused
  the same way, so the run stops at once, and nothing is journaled as a photo's failure (a
  re-run with the right key just works);
- the API origin cannot be reached at all (no answer to any request yet, after the client's
  own retries): the run stops instead of trying every input;
- the journal cannot be written (a full disk): what was paid for must not be forgotten, so
  the run stops and keeps the ids of the tasks it could not journal;
- an output cannot be written for lack of space or a read-only disk: every photo would fail;
- the inputs are misconfigured (`BatchConfigError`) or the shared limiter is unreachable.

`RunStop` records the first such error and cancels the run; the run then raises it to the
caller as itself.
"""

from __future__ import annotations

import errno
import sys
from typing import Final

import anyio

from .._errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    DownloadError,
    IDPhotoError,
)
from .._journal import JournalWriteError
from ._layout import BatchConfigError

__all__ = ["RunStop", "disk_is_unusable", "key_refused"]

_DISK_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def key_refused(error: BaseException) -> bool:
    """The service refused the API key (401, or 403)."""
    return isinstance(error, AuthenticationError) or (
        isinstance(error, APIStatusError) and error.status_code == 403
    )


def _limiter_unavailable(error: BaseException) -> bool:
    """The shared (Redis) limiter cannot be reached (its module loads only with Redis)."""
    module = sys.modules.get("idphoto_async._redis_limiter")
    return module is not None and isinstance(error, module.LimiterUnavailableError)


def disk_is_unusable(error: BaseException) -> bool:
    """An output write failed for lack of space or a read-only file system."""
    causes = [error.__cause__, error.__context__] if isinstance(error, DownloadError) else [error]
    return any(isinstance(c, OSError) and c.errno in _DISK_ERRNOS for c in causes)


class RunStop:
    """The first run-level error, and the cancel scope it ends."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.unjournaled_task_ids: list[str] = []
        """Tasks made (and maybe paid for) that the journal could not keep."""
        self._answered = False
        self._probe: anyio.Event | None = None
        self._scope: anyio.CancelScope | None = None

    def attach(self, scope: anyio.CancelScope) -> None:
        """Cancel ``scope`` when the run must stop."""
        self._scope = scope
        if self.error is not None:
            scope.cancel()

    def answered(self) -> None:
        """The API origin answered a request (so it can be reached, and takes the key)."""
        self._answered = True
        if self._probe is not None:
            self._probe.set()

    def probe(self) -> anyio.Event | None:
        """Until the origin has answered once, photos start one at a time: a refused key or
        a dead origin then costs one photo's requests, not ``max_in_flight`` of them.

        Returns the event to wait for before starting the next photo (set when the origin
        answers, or by the caller when this photo ends), or None once it has answered.
        """
        if self._answered:
            return None
        self._probe = anyio.Event()
        return self._probe

    def is_run_level(self, error: BaseException) -> bool:
        """Whether ``error`` ends the whole run rather than one photo."""
        if isinstance(error, APIStatusError):
            if key_refused(error):
                return True
            self.answered()
            return False
        if isinstance(error, APIConnectionError):
            # A create that never connected (refused, DNS, connect timeout) made nothing:
            # if no request has ever been answered, the origin cannot be reached at all.
            never_connected = error.method == "POST" and not error.task_may_exist
            return never_connected and not self._answered
        if isinstance(error, IDPhotoError):
            return (
                isinstance(error, JournalWriteError | BatchConfigError)
                or _limiter_unavailable(error)
                or disk_is_unusable(error)
            )
        return True  # not one of ours: a bug or the caller's code; never swallow it

    def stop(self, error: BaseException) -> None:
        """End the run with ``error`` (the first one wins); keep an unjournaled task id."""
        task_id = getattr(error, "task_id", None)
        if isinstance(error, JournalWriteError) and task_id:
            self.unjournaled_task_ids.append(task_id)
        if self.error is None:
            self.error = error
        if self._scope is not None:
            self._scope.cancel()
