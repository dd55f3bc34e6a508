"""``python -m idphoto_async.server``: run the local ID Photo API server."""

from __future__ import annotations

import argparse
import sys

from ._cli import configure_parser, serve_main


def main(argv: list[str] | None = None) -> int:
    """Parse flags and serve."""
    parser = argparse.ArgumentParser(
        prog="python -m idphoto_async.server",
        description="A local server that speaks the ID Photo API.",
    )
    configure_parser(parser)
    return serve_main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
