"""Migrations against a real PostgreSQL: twice, concurrently, and edited."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from shared.db import Migration, MigrationError, applied_migrations, load_migrations, migrate


async def _schema(dsn: str) -> list[tuple[str, str, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """
            SELECT table_name, column_name, data_type FROM information_schema.columns
            WHERE table_schema = 'public' ORDER BY table_name, column_name
            """
        )
        return [(r["table_name"], r["column_name"], r["data_type"]) for r in rows]
    finally:
        await conn.close()


async def _definitions(dsn: str) -> list[str]:
    """Every index, constraint, function and trigger of the schema, as PostgreSQL prints it."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """
            SELECT indexdef AS d FROM pg_indexes WHERE schemaname = 'public'
            UNION ALL
            SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
            FROM pg_constraint WHERE connamespace = 'public'::regnamespace
            UNION ALL
            SELECT pg_get_functiondef(oid) FROM pg_proc WHERE pronamespace = 'public'::regnamespace
            UNION ALL
            SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal
            ORDER BY 1
            """
        )
        return [r["d"] for r in rows]
    finally:
        await conn.close()


async def test_migrations_apply_once_and_twice_changes_nothing(fresh_database: str) -> None:
    names = [m.name for m in load_migrations()]
    assert names, "no migration files found"
    assert await migrate(fresh_database) == names
    schema = await _schema(fresh_database)
    definitions = await _definitions(fresh_database)
    assert ("outbox", "published_at", "timestamp with time zone") in schema
    assert any("CREATE UNIQUE INDEX" in d for d in definitions)
    assert any("CHECK" in d for d in definitions)
    assert await migrate(fresh_database) == []
    assert await _schema(fresh_database) == schema
    assert await _definitions(fresh_database) == definitions
    assert await applied_migrations(fresh_database) == names


async def test_concurrent_runners_apply_each_migration_once(fresh_database: str) -> None:
    results = await asyncio.gather(*(migrate(fresh_database) for _ in range(4)))
    names = [m.name for m in load_migrations()]
    assert sorted(results, key=len) == [[], [], [], names]
    assert await applied_migrations(fresh_database) == names


async def test_an_edited_migration_is_refused(fresh_database: str) -> None:
    original = load_migrations()
    await migrate(fresh_database)
    edited = [Migration(original[0].version, original[0].name, original[0].sql + "\n-- x")]
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(fresh_database, edited)


async def test_a_failing_migration_is_not_half_applied(fresh_database: str) -> None:
    broken = [
        Migration("0001", "0001_ok.sql", "CREATE TABLE a (id int);"),
        Migration("0002", "0002_bad.sql", "CREATE TABLE b (id int); SELECT * FROM missing;"),
    ]
    with pytest.raises(MigrationError, match=r"0002_bad\.sql failed"):
        await migrate(fresh_database, broken)
    assert await applied_migrations(fresh_database) == ["0001_ok.sql"]
    tables = {table for table, _, _ in await _schema(fresh_database)}
    assert "a" in tables
    assert "b" not in tables
