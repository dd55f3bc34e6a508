"""``idphoto batch``: many photos, a progress bar, a resume journal and a report."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    add_client_flags,
    add_option_flags,
    api_key_or_exit,
    check_qps,
    error,
    fail_usage,
    make_options,
)
from ._native_log import native_stderr_to

LOCAL_QPS = 50.0
"""Client QPS with --local (the in-process server has no rate limit)."""
LOCAL_FIRST_POLL = 0.5
"""With --local: seconds before the first query of a task, until the schedule has learned."""
ENGINE_LOG = ".idphoto-engine.log"
"""With --local: where the engine's native libraries log (kept off the terminal)."""

DESCRIPTION = """\
Make an ID photo of every INPUT and write it under OUT, mirroring the input tree (files found
in a directory keep their place below it; the extension follows --format).

INPUT is an image file, a directory (walked recursively for jpg, jpeg, png, bmp, webp, tiff,
tif, bitmap, raw, rgb, jfif and lzw files, in sorted order) or an http(s):// URL (the service
fetches it).

Re-running the same command resumes: finished photos are skipped without a request, tasks
already created are polled instead of paid again, inputs that failed for good are reported
again (use --retry-failed to try them anew). Progress is kept in a journal, by default
OUT/.idphoto-journal.sqlite3.

Exit status: 0 all succeeded (or were already done), 1 some inputs failed (the others are
done), 2 usage or configuration error, 130 interrupted (re-run the same command to resume).
"""

EPILOG = """\
examples:
  IDPHOTO_API_KEY=... idphoto batch photos/ -o out --size 295x413 --format jpg
  idphoto batch photos/ -o out --local --report report.jsonl
"""


def configure(sub: Any) -> None:
    """Add the ``batch`` subcommand to ``sub`` (an argparse subparsers action)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "batch",
        help="make ID photos of many images (files, folders, URLs), resumable",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image file, directory or URL")
    parser.add_argument(
        "-o",
        "--out",
        "--output",
        dest="out",
        required=True,
        metavar="OUT",
        help="output directory (created if missing)",
    )
    add_option_flags(parser)
    run = parser.add_argument_group("run")
    run.add_argument(
        "--mode",
        choices=["async", "sync"],
        default="async",
        help="async: create, poll, download (default; resumable, ~2 requests per "
        "photo); sync: one request per photo that waits for the result",
    )
    run.add_argument(
        "--max-in-flight",
        type=int,
        metavar="N",
        help="photos in progress at once (default: from --qps)",
    )
    run.add_argument(
        "--journal", metavar="PATH", help="resume journal (default OUT/.idphoto-journal.sqlite3)"
    )
    run.add_argument(
        "--report",
        metavar="PATH",
        help="write one JSON object per input per line: input, status, task_id, output, error",
    )
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="try again inputs that failed permanently in an earlier run",
    )
    run.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar: failures and a one-line summary only",
    )
    add_client_flags(parser)
    _service_group(parser).add_argument(
        "--local",
        action="store_true",
        help="run against an in-process local server and engine: no key, no network, no credits",
    )
    _service_group(parser).add_argument(
        "--redis-url",
        metavar="URL",
        help="share the key's QPS with every process using the same Redis (redis://host:6379/0;"
        " needs idphoto-async[redis]); fails closed if Redis is unreachable",
    )
    parser.set_defaults(func=run_batch_command)


def _service_group(parser: argparse.ArgumentParser) -> Any:
    for group in parser._action_groups:
        if group.title == "service":
            return group
    return parser  # pragma: no cover


def run_batch_command(args: argparse.Namespace) -> int:
    """Entry point of ``idphoto batch``."""
    make_options(args)  # exit 2 on a bad size, format or colour
    check_qps(args.qps)
    if args.max_in_flight is not None and args.max_in_flight < 1:
        fail_usage("--max-in-flight must be at least 1")
    if args.local and args.base_url:
        fail_usage("--local and --base-url exclude each other: --local runs its own server")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        fail_usage(f"-o {out} exists and is not a directory")
    key: str | None
    with ExitStack() as stack:
        if args.local:
            base_url, key, qps = (
                stack.enter_context(_local_server(out / ENGINE_LOG)),
                "local",
                args.qps or LOCAL_QPS,
            )
        else:
            key = api_key_or_exit(args.base_url)
            base_url, qps = args.base_url, args.qps or 2.0
        return anyio.run(_run, args, out, base_url, key, qps)
    raise AssertionError("unreachable")  # pragma: no cover


@contextmanager
def _local_server(engine_log: Path) -> Iterator[str]:
    """Start the in-process server (the default engine, no rate limit); say which engine.

    The engine's native log lines go to ``engine_log``, not the terminal.
    """
    try:
        from ..engine import default_engine_name
        from ..server import ServerConfig
        from ..testing import TESTING_DEFAULTS, LocalServer
    except ImportError as exc:
        fail_usage(
            f"--local needs the server extra ({exc.name} is missing): "
            "pip install 'idphoto-async[server]' (add [local] for the real engine)"
        )
    engine = default_engine_name()
    config = ServerConfig(
        **{
            **TESTING_DEFAULTS,
            "engine": engine,
            "qps": None,
            "workers": max(1, min(8, os.cpu_count() or 1)),
        }
    )
    what = (
        "face detection, framing and background replacement"
        if engine == "local"
        else "resize and background only, no face detection; pip install "
        "'idphoto-async[local]' for the real engine"
    )
    error(
        f"running locally: in-process server with the '{engine}' engine ({what}); "
        "no key, no network, no credits"
    )

    with native_stderr_to(engine_log), LocalServer(config) as server:
        yield server.base_url


def _local_schedule() -> Any:
    """Polling for the local engine: tasks take a fraction of a second, not the cloud's ~3 s."""
    from .._polling import PollSchedule

    return PollSchedule(initial_guess=LOCAL_FIRST_POLL, min_delay=0.05)


