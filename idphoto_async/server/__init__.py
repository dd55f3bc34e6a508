"""A local server that speaks the ID Photo API (for tests, benchmarks and offline use).

``create_app(ServerConfig(...))`` returns a Starlette app; ``python -m idphoto_async.server``
or ``idphoto serve`` runs it with uvicorn.
"""

from __future__ import annotations

from ._app import create_app
from ._config import ServerConfig

__all__ = ["ServerConfig", "create_app"]
