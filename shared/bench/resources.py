"""What every benchmark sets up and tears down: a database, topics, a service process."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Sequence

import asyncpg

from ..kafka import delete_topics, ensure_topics
from ..settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def throwaway_database(settings: Settings) -> AsyncIterator[str]:
    """A new database on the stack's server (its DSN), dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(settings.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = settings.database_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(settings.database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@contextlib.asynccontextmanager
async def throwaway_topics(settings: Settings, names: Sequence[str]) -> AsyncIterator[None]:
    """The topics, created now (default partition count) and deleted afterwards."""
    await ensure_topics(settings, names)
    try:
        yield
    finally:
        await delete_topics(settings, names)


@contextlib.asynccontextmanager
async def service_process(
    argv: Sequence[str], env: dict[str, str]
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python <argv>`` in its own process, terminated afterwards."""
    process = await asyncio.create_subprocess_exec(sys.executable, *argv, env=env)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), 30)
