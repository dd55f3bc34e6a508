"""An ID-photo web service on FastAPI, in front of the ID Photo API.

    POST /id-photo                  multipart: file, size, format, bg_color -> the photo bytes
    POST /id-photo/tasks            same fields -> 202 {"task_id", "status_url"}
    GET  /id-photo/tasks/{task_id}  202 {"state", "progress"} while processing, then the photo

One AsyncIDPhotoClient (one connection pool, one rate limiter for the key) is created in the
app's lifespan and shared by every request through ``app.state``. When the key's QPS is used
up, a request waits at most ``queue_timeout`` seconds for a slot, then gets 503 with a
Retry-After header instead of hanging.

Run it with ``IDPHOTO_API_KEY=... uvicorn fastapi_app:app`` (or point ``IDPHOTO_BASE_URL`` at
``idphoto serve`` to work offline).
"""

from __future__ import annotations

import base64
import binascii
import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from idphoto_async import (
    APIStatusError,
    APITimeoutError,
    AsyncIDPhotoClient,
    IDPhotoError,
    LimiterTimeoutError,
    MalformedResponseError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    TaskFailedError,
    TaskTimeoutError,
    ValidationError,
)

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # the API's limit; larger uploads are refused unread


def create_app(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    qps: float = 2.0,
    queue_timeout: float = 2.0,
) -> FastAPI:
    """The app; ``api_key`` and ``base_url`` default to env IDPHOTO_API_KEY / IDPHOTO_BASE_URL."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One client for the whole app: requests share its pool and its QPS budget.
        async with AsyncIDPhotoClient(
            api_key, base_url, qps=qps, queue_timeout=queue_timeout
        ) as client:
            app.state.idphoto = client
            yield

    app = FastAPI(title="ID photos", lifespan=lifespan)
    app.add_exception_handler(IDPhotoError, idphoto_error_handler)  # type: ignore[arg-type]

    @app.post("/id-photo", response_class=Response)
    async def make_id_photo(
        request: Request,
        file: Annotated[UploadFile, File()],
        size: Annotated[str | None, Form()] = None,
        format: Annotated[str | None, Form()] = None,
        bg_color: Annotated[str | None, Form()] = None,
    ) -> Response:
        """Make an ID photo in one API request (sync mode) and return its bytes."""
        client: AsyncIDPhotoClient = request.app.state.idphoto
        image = await read_upload(file)
        result = await client.create(
            image,
            sync=True,  # 1 request per photo; raises TaskFailedError on a failed state
            size=size,
            format=format,
            bg_color=bg_color,
            return_type="base64",  # the image comes in the answer: no second download
        )
        return photo_response(result.image or "")

    @app.post("/id-photo/tasks", status_code=202)
    async def create_task(
        request: Request,
        file: Annotated[UploadFile, File()],
        size: Annotated[str | None, Form()] = None,
        format: Annotated[str | None, Form()] = None,
        bg_color: Annotated[str | None, Form()] = None,
    ) -> dict[str, str]:
        """Create a task (async mode, returns at once); poll its status_url."""
        client: AsyncIDPhotoClient = request.app.state.idphoto
        image = await read_upload(file)
        task = await client.create(
            image, size=size, format=format, bg_color=bg_color, return_type="base64"
        )
        return {"task_id": task.task_id, "status_url": f"/id-photo/tasks/{task.task_id}"}

    @app.get("/id-photo/tasks/{task_id}", response_class=Response)
    async def get_task(request: Request, task_id: str) -> Response:
        """One query: 202 while processing, the photo when done, 422 if it failed."""
        client: AsyncIDPhotoClient = request.app.state.idphoto
        result = await client.get(task_id)
        if result.is_failed:
            raise TaskFailedError(result.task_id, result.state, result.message)
        if result.is_processing:
            return JSONResponse(
                {"task_id": task_id, "state": result.state.name, "progress": result.progress},
                status_code=202,
                headers={"Retry-After": "1"},
            )
        return photo_response(result.image or "")

    return app


async def read_upload(file: UploadFile) -> bytes:
    """The uploaded bytes, refusing more than the API accepts before reading them."""
    if file.size is not None and file.size > MAX_UPLOAD_BYTES:
        raise PayloadTooLargeError("the upload is larger than 20 MB", status_code=413)
    return await file.read()


def photo_response(image_base64: str) -> Response:
    """The decoded photo, with its content type (PNG or JPEG)."""
    try:
        photo = base64.b64decode(image_base64, validate=True)
    except binascii.Error:
        raise MalformedResponseError("the image is not base64") from None
    media_type = "image/png" if photo.startswith(b"\x89PNG") else "image/jpeg"
    return Response(photo, media_type=media_type)


def retry_after(seconds: float | None) -> dict[str, str]:
    """A Retry-After header (whole seconds, at least 1)."""
    return {"Retry-After": str(max(1, math.ceil(seconds or 1)))}


async def idphoto_error_handler(request: Request, exc: IDPhotoError) -> JSONResponse:
    """Map each SDK error to the HTTP answer a caller of this service can act on."""
    body: dict[str, object] = {"detail": str(exc), "error": type(exc).__name__}
    if isinstance(exc, LimiterTimeoutError):
        # The key's QPS is fully booked: shed load now rather than hold the request open.
        return JSONResponse(body, status_code=503, headers=retry_after(exc.retry_after))
    if isinstance(exc, ValidationError):
        # Bad size, colour, format or image: the SDK's message says what to fix.
        return JSONResponse({**body, "field": exc.field}, status_code=422)
    if isinstance(exc, TaskFailedError):
        body.update(
            task_id=exc.task_id,
            state=int(exc.state),
            state_name=exc.state.name,
            reason=exc.reason,
            retryable=exc.retryable,
        )
        return JSONResponse(body, status_code=422)
    if isinstance(exc, PayloadTooLargeError):
        return JSONResponse(body, status_code=413)
    if isinstance(exc, NotFoundError):
        return JSONResponse(body, status_code=404)
    if isinstance(exc, RateLimitError):
        # 429s were retried inside the SDK and still failed: tell the caller to come back.
        return JSONResponse(body, status_code=503, headers=retry_after(exc.retry_after))
    if isinstance(exc, APITimeoutError | TaskTimeoutError):
        return JSONResponse(body, status_code=504)
    if isinstance(exc, APIStatusError) and exc.status_code == 400:
        return JSONResponse(body, status_code=400)
    # 401 (our key), 5xx, connection errors, malformed answers: the upstream failed us.
    return JSONResponse(body, status_code=502)


app = create_app(
    queue_timeout=float(os.environ.get("IDPHOTO_QUEUE_TIMEOUT", "2")),
)
