"""``python -m idphoto_async.cli``: the ``idphoto`` command."""

from __future__ import annotations

from . import main

raise SystemExit(main())
