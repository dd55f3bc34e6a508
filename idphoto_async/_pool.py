"""httpcore's connection pool without its quadratic bookkeeping.

httpcore 1.0's ``AsyncConnectionPool._assign_requests_to_connections`` runs on every request
start and close. Deciding whether an idle connection is surplus, it builds a list of *every*
connection for *each* idle one (``len([c.is_idle() for c in connections])``, which is just
the number of connections), and it lists the available and idle connections once per queued
request. With 64 connections that is thousands of calls per request: measured, over half the
client's CPU in sync mode at QPS 200.

`FastConnectionPool` does the same decisions in the same order with the counts taken
once. It is installed (by swapping the class of the pool that httpx made) only on the
client's own ``httpx.AsyncClient`` and only when the pool is exactly httpcore's
``AsyncConnectionPool`` with the private attributes this relies on; otherwise nothing changes.
"""

from __future__ import annotations

from typing import Any

import httpcore

__all__ = ["FastConnectionPool", "install_fast_pool"]

_NEEDED = ("_connections", "_requests", "_max_connections", "_max_keepalive_connections")


class FastConnectionPool(httpcore.AsyncConnectionPool):
    """``httpcore.AsyncConnectionPool`` with linear bookkeeping per request."""

    def _assign_requests_to_connections(self) -> list[Any]:
        closing: list[Any] = []
        connections: list[Any] = self._connections
        keepalive = self._max_keepalive_connections
        # Clean up closed, expired and surplus idle connections (httpcore's rule: an idle
        # connection is surplus while the pool holds more connections than keep-alive allows).
        for connection in list(connections):
            if connection.is_closed():
                connections.remove(connection)
            elif connection.has_expired() or (
                connection.is_idle() and len(connections) > keepalive
            ):
                connections.remove(connection)
                closing.append(connection)

        # Assign queued requests to connections (first available, else a new one, else
        # replace an idle one), as httpcore does.
        for pool_request in [r for r in self._requests if r.is_queued()]:
            origin = pool_request.request.url.origin
            available = next(
                (c for c in connections if c.can_handle_request(origin) and c.is_available()),
                None,
            )
            if available is not None:
                pool_request.assign_to_connection(available)
            elif len(connections) < self._max_connections:
                connection = self.create_connection(origin)
                connections.append(connection)
                pool_request.assign_to_connection(connection)
            else:
                idle = next((c for c in connections if c.is_idle()), None)
                if idle is not None:
                    connections.remove(idle)
                    closing.append(idle)
                    connection = self.create_connection(origin)
                    connections.append(connection)
                    pool_request.assign_to_connection(connection)
        return closing


def install_fast_pool(http: object) -> bool:
    """Use `FastConnectionPool` in ``http``'s default transport; whether it was installed."""
    pool = getattr(getattr(http, "_transport", None), "_pool", None)
    if type(pool) is not httpcore.AsyncConnectionPool:
        return False
    if not all(hasattr(pool, name) for name in _NEEDED):
        return False
    if not hasattr(httpcore.AsyncConnectionPool, "_assign_requests_to_connections"):
        return False  # pragma: no cover - another httpcore
    pool.__class__ = FastConnectionPool
    return True
