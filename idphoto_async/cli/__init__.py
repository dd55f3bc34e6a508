"""The ``idphoto`` command: ``batch``, ``create``, ``get``, ``wait`` and ``serve``.

Flags are contracts (see DESIGN.md). Exit status: 0 success, 1 some work failed, 2 usage or
configuration error (a clear message, never a traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ._common import EXIT_INTERRUPTED, EXIT_USAGE, UsageError, error

__all__ = ["build_parser", "main"]

SERVE_HELP = "run the local ID Photo API server (needs the server extra)"


def _version() -> str:
    from .. import __version__

    return __version__


def _configure_serve(sub: Any, wanted: bool) -> None:
    """Wire ``serve`` to the server's own parser, importing it only when it is asked for."""
    if wanted:
        try:
            from ..server._cli import configure_parser, serve_main
        except ImportError as exc:
            missing = exc.name or "the server"
            parser = sub.add_parser("serve", help=SERVE_HELP, add_help=False)
            parser.add_argument("rest", nargs=argparse.REMAINDER)
            parser.set_defaults(func=lambda _args: _no_server(missing))
            return
        parser = sub.add_parser("serve", help=SERVE_HELP, description=SERVE_HELP)
        configure_parser(parser)
        parser.set_defaults(func=serve_main)
    else:
        parser = sub.add_parser("serve", help=SERVE_HELP, add_help=False)
        parser.add_argument("rest", nargs=argparse.REMAINDER)


def _no_server(missing: str) -> int:
    error(
        f"idphoto serve needs the server extra ({missing} is not installed): "
        "pip install 'idphoto-async[server]' (and [local] for the local engine)"
    )
    return EXIT_USAGE


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The argument parser (``serve``'s flags are loaded only when ``argv`` asks for it)."""
    from . import _batch_cmd, _task_cmds

    parser = argparse.ArgumentParser(
        prog="idphoto",
        description="ID photos from the command line: batch many images (resumable, with a "
        "progress bar), create/get/wait single tasks (JSON for scripts), or serve the API "
        "locally. The API key comes from env IDPHOTO_API_KEY; --local needs none.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _batch_cmd.configure(sub)
    _task_cmds.configure(sub)
    _configure_serve(sub, wanted="serve" in argv[:1])
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``idphoto`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(args_list)
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help, --version, or a usage error (argparse says why)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        code = args.func(args)
    except UsageError as exc:
        error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        error("interrupted: re-run the same command to resume")
        return EXIT_INTERRUPTED
    return int(code or 0)
