"""When a photo is created again within one run: the re-create policy, as a value.

A create is sent again for the same photo only

- after its task failed with a retryable state (`TaskState.retryable`): free, a failed task
  is not charged (``task_retries``, default 2);
- after a create that may have made a task whose id never came back (a 5xx, a timeout or a
  cut connection after sending): a possible second charge, so only when the caller asks
  (``create_retries``, default 0);
- after the result expired before it was stored: a certain second charge, only when the
  caller asks (``recreate_expired``).

Everything else is reported as the photo's failure. Every create that may be a second charge
is counted (`BatchStats.possible_extra_charges`, `BatchOutcome.possible_extra_charges`).
"""

from __future__ import annotations

import enum

import attrs

from .._errors import APIError, IDPhotoError, ResultExpiredError, TaskFailedError, ValidationError

__all__ = ["Attempts", "Reason", "RecreatePolicy"]


class Reason(enum.Enum):
    """Why a photo is created again."""

    TASK_FAILED = "task failed with a retryable state"
    """Free: a failed task is not charged."""
    CREATE_IN_DOUBT = "create may have made a task"
    """May be a second charge."""
    RESULT_EXPIRED = "result expired before it was stored"
    """A second charge."""

    @property
    def may_charge(self) -> bool:
        """Whether the new create may pay a second time for the photo."""
        return self is not Reason.TASK_FAILED


@attrs.define
class Attempts:
    """The new creates one photo has had in this run, by reason."""

    task_failed: int = 0
    create_in_doubt: int = 0
    result_expired: int = 0
    possible_extra_charges: int = 0

    def note(self, reason: Reason) -> None:
        """Count one more create for ``reason``."""
        if reason is Reason.TASK_FAILED:
            self.task_failed += 1
        elif reason is Reason.CREATE_IN_DOUBT:
            self.create_in_doubt += 1
        else:
            self.result_expired += 1
        if reason.may_charge:
            self.possible_extra_charges += 1


def _non_negative(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"{attribute.name} must be an integer >= 0", field=attribute.name)


@attrs.frozen
class RecreatePolicy:
    """How many new creates a photo may get in one run, and for what (see the module)."""

    task_retries: int = attrs.field(default=2, validator=_non_negative)
    create_retries: int = attrs.field(default=0, validator=_non_negative)
    recreate_expired: bool = False

    @property
    def budget(self) -> int:
        """The most new creates one photo can get in a run (all reasons together)."""
        return self.task_retries + self.create_retries + int(self.recreate_expired)

    def reason(self, error: IDPhotoError, attempts: Attempts) -> Reason | None:
        """Why ``error`` calls for one more create of the photo, or None to report it."""
        if isinstance(error, TaskFailedError):
            if error.retryable and attempts.task_failed < self.task_retries:
                return Reason.TASK_FAILED
        elif isinstance(error, ResultExpiredError):
            if self.recreate_expired and attempts.result_expired < 1:
                return Reason.RESULT_EXPIRED
        elif (
            isinstance(error, APIError)
            and error.task_may_exist
            and attempts.create_in_doubt < self.create_retries
        ):
            return Reason.CREATE_IN_DOUBT
        return None
