"""What every ``idphoto`` command shares: client flags, option flags, messages, exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Final, NoReturn

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130


class UsageError(Exception):
    """A bad flag or configuration: exit 2 with the message, no traceback."""


_CONTROL: Final = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))},
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}


def printable(text: str) -> str:
    """``text`` with control characters escaped (a file name must not drive the terminal)."""
    return text.translate(_CONTROL)


def error(message: str) -> None:
    """Print ``idphoto: message`` on stderr (control characters escaped)."""
    print(f"idphoto: {printable(message)}", file=sys.stderr, flush=True)


def fail_usage(message: str) -> NoReturn:
    raise UsageError(message)


def print_json(data: Any) -> None:
    """One JSON document on stdout, for scripts."""
    print(json.dumps(data, ensure_ascii=False), flush=True)


def add_option_flags(parser: argparse.ArgumentParser) -> None:
    """--size, --format, --bg-color, --return-type: the create options."""
    group = parser.add_argument_group("photo options")
    group.add_argument(
        "--size",
        metavar="WxH",
        help="ID photo size in pixels, e.g. 295x413 "
        "(each side 100..2000); default: the source's size",
    )
    group.add_argument(
        "--format",
        choices=["png", "jpg"],
        help="png (transparent background, default) or jpg (white or --bg-color)",
    )
    group.add_argument(
        "--bg-color",
        metavar="RRGGBB",
        help="JPG background colour, six hex digits, e.g. FFFFFF (needs --format jpg)",
    )
    group.add_argument(
        "--return-type",
        choices=["url", "base64"],
        help="how the service returns the image (default url)",
    )


def add_client_flags(parser: argparse.ArgumentParser, *, qps_default: str = "2") -> Any:
    """--base-url, --qps, --http-backend: where requests go, how fast and through which pool;
    returns the "service" group."""
    group = parser.add_argument_group("service")
    group.add_argument(
        "--base-url",
        metavar="URL",
        help="API origin (default: env IDPHOTO_BASE_URL, else the vendor's service)",
    )
    group.add_argument(
        "--qps",
        type=float,
        metavar="Q",
        help=f"requests per second allowed by your key (default {qps_default})",
    )
    group.add_argument(
        "--http-backend",
        choices=("auto", "httpx", "aiohttp"),
        default="auto",
        help="connection pool: aiohttp (a third of the CPU per request; needs "
        "idphoto-async[aiohttp]) or httpx; auto (default): aiohttp when installed",
    )
    return group


def make_options(args: argparse.Namespace) -> Any:
    """The validated create options of ``args`` (exit 2 with a clear message if bad)."""
    from .._errors import ValidationError
    from .._options import make_options as _make

    try:
        return _make(
            size=args.size, format=args.format, bg_color=args.bg_color, return_type=args.return_type
        )
    except ValidationError as exc:
        fail_usage(str(exc))


def api_key_or_exit(base_url: str | None) -> str | None:
    """The API key from env; a usage error if the vendor's service would need one."""
    from .._constants import DEFAULT_BASE_URL, ENV_API_KEY, ENV_BASE_URL

    key = os.environ.get(ENV_API_KEY) or None
    target = (base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL).rstrip("/")
    if key is None and target == DEFAULT_BASE_URL:
        fail_usage(
            f"no API key: set it in the environment ({ENV_API_KEY}=your-key idphoto ...; get "
            "one at https://picwish.com/my-account?subRoute=api-key), or add --local to run "
            "on this machine with the local engine (no key, no network, no credits)."
        )
    return key


def check_base_url(base_url: str | None) -> None:
    """Exit 2 unless ``base_url`` (flag or env) is an http(s) URL with a host."""
    from urllib.parse import urlsplit

    from .._constants import ENV_BASE_URL

    value, origin = (
        (base_url, "--base-url") if base_url else (os.environ.get(ENV_BASE_URL), ENV_BASE_URL)
    )
    if not value:
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        fail_usage(
            f"{origin} {value!r} is not an http(s) URL: write it with its scheme, e.g. "
            f"http://{value.split('://')[-1]}"
        )


def check_http_backend(backend: str) -> None:
    """Exit 2 if ``--http-backend aiohttp`` is asked for without aiohttp installed."""
    from .._aiohttp import INSTALL_HINT, aiohttp_available

    if backend == "aiohttp" and not aiohttp_available():
        fail_usage(f"--http-backend aiohttp needs aiohttp: {INSTALL_HINT}")


def check_qps(qps: float | None) -> None:
    if qps is not None and not (0 < qps <= 10_000):
        fail_usage(f"--qps must be a positive number of requests per second, got {qps:g}")
