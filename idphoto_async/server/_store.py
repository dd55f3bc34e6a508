"""Tasks and result files in memory, forgotten ``result_ttl`` seconds after the task ends."""

from __future__ import annotations

import collections
import secrets
import threading
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import attrs

__all__ = ["ResultFile", "TaskRecord", "TaskStore"]


@attrs.define(eq=False)
class TaskRecord:
    """One task as the server tracks it (mutated only on the event loop)."""

    return_type: int
    created_at: float
    task_id: str = attrs.field(factory=lambda: str(uuid.uuid4()))
    state: int = 0
    progress: int = 0
    processed_at: float | None = None
    completed_at: float | None = None
    image_base64: str | None = attrs.field(default=None, repr=False)
    result_name: str | None = None
    message: str = "success"
    owner: str | None = None
    """The label of the key that made the task when the server checks keys; else None."""
    done: anyio.Event = attrs.field(factory=anyio.Event, repr=False)

    @property
    def finished(self) -> bool:
        """Succeeded or failed."""
        return self.state == 1 or self.state < 0

    def data(self, result_url: Callable[[str], str]) -> dict[str, Any]:
        """The ``data`` object of a query answer; ``result_url`` spells a result's URL."""
        data: dict[str, Any] = {
            "task_id": self.task_id,
            "state": self.state,
            "progress": self.progress,
            "created_at": _stamp(self.created_at),
        }
        if self.processed_at is not None:
            data["processed_at"] = _stamp(self.processed_at)
        if self.completed_at is not None:
            data["completed_at"] = _stamp(self.completed_at)
        if self.state == 1:
            data["image"] = self.image_base64 or result_url(self.result_name or "")
        return data


def _stamp(seconds: float) -> str:
    return str(int(seconds))


@attrs.frozen
class ResultFile:
    """A result image served under its random name until ``expires_at``."""

    body: bytes = attrs.field(repr=False)
    media_type: str
    expires_at: float


class TaskStore:
    """Thread-safe maps of task id -> task and result name -> file, with expiry."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._tasks: dict[str, TaskRecord] = {}
        self._results: dict[str, ResultFile] = {}
        self._lock = threading.Lock()

    def add(self, task: TaskRecord) -> None:
        with self._lock:
            self._tasks[task.task_id] = task

    def _expired(self, task: TaskRecord, now: float) -> bool:
        return task.completed_at is not None and task.completed_at + self.ttl <= now

    def get(self, task_id: str, now: float) -> TaskRecord | None:
        """The task, or None if unknown or expired."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is not None and self._expired(task, now):
                del self._tasks[task_id]
                return None
            return task

    def put_result(self, body: bytes, ext: str, now: float) -> str:
        """Keep a result file for ``ttl`` seconds; returns its unguessable name."""
        name = f"{secrets.token_urlsafe(24)}.{ext}"
        media_type = "image/png" if ext == "png" else "image/jpeg"
        with self._lock:
            self._results[name] = ResultFile(body, media_type, now + self.ttl)
        return name

    def get_result(self, name: str, now: float) -> ResultFile | None:
        """The result file, or None if unknown or expired."""
        with self._lock:
            result = self._results.get(name)
            if result is not None and result.expires_at <= now:
                del self._results[name]
                return None
            return result

    def sweep(self, now: float) -> int:
        """Forget everything expired; returns how many entries went."""
        with self._lock:
            tasks = [k for k, t in self._tasks.items() if self._expired(t, now)]
            results = [k for k, r in self._results.items() if r.expires_at <= now]
            for k in tasks:
                del self._tasks[k]
            for k in results:
                del self._results[k]
            return len(tasks) + len(results)

    def state_counts(self, now: float) -> dict[int, int]:
        """How many live (unexpired) tasks are in each state."""
        with self._lock:
            return dict(
                collections.Counter(
                    t.state for t in self._tasks.values() if not self._expired(t, now)
                )
            )
