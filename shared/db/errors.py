"""Telling "the database cannot be reached right now" from other database errors."""

from __future__ import annotations

import asyncpg
from asyncpg import exceptions

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable; TimeoutError (a connect timeout) is one too
    exceptions.PostgresConnectionError,  # the connection broke (class 08)
    exceptions.OperatorInterventionError,  # shutting down, starting up (class 57)
    exceptions.InsufficientResourcesError,  # disk full, out of memory, too many connections
)


def unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means the server is down, restarting, full or unreachable.

    Such a failure is worth a retry later (HTTP: 503 with Retry-After); any other
    database error is a bug or bad data. ``InterfaceError`` counts when it comes from a
    connection that was closed under the client.
    """
    if isinstance(exc, _UNAVAILABLE):
        return True
    if isinstance(exc, asyncpg.InterfaceError) and not isinstance(
        exc, exceptions.ClientConfigurationError
    ):
        return "closed" in str(exc) or "closing" in str(exc)
    return False
