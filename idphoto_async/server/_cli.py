"""Flags of the local server (``idphoto serve``, ``python -m idphoto_async.server``)."""

from __future__ import annotations

import argparse
import logging

from .._gc_settings import SERVER_THRESHOLDS, collector_settings
from ._config import DEFAULT_FAIL_STATES, ServerConfig

__all__ = ["config_from_args", "configure_parser", "serve_main"]

_FAULTS = (
    ("--error-rate", "500 on create before the task is made (nothing charged)"),
    (
        "--create-error-after-rate",
        "500 on create after the task is made (it still runs and is charged)",
    ),
    ("--query-error-rate", "500 on query"),
    ("--drop-rate", "create/query: send the headers, then close the connection mid-body"),
    ("--slow-rate", "create/query: answer --slow-seconds late"),
    ("--spurious-429-rate", "create/query: answer 429 although under the QPS limit"),
    ("--fail-rate", "tasks end in a random state of --fail-states instead of succeeding"),
    ("--truncate-rate", "result downloads cut short (Content-Length stays the full size)"),
)


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a rate between 0 and 1")
    return value


def _states(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list") from None


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the server's flags to ``parser``."""
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        default=[],
        metavar="KEY",
        help="accepted X-API-KEY (repeatable; a task then belongs to its key; none: any key "
        "is accepted, a request without one is 401)",
    )
    parser.add_argument(
        "--qps",
        type=float,
        default=2.0,
        help="requests per second per key, 429 above it; 0 = unlimited (default: %(default)s)",
    )
    parser.add_argument(
        "--rate-scope",
        choices=("all", "create"),
        default="all",
        help="requests the QPS limit counts: create+query or create only (default: %(default)s)",
    )
    parser.add_argument(
        "--count-refused",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="refused requests count in the 1 s window too (default: on)",
    )
    parser.add_argument(
        "--retry-after",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="send Retry-After with 429 answers (default: on)",
    )
    parser.add_argument(
        "--processing-time",
        default="lognormal:3,0.6",
        metavar="SPEC",
        help="simulated seconds per task: N, fixed:N, uniform:LO,HI, exponential:MEAN or "
        "lognormal:MEDIAN,SIGMA (default: %(default)s)",
    )
    parser.add_argument(
        "--result-ttl",
        type=float,
        default=3600.0,
        help="seconds results and tasks are kept (default: %(default)s)",
    )
    parser.add_argument(
        "--max-processing",
        type=float,
        default=180.0,
        help="tasks still processing after this many seconds fail with -8 (default: %(default)s)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="engine threads (default: %(default)s)"
    )
    parser.add_argument(
        "--engine",
        choices=("local", "basic"),
        default=None,
        help="local (face detection, segmentation) or basic (crop/resize only, no face "
        "detection); default: local when installed",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for latency and faults")
    faults = parser.add_argument_group("fault injection (rates from 0 to 1, default 0)")
    for flag, help_text in _FAULTS:
        faults.add_argument(flag, type=_rate, default=0.0, metavar="RATE", help=help_text)
    faults.add_argument(
        "--slow-seconds",
        type=float,
        default=2.0,
        help="delay of --slow-rate answers (default: %(default)s)",
    )
    faults.add_argument(
        "--fail-states",
        type=_states,
        default=DEFAULT_FAIL_STATES,
        metavar="S1,S2",
        help="task states --fail-rate picks from (default: -1,-2,-8,-13)",
    )


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The `ServerConfig` the parsed flags describe."""
    return ServerConfig(
        api_keys=args.api_keys,
        qps=args.qps,
        rate_scope=args.rate_scope,
        count_refused=args.count_refused,
        send_retry_after=args.retry_after,
        processing_time=args.processing_time,
        result_ttl=args.result_ttl,
        max_processing=args.max_processing,
        workers=args.workers,
        engine=args.engine,
        seed=args.seed,
        error_rate=args.error_rate,
        create_error_after_rate=args.create_error_after_rate,
        query_error_rate=args.query_error_rate,
        drop_rate=args.drop_rate,
        slow_rate=args.slow_rate,
        slow_seconds=args.slow_seconds,
        spurious_429_rate=args.spurious_429_rate,
        fail_rate=args.fail_rate,
        fail_states=args.fail_states,
        truncate_rate=args.truncate_rate,
    )


def serve_main(args: argparse.Namespace) -> int:
    """Run the server with uvicorn until interrupted; returns the exit status."""
    try:
        config = config_from_args(args)
    except (ValueError, TypeError) as exc:
        print(f"idphoto serve: {exc}")
        return 2
    import uvicorn

    from ._app import create_app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    try:
        app = create_app(config)
    except (RuntimeError, ValueError) as exc:
        print(f"idphoto serve: {exc}")
        return 2
    # Short collector pauses: with hundreds of connections open, a full collection took
    # 40-70 ms, a stall that bunched the arrivals behind it into one window and earned a
    # client within its QPS a 429 (a gateway would not stall).
    with collector_settings(SERVER_THRESHOLDS):
        uvicorn.run(app, host=args.host, port=args.port, timeout_graceful_shutdown=2)
    return 0
