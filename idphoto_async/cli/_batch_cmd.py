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

from .._gc_settings import BATCH_THRESHOLDS, collector_settings
from .._journal import JOURNAL_NAME
from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    add_client_flags,
    add_option_flags,
    api_key_or_exit,
    check_base_url,
    check_http_backend,
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

One photo named several ways (twice, or a folder and a file in it) is made once. OUT must
not be an input folder nor hold inputs; --report and --journal must not overwrite each other,
an input or an output: such collisions are refused before any request.

Re-running the same command resumes: finished photos are skipped without a request, tasks
already created are polled instead of paid again, inputs that failed for good are reported
again (use --retry-failed to try them anew). Progress is kept in a journal, by default
OUT/{journal}; with --shard K/N, one per shard.

Exit status: 0 all succeeded (or were already done), 1 some inputs failed (the others are
done), 2 usage or configuration error (including a key the service refuses, an API origin
that cannot be reached and a full disk), 130 interrupted (re-run the same command to resume).
"""

EPILOG = """\
examples:
  IDPHOTO_API_KEY=... idphoto batch photos/ -o out --size 295x413 --format jpg
  idphoto batch photos/ -o out --local --report report.jsonl
  idphoto batch photos/ -o out --shard 2/3 --redis-url redis://host:6379/0   # one of 3 machines
