"""A second, private stack on free ports: up twice, down, up again, down — via the CLI."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import asyncpg
import pytest

from shared import stack
from shared.db import load_migrations
from shared.kafka import topic_partitions
from shared.kafka.admin import delete_topics, list_topics
from shared.settings import Settings
from shared.stack.proc import port_open
from shared.topics import ALL_TOPICS
from tests.private_stack import private_env, settings_of, stack_processes

PARTS = {"postgres", "kafka", "mail", "prometheus"}


@pytest.fixture
def private_stack() -> Iterator[tuple[Settings, dict[str, str]]]:
    env = private_env()
    settings = settings_of(env)
    yield settings, env
    _cli(env, "stack", "down")
    shutil.rmtree(settings.stack_dir, ignore_errors=True)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli.main", *args],
        env={**os.environ, **env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _healthy_parts(settings: Settings) -> dict[str, int]:
    """Each part of the stack → its pid, asserting every part is healthy."""
    parts = stack.status(settings)
    assert {part.name for part in parts} == PARTS
    unhealthy = [f"{part.name}: {part.detail}" for part in parts if not part.healthy]
    assert unhealthy == []
    return {part.name: part.pid for part in parts if part.pid is not None}


async def _row_count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS survives (id int)")
        return int(await conn.fetchval("SELECT count(*) FROM survives"))
    finally:
        await conn.close()


async def _insert_row(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO survives VALUES (1)")
    finally:
        await conn.close()


def test_stack_up_twice_down_and_up_again(private_stack: tuple[Settings, dict[str, str]]) -> None:
    settings, env = private_stack

    first = _cli(env, "stack", "up")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "kafka started" in first.stdout
    pids = _healthy_parts(settings)
    assert set(pids) == PARTS
    # What runs where: every part's address is printed.
    for port in (settings.kafka_port, settings.postgres_port, settings.prometheus_port):
        assert f"127.0.0.1:{port}" in first.stdout
    assert _cli(env, "stack", "status").returncode == 0
    assert asyncio.run(topic_partitions(settings, ALL_TOPICS)) == dict.fromkeys(ALL_TOPICS, 2)
    assert asyncio.run(_row_count(settings.database_url)) == 0
    asyncio.run(_insert_row(settings.database_url))
    processes_before = stack_processes(settings.stack_dir)

    # Idempotent: the second `up` starts nothing and restarts nothing.
    second = _cli(env, "stack", "up")
    assert second.returncode == 0, second.stdout + second.stderr
    for part in PARTS:
        assert f"{part} already running" in second.stdout
    assert _healthy_parts(settings) == pids
    assert stack_processes(settings.stack_dir) == processes_before

    down = _cli(env, "stack", "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert stack_processes(settings.stack_dir) == []
    smtp_port = int(settings.smtp_url.rpartition(":")[2])
    for port in (
        settings.kafka_port,
        settings.kafka_controller_port,
        settings.postgres_port,
        settings.prometheus_port,
        smtp_port,
    ):
        assert not port_open(port), f"port {port} still open after down"
    stopped = _cli(env, "stack", "status")
    assert stopped.returncode == 1
    assert "stopped" in stopped.stdout

    again = _cli(env, "stack", "up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "kafka started" in again.stdout
    assert set(_healthy_parts(settings)) == PARTS
    assert _cli(env, "stack", "status").returncode == 0
    # The data directory is the stack's own and outlives a down/up.
    assert asyncio.run(_row_count(settings.database_url)) == 1
    assert asyncio.run(topic_partitions(settings, ALL_TOPICS)) == dict.fromkeys(ALL_TOPICS, 2)


async def _delete_topic(settings: Settings, name: str) -> None:
    await delete_topics(settings, [name])
    async with asyncio.timeout(30):  # the broker deletes in the background
        while name in await list_topics(settings):  # noqa: ASYNC110 - polling the broker
            await asyncio.sleep(0.2)


def test_db_and_init_commands_on_a_new_database(
    private_stack: tuple[Settings, dict[str, str]],
) -> None:
    """`trayecto db migrate` twice, `db status`, and `trayecto init` recreating a topic."""
    settings, env = private_stack
    up = _cli(env, "stack", "up")
    assert up.returncode == 0, up.stdout + up.stderr
    names = [migration.name for migration in load_migrations()]

    pending = _cli(env, "db", "status")
    assert pending.returncode == 0, pending.stdout + pending.stderr
    assert pending.stdout.count("pending") == len(names)

    applied = _cli(env, "db", "migrate")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert [line.split()[1] for line in applied.stdout.splitlines()] == names
    again = _cli(env, "db", "migrate")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.strip() == "database schema is up to date"
    status = _cli(env, "db", "status")
    assert status.stdout.count("applied") == len(names)
    assert "pending" not in status.stdout

    asyncio.run(_delete_topic(settings, ALL_TOPICS[0]))
    init = _cli(env, "init", "--wait", "30")
    assert init.returncode == 0, init.stdout + init.stderr
    assert f"created topic {ALL_TOPICS[0]} (2 partitions)" in init.stdout
    assert "applied migration" not in init.stdout
    assert asyncio.run(topic_partitions(settings, ALL_TOPICS)) == dict.fromkeys(ALL_TOPICS, 2)
