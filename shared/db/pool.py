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
    )
    if pool is None:  # pragma: no cover - asyncpg returns None only without awaiting
        raise RuntimeError("asyncpg.create_pool returned no pool")
    return pool


Connection = asyncpg.Connection | PoolConnectionProxy
"""A connection, whether direct or acquired from a pool."""
