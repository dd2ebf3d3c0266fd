"""Sources: who may send events, identified by a write key stored only as its hash."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.db import Connection

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
AUTH_CACHE_SECONDS = 5.0
"""A revoked key stops working within this many seconds on every ingest replica."""


class SourceError(ValueError):
    """A source operation that cannot be done (bad name, exists, unknown)."""


class InvalidSourceName(SourceError):
    """The name does not match :data:`NAME_PATTERN`."""


class SourceExists(SourceError):
    """A source of that name exists already (revoked ones included)."""


class UnknownSource(SourceError):
    """No active source of that name."""


@dataclass(frozen=True, slots=True)
class Source:
    id: int
    name: str
    rate_limit: float | None


@dataclass(frozen=True, slots=True)
class SourceInfo:
    name: str
    key_hint: str
    google_key: bool
    rate_limit: float | None
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewSource:
    name: str
    write_key: str
    google_key: str | None


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


async def add_source(
    conn: Connection | asyncpg.Pool,
    name: str,
    *,
    rate_limit: float | None = None,
    google_key: bool = False,
) -> NewSource:
    """Create a source; its keys are returned here once and never stored in clear."""
    if not NAME_PATTERN.match(name):
        raise InvalidSourceName(
            f"source name {name!r} must be 1-100 characters of a-z, 0-9, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    write_key = "tk_" + secrets.token_urlsafe(32)
    google = "gk_" + secrets.token_urlsafe(24) if google_key else None
    try:
        await conn.execute(
            "INSERT INTO sources (name, key_hash, key_hint, google_key_hash, rate_limit)"
            " VALUES ($1, $2, $3, $4, $5)",
            name,
            key_hash(write_key),
            write_key[:7],
            key_hash(google) if google else None,
            rate_limit,
        )
    except asyncpg.UniqueViolationError as exc:
        raise SourceExists(f"a source named {name!r} exists already") from exc
    return NewSource(name, write_key, google)


async def builtin_source(conn: Connection | asyncpg.Pool, name: str) -> Source:
    """The source ingest itself publishes as (e.g. ``tracking``), created on first use.

    Its write key is random and thrown away: nobody can send events as this source.
    Safe when replicas race: the loser's insert does nothing and both read the winner.
    """
    write_key = "tk_" + secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO sources (name, key_hash, key_hint) VALUES ($1, $2, $3)"
        " ON CONFLICT (name) DO NOTHING",
        name,
        key_hash(write_key),
        write_key[:3],
    )
    row = await conn.fetchrow("SELECT id, name, rate_limit FROM sources WHERE name = $1", name)
    assert row is not None  # inserted above, and sources are never deleted
    return Source(row["id"], row["name"], row["rate_limit"])


async def revoke_source(conn: Connection | asyncpg.Pool, name: str) -> None:
    status = await conn.execute(
        "UPDATE sources SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL", name
    )
    if status == "UPDATE 0":
        raise UnknownSource(f"no active source named {name!r} (see `trayecto sources list`)")


async def list_sources(conn: Connection | asyncpg.Pool) -> list[SourceInfo]:
    rows = await conn.fetch(
        "SELECT name, key_hint, google_key_hash IS NOT NULL AS google, rate_limit,"
        " created_at, revoked_at FROM sources ORDER BY name"
    )
    return [
        SourceInfo(
            r["name"], r["key_hint"], r["google"], r["rate_limit"], r["created_at"], r["revoked_at"]
        )
        for r in rows
    ]


class SourceAuth:
    """Resolves write keys (and Google Ads webhook keys) to active sources, cached briefly."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._cache: dict[bytes, tuple[float, Source | None]] = {}

    async def by_write_key(self, key: str) -> Source | None:
        digest = key_hash(key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        row = await self._pool.fetchrow(
            "SELECT id, name, rate_limit FROM sources WHERE key_hash = $1 AND revoked_at IS NULL",
            digest,
        )
        source = Source(row["id"], row["name"], row["rate_limit"]) if row else None
        if len(self._cache) > 10_000:  # bounded, whatever keys clients try
            self._cache.clear()
        self._cache[digest] = (now + AUTH_CACHE_SECONDS, source)
        return source

    async def by_google_key(self, name: str, key: str) -> Source | None:
        row = await self._pool.fetchrow(
            "SELECT id, name, rate_limit, google_key_hash FROM sources"
            " WHERE name = $1 AND revoked_at IS NULL",
            name,
        )
        if row is None or row["google_key_hash"] is None:
            return None
        if not hmac.compare_digest(row["google_key_hash"], key_hash(key)):
            return None
        return Source(row["id"], row["name"], row["rate_limit"])
