"""asyncpg pool factory."""

from __future__ import annotations

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ..settings import Settings


async def create_pool(settings: Settings, *, dsn: str | None = None) -> asyncpg.Pool:
    """A connection pool on ``TRAYECTO_DATABASE_URL`` with timestamps in UTC."""
    pool = await asyncpg.create_pool(
        dsn or settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        server_settings={"timezone": "UTC", "application_name": "trayecto"},
        reset=_no_session_state,
    )
    if pool is None:  # pragma: no cover - asyncpg returns None only without awaiting
        raise RuntimeError("asyncpg.create_pool returned no pool")
    return pool


async def _no_session_state(conn: asyncpg.Connection) -> None:
    """What a released connection needs beyond asyncpg's own clean-up: nothing.

    asyncpg rolls back a transaction left open either way; its default reset adds a round
    trip (``RESET ALL``, ``UNLISTEN *``, ``CLOSE ALL``, advisory unlock) on every release.
    Trayecto keeps no session state on pooled connections: no ``SET``, ``LISTEN``,
    cursors or session-level advisory locks (only ``pg_advisory_xact_lock``).
    """


Connection = asyncpg.Connection | PoolConnectionProxy
"""A connection, whether direct or acquired from a pool."""