"""


def configure(sub: Any) -> None:
    """Add the ``batch`` subcommand to ``sub`` (an argparse subparsers action)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "batch",
        help="make ID photos of many images (files, folders, URLs), resumable",
        description=DESCRIPTION.format(journal=JOURNAL_NAME),
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
        default=None,
        help="async: create, poll, download (default; resumable, ~2 requests per "
        "photo); sync: one request per photo that waits for the result (the default with "
        "--local, whose in-process tasks end with the run anyway)",
    )
    run.add_argument(
        "--max-in-flight",
        type=int,
        metavar="N",
        help="photos in progress at once (default: from --qps)",
    )
    run.add_argument(
        "--journal", metavar="PATH", help=f"resume journal (default OUT/{JOURNAL_NAME})"
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
    run.add_argument(
        "--shard",
        metavar="K/N",
        help="take only the K-th of N deterministic shares of the inputs (N processes or "
        "machines split one batch; each keeps its own journal; add --redis-url to share the "
        "key's QPS)",
    )
    service = add_client_flags(parser)
    service.add_argument(
        "--local",
        action="store_true",
        help="run against an in-process local server and engine: no key, no network, no credits",
    )
    service.add_argument(
        "--redis-url",
        metavar="URL",
        help="share the key's QPS with every process using the same Redis (redis://host:6379/0;"
        " needs idphoto-async[redis]); fails closed if Redis is unreachable",
    )
    parser.set_defaults(func=run_batch_command)


def run_batch_command(args: argparse.Namespace) -> int:
    """Entry point of ``idphoto batch``."""
    make_options(args)  # exit 2 on a bad size, format or colour
    check_qps(args.qps)
    check_base_url(args.base_url)
    check_http_backend(args.http_backend)
    if args.max_in_flight is not None and args.max_in_flight < 1:
        fail_usage("--max-in-flight must be at least 1")
    if args.local and args.base_url:
        fail_usage("--local and --base-url exclude each other: --local runs its own server")
    if args.mode is None:
        args.mode = "sync" if args.local else "async"
    out = Path(args.out)
    key: str | None
    _refuse_inputs_in(out, args.inputs)  # before a local engine writes its log under OUT
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
        stack.enter_context(collector_settings(BATCH_THRESHOLDS))
        return anyio.run(_run, args, out, base_url, key, qps)
    raise AssertionError("unreachable")  # pragma: no cover


def _refuse_inputs_in(out: Path, inputs: list[str]) -> None:
    """Exit 2 if an input argument is empty, or is or lies in OUT (blocking)."""
    from .._batch import BatchConfigError, check_argument
    from .._batch._layout import real

    root = real(out)
    for raw in inputs:
        try:
            check_argument(raw, root)
        except BatchConfigError as exc:
            fail_usage(str(exc))


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
    cores = max(1, min(8, os.cpu_count() or 1))
    config = ServerConfig(
        **{
            **TESTING_DEFAULTS,
            "engine": engine,
            "qps": None,
            # Twice the engine processes: one photo is handed over while another is made.
            "workers": 2 * cores if engine == "local" else cores,
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

    from .._batch import BatchConfigError, prepare_out_dir

    try:
        prepare_out_dir(engine_log.parent)
    except BatchConfigError as exc:
        fail_usage(str(exc))
    with ExitStack() as stack:
        stack.enter_context(native_stderr_to(engine_log))
        # The local engine runs in worker processes (one per core, models loaded once
        # each), so its work does not hold this process's GIL, which HTTP needs. They
        # start while the server does.
        pool = _engine_processes(engine, cores)
        if pool is not None:
            stack.callback(pool.close)
        server = stack.enter_context(LocalServer(config, engine=pool))
        problem = pool.ready() if pool is not None else None
        if problem is not None:  # e.g. a script calling the CLI without a __main__ guard
            error(
                f"note: engine worker processes did not start ({type(problem).__name__}); threads"
            )
        yield server.base_url


def _engine_processes(engine: str, processes: int) -> Any:
    """A launched `ProcessEngine` for the local engine (call its ``ready``); None (the
    server's own engine, in threads) for another."""
    if engine != "local":
        return None
    from ..engine._pool import ProcessEngine

    pool = ProcessEngine(engine, processes)
    pool.launch()
    return pool


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
    from .._batch import BatchRunner, single_error
    from .._client import AsyncIDPhotoClient
    from .._errors import IDPhotoError

    started = time.monotonic()
    create_options = {
        "size": args.size,
        "format": args.format,
        "bg_color": args.bg_color,
        "return_type": args.return_type,
    }
    try:
        async with (
            _shared_limiter(args.redis_url, key, base_url, qps) as limiter,
            AsyncIDPhotoClient(
                api_key=key,
                base_url=base_url,
                qps=qps,
                limiter=limiter,
                poll_schedule=_local_schedule() if args.local else None,
                http_backend=args.http_backend,
            ) as client,
        ):
            runner = BatchRunner(
                client,
                out_dir=out,
                mode=args.mode,
                max_in_flight=args.max_in_flight,
                journal=args.journal,
                retry_failed=args.retry_failed,
                shard=args.shard,
                **create_options,
            )
            run = _BatchCommand(args, runner, client, started)
            try:
                return await run.run()
            except BaseExceptionGroup as group:
                raise single_error(group) from None
    except IDPhotoError as exc:
        error(stop_message(exc, base_url))
        return EXIT_USAGE


class _BatchCommand:
    """One ``idphoto batch`` run: the report, the display, Ctrl-C, the summary."""

    def __init__(self, args: argparse.Namespace, runner: Any, client: Any, started: float) -> None:
        self.args = args
        self.runner = runner
        self.client = client
        self.started = started
        self.interrupts = 0
        self.display: Any = None

    async def run(self) -> int:
        """Check the paths, run the batch, say what happened; the exit status."""
        report_path = await anyio.to_thread.run_sync(self._check_layout)
        report = await _open_report(report_path)
        try:
            return await self._batch(report)
        finally:
            if report is not None:
                with anyio.CancelScope(shield=True):
                    await report.aclose()

    def _check_layout(self) -> Path | None:
        """Refuse colliding paths before anything is written or sent (blocking)."""
        from .._batch import check_side_files, prepare_out_dir

        out_root = prepare_out_dir(self.runner.out_dir)  # the inputs: `_refuse_inputs_in`
        report = Path(self.args.report) if self.args.report else None
        check_side_files(
            out_root, self.args.inputs, journal=self.runner.journal_path, report=report
        )
        return report

    async def _batch(self, report: Any) -> int:
        from ._progress import make_display

        runner = self.runner
        self.display = display = make_display(
            runner.stats, lambda: self.client.requests_sent, no_progress=self.args.no_progress
        )
        stopped: BaseException | None = None
        try:
            async with anyio.create_task_group() as tg:
                with anyio.CancelScope() as work:
                    tg.start_soon(_watch_interrupts, lambda: self._on_interrupt(work))
                    tg.start_soon(_refresh, display)
                    display.start()
                    async with runner.outcomes(self.args.inputs) as outcomes:
                        tg.start_soon(self._count_inputs)
                        async for outcome in outcomes:
                            display.outcome(outcome)
                            if report is not None:
                                line = json.dumps(outcome.report_record(), ensure_ascii=False)
                                await report.write(line + "\n")
                                await report.flush()
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            from .._batch import single_error

            stopped = single_error(group)
        except Exception as exc:
            stopped = exc
        finally:
            display.stop()
        from .._errors import IDPhotoError

        if stopped is not None and not isinstance(stopped, IDPhotoError):
            raise stopped
        if stopped is not None and not runner.stats.taken:
            raise stopped  # nothing was started: one line says it all
        self._summary()
        if stopped is not None:
            error(stop_message(stopped, self.client.base_url))
            for task_id in runner.unjournaled_task_ids:
                error(
                    f"task {task_id} was made but could not be journaled: fetch it with "
                    f"idphoto wait {task_id} -o PATH (results are kept for 1 hour)"
                )
            return EXIT_USAGE
        if self.interrupts or runner.stopping:
            error(
                "interrupted: re-run the same command to resume (finished photos are "
                "skipped, created tasks are polled, not paid again)."
            )
            return EXIT_INTERRUPTED
        return EXIT_FAILED if runner.stats.failed else EXIT_OK

    def _on_interrupt(self, work: anyio.CancelScope) -> None:
        self.interrupts += 1
        if self.interrupts == 1:
            self.runner.stop()
            self.display.note(
                "Interrupted: no new photos are started; the ones in flight finish and are "
                "journaled. Ctrl-C again to stop now."
            )
        elif self.interrupts == 2:
            self.display.note(
                "Stopping now (creates on the wire get a few seconds to answer, so their "
                "tasks are journaled)."
            )
            work.cancel()
        else:
            os._exit(EXIT_INTERRUPTED)

    async def _count_inputs(self) -> None:
        """Count this run's inputs in a thread, for the bar's total and ETA."""
        from .._batch import count_inputs

        runner = self.runner
        total = await anyio.to_thread.run_sync(
            lambda: count_inputs(self.args.inputs, runner), abandon_on_cancel=True
        )
        self.display.set_total(total)

    def _summary(self) -> None:
        from ._progress import summary_line

        stats = self.runner.stats
        elapsed = time.monotonic() - self.started
        print(summary_line(stats, elapsed, self.client.requests_sent), flush=True)
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
        if stats.possible_extra_charges:
            error(
                f"note: {stats.possible_extra_charges} create(s) may each have paid a second "
                "time for a photo (sent again after a create in doubt, or made again after "
                "its result was lost); the report lists them (possible_extra_charges)."
            )


def stop_message(exc: BaseException, base_url: str | None) -> str:
    """The one line that says why the run stopped and what to do."""
    from .._batch import key_refused
    from .._errors import APIConnectionError

    if key_refused(exc):
        return (
            f"the service refused the API key ({exc}). Nothing was recorded as failed: set "
            "the right key in IDPHOTO_API_KEY and run the same command again."
        )
    if isinstance(exc, APIConnectionError):
        return (
            f"cannot reach the API at {base_url or 'the default service'}: {exc} Check "
            "--base-url (or IDPHOTO_BASE_URL) and the network, then run the same command "
            "again."
        )
    return str(exc)


async def _open_report(path: Path | None) -> Any:
    """Open the report for writing (after the layout checks); a bad path is exit 2."""
    if path is None:
        return None
    from .._batch import BatchConfigError

    try:
        await anyio.Path(path).parent.mkdir(parents=True, exist_ok=True)
        return await anyio.open_file(path, "w", encoding="utf-8")
    except OSError as exc:
        raise BatchConfigError(
            f"cannot write the report {path}: {exc.strerror or exc}; choose another --report",
            field="report",
        ) from None


async def _watch_interrupts(callback: Callable[[], None]) -> None:
    """Turn Ctrl-C (SIGINT) and SIGTERM into calls of ``callback``."""
    try:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                callback()
    except NotImplementedError:  # pragma: no cover - Windows: KeyboardInterrupt as usual
        await anyio.sleep_forever()


async def _refresh(display: Any) -> None:
    while True:
        display.refresh()
        await anyio.sleep(0.2)
