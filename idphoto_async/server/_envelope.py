"""The API's JSON envelope ``{"status", "message", "data"}`` and its errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

__all__ = ["ApiError", "envelope"]


class ApiError(Exception):
    """Answer with HTTP ``status`` and this message (the status is also in the body)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def envelope(
    status: int = 200,
    message: str = "success",
    data: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A response whose HTTP status equals the body's ``status``."""
    body = {"status": status, "message": message, "data": {} if data is None else data}
    return JSONResponse(body, status_code=status, headers=headers)
