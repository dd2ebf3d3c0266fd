"""asyncpg pool factory."""

from __future__ import annotations

import logging

import asyncpg
from asyncpg import exceptions
from asyncpg.pool import PoolAcquireContext, PoolConnectionProxy

from ..settings import Settings

log = logging.getLogger(__name__)
_RESET_FAILURES = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    exceptions.InternalClientError,
)


def _closed(connection: PoolConnectionProxy) -> bool:
    try:
        return connection.is_closed()
    except asyncpg.InterfaceError:  # the pool took it back already, as it does a dead one
        return True


def _lost(cause: BaseException) -> exceptions.ConnectionDoesNotExistError:
    return exceptions.ConnectionDoesNotExistError(f"the connection to PostgreSQL was lost: {cause}")


class _Acquired(PoolAcquireContext):
    """``async with pool.acquire()`` that reports a connection lost inside it as such.

    When the server goes away (a restart, a crash), asyncpg may report the dead
    connection as an ``InterfaceError`` ("the underlying connection is closed", raised
    by a transaction's exit in place of the original error) or an
    ``InternalClientError`` (a query sent in the instant between the server's
    termination message and the socket closing). Both are re-raised as
    ``ConnectionDoesNotExistError``, a ``PostgresError`` like every other outage
    symptom, so that the services' retry loops handle them instead of dying.

    A connection that dies after the block's work was done (its statements returned,
    its transaction committed) only fails the pool's reset on release: the pool drops
    it, and the block is not reported as failed, since its work stands.
    """

    __slots__ = ()

    async def __aexit__(self, *exc: object) -> None:
        error = exc[1] if len(exc) > 1 else None
        connection = self.connection
        broken = isinstance(error, exceptions.InternalClientError) or (
            isinstance(error, asyncpg.InterfaceError)
            and connection is not None
            and _closed(connection)
        )
        try:
            await super().__aexit__(*exc)
        except _RESET_FAILURES as failed:
            # Resetting the connection for the pool failed: it died, and the pool dropped
            # it. The block's own outcome is what counts.
            if error is None:
                log.warning("a connection died after its work was done; replaced: %r", failed)
                return
        if broken:
            assert isinstance(error, BaseException)
            raise _lost(error) from error


class _Pool(asyncpg.Pool):
    __slots__ = ()

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext:
        # The pool's own fetch/execute helpers acquire through here too.
        return _Acquired(self, timeout)


async def create_pool(settings: Settings, *, dsn: str | None = None) -> asyncpg.Pool:
    """A connection pool on ``TRAYECTO_DATABASE_URL`` with timestamps in UTC.

    A connection that died with the server surfaces as a ``PostgresError`` (see
    ``_Acquired``); idle connections that died are replaced on the next acquire.
    """
    pool = _Pool(
        dsn or settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        server_settings={"timezone": "UTC", "application_name": "trayecto"},
        reset=_no_session_state,
        # The rest as asyncpg.create_pool defaults them.
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
    )
    return await pool


async def _no_session_state(conn: asyncpg.Connection) -> None:
    """What a released connection needs beyond asyncpg's own clean-up: nothing.

    asyncpg rolls back a transaction left open either way; its default reset adds a round
    trip (``RESET ALL``, ``UNLISTEN *``, ``CLOSE ALL``, advisory unlock) on every release.
    Trayecto keeps no session state on pooled connections: no ``SET``, ``LISTEN``,
    cursors or session-level advisory locks (only ``pg_advisory_xact_lock``).
    """


Connection = asyncpg.Connection | PoolConnectionProxy
"""A connection, whether direct or acquired from a pool."""