@asynccontextmanager
async def _shared_limiter(
    redis_url: str | None, key: str | None, base_url: str | None, qps: float
) -> AsyncIterator[Any]:
    """A RedisLimiter for ``--redis-url`` (one budget per key and service), else None."""
    if not redis_url:
        yield None
        return
    try:
        from .._redis_limiter import LimiterUnavailableError, RedisLimiter
    except ImportError:
        fail_usage("--redis-url needs the redis extra: pip install 'idphoto-async[redis]'")
    # Processes sharing a key share a budget: name it by a hash of key and service, never
    # by the key itself.
    digest = hashlib.sha256(f"{base_url or ''}\0{key or ''}".encode()).hexdigest()[:16]
    async with RedisLimiter(redis_url, key=f"idphoto:limiter:{digest}", qps=qps) as limiter:
        try:
            await limiter.check()
        except LimiterUnavailableError as exc:
            fail_usage(str(exc))
        yield limiter


async def _run(
    args: argparse.Namespace,
    out: Path,
    base_url: str | None,
    key: str | None,
    qps: float,
) -> int:
    from .._batch import BatchRunner
    from .._client import AsyncIDPhotoClient
    from .._errors import IDPhotoError
    from .._paths import discover
    from ._progress import make_display, summary_line

    started = time.monotonic()
    create_options = {
        "size": args.size,
        "format": args.format,
        "bg_color": args.bg_color,
        "return_type": args.return_type,
    }
    async with (
        _shared_limiter(args.redis_url, key, base_url, qps) as limiter,
        AsyncIDPhotoClient(
            api_key=key,
            base_url=base_url,
            qps=qps,
            limiter=limiter,
            poll_schedule=_local_schedule() if args.local else None,
        ) as client,
    ):
        runner = BatchRunner(
            client,
            out_dir=out,
            mode=args.mode,
            max_in_flight=args.max_in_flight,
            journal=args.journal,
            retry_failed=args.retry_failed,
            **create_options,
        )
        display = make_display(
            runner.stats, lambda: client.requests_sent, no_progress=args.no_progress
        )
        interrupts = 0
        report = await _open_report(args.report)
        try:
            async with anyio.create_task_group() as tg:
                with anyio.CancelScope() as work:

                    def on_interrupt() -> None:
                        nonlocal interrupts
                        interrupts += 1
                        if interrupts == 1:
                            runner.stop()
                            display.note(
                                "Interrupted: no new photos are started; the ones in "
                                "flight finish and are journaled. Ctrl-C again to "
                                "stop now."
                            )
                        elif interrupts == 2:
                            display.note(
                                "Stopping now (creates on the wire get a few seconds to "
                                "answer, so their tasks are journaled)."
                            )
                            work.cancel()
                        else:
                            os._exit(EXIT_INTERRUPTED)

                    tg.start_soon(_watch_interrupts, on_interrupt)
                    tg.start_soon(_count_inputs, args.inputs, out, display.set_total)
                    tg.start_soon(_refresh, display)
                    display.start()
                    async with runner.outcomes(discover(args.inputs, exclude=[out])) as outcomes:
                        async for outcome in outcomes:
                            display.outcome(outcome)
                            if report is not None:
                                await report.write(
                                    json.dumps(outcome.report_record(), ensure_ascii=False) + "\n"
                                )
                                await report.flush()
                tg.cancel_scope.cancel()
        except IDPhotoError as exc:
            display.stop()
            error(str(exc))
            return 2
        finally:
            if report is not None:
                with anyio.CancelScope(shield=True):
                    await report.aclose()
        display.stop()
        stats = runner.stats
        print(summary_line(stats, time.monotonic() - started, client.requests_sent), flush=True)
        if stats.in_doubt:
            error(
                f"note: an earlier run was killed while {stats.in_doubt} create request(s) "
                "were pending; any that had reached the service made a task whose id was "
                "lost (the API cannot look it up), so those inputs were created again."
            )
        if stats.creates_in_doubt:
            error(
                f"note: {stats.creates_in_doubt} create request(s) failed after they may have "
                "reached the service (5xx, timeout or cut connection); each may have made a "
                "charged task whose id never came back."
            )
        if interrupts or runner.stopping:
            error(
                "interrupted: re-run the same command to resume (finished photos are "
                "skipped, created tasks are polled, not paid again)."
            )
            return EXIT_INTERRUPTED
        return EXIT_FAILED if stats.failed else EXIT_OK


async def _open_report(path: str | None) -> Any:
    if path is None:
        return None
    target = anyio.Path(path)
    await target.parent.mkdir(parents=True, exist_ok=True)
    return await anyio.open_file(path, "w", encoding="utf-8")


async def _watch_interrupts(callback: Callable[[], None]) -> None:
    """Turn Ctrl-C (SIGINT) and SIGTERM into calls of ``callback``."""
    try:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                callback()
    except NotImplementedError:  # pragma: no cover - Windows: KeyboardInterrupt as usual
        await anyio.sleep_forever()


async def _count_inputs(inputs: list[str], out: Path, set_total: Callable[[int], None]) -> None:
    """Count the inputs in a thread, for the bar's total and ETA (walks the folders once)."""
    from .._paths import discover

    def count() -> int:
        return sum(1 for _ in discover(inputs, exclude=[out]))

    set_total(await anyio.to_thread.run_sync(count, abandon_on_cancel=True))


async def _refresh(display: Any) -> None:
    while True:
        display.refresh()
        await anyio.sleep(0.2)
