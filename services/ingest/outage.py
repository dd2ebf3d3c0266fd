"""503 with Retry-After while PostgreSQL cannot be reached, as while Kafka cannot.

Every request reads or writes the database (write keys, messageIds, identities,
tracking clicks): while the server is down, restarting or out of disk, nothing can be
accepted, and the client is told to retry the same request, not that it failed.
"""

from __future__ import annotations

import logging

import asyncpg
from fastapi import FastAPI, Request, Response

from shared.db import unavailable
from shared.http import ApiError

from .events import RETRY_AFTER_S

log = logging.getLogger(__name__)


def install_outage_handler(app: FastAPI) -> None:
    async def database_unavailable(_: Request, exc: Exception) -> Response:
        if not unavailable(exc):
            raise exc  # a bug or bad data: the usual 500
        log.warning("database unavailable, answering 503: %r", exc)
        return ApiError(
            503,
            "the database is unavailable right now; nothing was accepted, retry the request",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ).response()

    for kind in (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        app.add_exception_handler(kind, database_unavailable)
