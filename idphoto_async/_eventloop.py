"""Which event loop runs the current task."""

from __future__ import annotations

import asyncio

__all__ = ["on_asyncio"]


def on_asyncio() -> bool:
    """Whether the calling code runs in an asyncio event loop (else trio, or none)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
