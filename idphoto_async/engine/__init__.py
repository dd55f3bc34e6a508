"""ID-photo engines: ``local`` (face, framing, segmentation) and ``basic`` (Pillow only)."""

from __future__ import annotations

import importlib.util

from ._base import Engine, EngineError, EngineRequest, EngineResult, OutputFormat

__all__ = [
    "Engine",
    "EngineError",
    "EngineRequest",
    "EngineResult",
    "OutputFormat",
    "default_engine_name",
    "get_engine",
    "local_engine_available",
]


_LOCAL_MODULES = ("ai_edge_litert", "numpy")
"""What the ``local`` extra installs: the LiteRT runtime and numpy."""


def local_engine_available() -> bool:
    """True when the ``local`` extra is installed (its models ship inside this package)."""
    return all(importlib.util.find_spec(module) is not None for module in _LOCAL_MODULES)


def default_engine_name() -> str:
    """``local`` when its extra is installed, else ``basic``."""
    return "local" if local_engine_available() else "basic"


def get_engine(name: str | None = None) -> Engine:
    """The engine called ``name`` (``local`` or ``basic``); None picks the default."""
    name = name or default_engine_name()
    if name == "basic":
        from ._basic import BasicEngine

        return BasicEngine()
    if name == "local":
        if not local_engine_available():
            raise RuntimeError(
                "The local engine needs its extra: pip install 'idphoto-async[local]' "
                "(or use --engine basic, which does not detect faces)."
            )
        from ._local import LocalEngine

        return LocalEngine()
    raise ValueError(f"Unknown engine {name!r}: choose 'local' or 'basic'.")
