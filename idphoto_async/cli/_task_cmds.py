"""``idphoto create / get / wait``: one task at a time, JSON on stdout for scripts."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import anyio

from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    add_client_flags,
    add_option_flags,
    api_key_or_exit,
    check_base_url,
    check_http_backend,
    check_qps,
    error,
    fail_usage,
    make_options,
    print_json,
)


def configure(sub: Any) -> None:
    """Add ``create``, ``get`` and ``wait`` to ``sub`` (an argparse subparsers action)."""
    create = sub.add_parser(
        "create",
        help="create one ID-photo task; print its task (or, with --sync, its result) as JSON",
        description="Create one ID-photo task from an image file or an http(s) URL and print "
        'JSON: {"task_id", "created_at"} (async, default) or the result (--sync, or --wait). '
        "Exit 0 on success, 1 if the task or request failed, 2 on bad flags.",
    )
    create.add_argument("image", metavar="IMAGE_OR_URL", help="image file or http(s) URL")
    add_option_flags(create)
    create.add_argument(
        "--sync", action="store_true", help="one request that waits for the result (sync=1)"
    )
    create.add_argument(
        "--wait", action="store_true", help="async create, then poll until the result is ready"
    )
    create.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="also download the result image to PATH (implies --wait unless --sync)",
    )
    add_client_flags(create)
    create.set_defaults(func=run_create)

    get = sub.add_parser(
        "get",
        help="query a task once; print its result as JSON",
        description="Query a task once and print its state and result as JSON.",
    )
    get.add_argument("task_id", metavar="TASK_ID")
    add_client_flags(get)
    get.set_defaults(func=run_get)

    wait = sub.add_parser(
        "wait",
        help="poll a task until it ends; print its result as JSON",
        description="Poll a task until it succeeds (exit 0, result JSON) or fails (exit 1, "
        "error JSON).",
    )
    wait.add_argument("task_id", metavar="TASK_ID")
    wait.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="give up after this long (default: the service's 180 s limit + 30)",
    )
    wait.add_argument("-o", "--output", metavar="PATH", help="also download the result to PATH")
    add_client_flags(wait)
    wait.set_defaults(func=run_wait)


def result_json(result: Any) -> dict[str, Any]:
    """A `TaskResult` as JSON-ready data."""

    def when(value: Any) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "task_id": result.task_id,
        "state": int(result.state),
        "state_name": result.state.name,
        "progress": result.progress,
        "image": result.image,
        "image_kind": result.image_kind,
        "created_at": when(result.created_at),
        "processed_at": when(result.processed_at),
        "completed_at": when(result.completed_at),
        "expires_at": when(result.expires_at),
    }


def _error_json(exc: BaseException) -> dict[str, Any]:
    from .._journal import error_info

    return {"error": error_info(exc).to_json()}


async def _with_client(args: argparse.Namespace, key: str | None, work: Any) -> int:
    from .._client import AsyncIDPhotoClient
    from .._errors import IDPhotoError

    try:
        async with AsyncIDPhotoClient(
            api_key=key,
            base_url=args.base_url,
            qps=args.qps or 2.0,
            http_backend=args.http_backend,
        ) as client:
            result: int = await work(client)
            return result
    except IDPhotoError as exc:
        print_json(_error_json(exc))
        error(str(exc))
        return EXIT_FAILED
    except _SaveError as exc:
        print_json(
            {"task_id": exc.task_id, "error": {"type": "DownloadError", "message": str(exc)}}
        )
        error(str(exc))
        return EXIT_FAILED


def _prepare(args: argparse.Namespace) -> str | None:
    check_qps(args.qps)
    check_base_url(args.base_url)
    check_http_backend(args.http_backend)
    if getattr(args, "output", None):
        _check_output(Path(args.output))
    return api_key_or_exit(args.base_url)


def _check_output(path: Path) -> None:
    """Refuse an -o the result could never be saved to, before anything is paid."""
    if path.is_dir():
        fail_usage(f"-o {path} is a directory: give a file name, e.g. {path / 'photo.png'}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        fail_usage(f"-o {path}: {parent} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        fail_usage(f"-o {path}: cannot write in {parent} ({exc.strerror or exc})")


async def _save(client: Any, result: Any, output: str) -> str:
    """Download ``result`` to ``output``; a failure says how to fetch the result again."""
    from .._errors import DownloadError

    try:
        return str(await client.download(result, Path(output)))
    except (DownloadError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise _SaveError(
            f"task {result.task_id} succeeded but its result could not be saved to "
            f"{output}: {reason} Fetch it again with: idphoto wait {result.task_id} -o "
            "PATH (results are kept for 1 hour)",
            result.task_id,
        ) from None


class _SaveError(Exception):
    """The result exists but could not be stored."""

    def __init__(self, message: str, task_id: str) -> None:
        super().__init__(message)
        self.task_id = task_id


def run_create(args: argparse.Namespace) -> int:
    """``idphoto create``."""
    from .._paths import is_url

    make_options(args)
    key = _prepare(args)
    source: dict[str, Any] = (
        {"image_url": args.image} if is_url(args.image) else {"image_file": args.image}
    )
    options = {
        "size": args.size,
        "format": args.format,
        "bg_color": args.bg_color,
        "return_type": args.return_type,
    }

    async def work(client: Any) -> int:
        if args.sync:
            result = await client.create(sync=True, **source, **options)
        else:
            task = await client.create(**source, **options)
            if not (args.wait or args.output):
                created = None if task.created_at is None else task.created_at.isoformat()
                print_json({"task_id": task.task_id, "created_at": created})
                return EXIT_OK
            error(f"created task {task.task_id} (idphoto wait {task.task_id} fetches it)")
            result = await client.wait(task)
        data = result_json(result)
        if args.output:
            data["output"] = await _save(client, result, args.output)
        print_json(data)
        return EXIT_OK

    return anyio.run(_with_client, args, key, work)


def run_get(args: argparse.Namespace) -> int:
    """``idphoto get``."""
    key = _prepare(args)

    async def work(client: Any) -> int:
        print_json(result_json(await client.get(args.task_id)))
        return EXIT_OK

    return anyio.run(_with_client, args, key, work)


def run_wait(args: argparse.Namespace) -> int:
    """``idphoto wait``."""
    key = _prepare(args)

    async def work(client: Any) -> int:
        result = await client.wait(args.task_id, timeout=args.timeout)
        data = result_json(result)
        if args.output:
            data["output"] = await _save(client, result, args.output)
        print_json(data)
        return EXIT_OK

    return anyio.run(_with_client, args, key, work)
