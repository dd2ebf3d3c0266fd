"""Every published journey version, compiled, refreshed from PostgreSQL while running."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field

import asyncpg

from .engine import CompiledJourney, compile_journey
from .journey.store import all_definitions, live_versions, retired_versions

log = logging.getLogger(__name__)


@dataclass
class JourneyCatalog:
    """journey id → version → compiled journey, and the live version of each journey."""

    journeys: dict[str, dict[int, CompiledJourney]] = field(default_factory=dict)
    live: dict[str, int] = field(default_factory=dict)
    _exiting: set[tuple[str, int]] = field(default_factory=set)

    async def refresh(self, pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            definitions = await all_definitions(conn)
            live = await live_versions(conn)
            retired = await retired_versions(conn)
            exiting = {key for key, mode in retired.items() if mode == "exit"}
            for journey_id, version in sorted(exiting - self._exiting):
                # Its paused runs get their input now (their timer) and exit on it.
                await conn.execute(
                    "UPDATE timers SET due_at = now()"
                    " WHERE journey = $1 AND journey_version = $2 AND due_at > now()",
                    journey_id,
                    version,
                )
        journeys: dict[str, dict[int, CompiledJourney]] = {}
        for journey_id, version, journey in definitions:
            compiled = self.journeys.get(journey_id, {}).get(version)
            # Versions never change once published: compile each only once.
            compiled = compiled or compile_journey(journey, version)
            if (journey_id, version) in exiting and not compiled.exit_on_retire:
                compiled = dataclasses.replace(compiled, exit_on_retire=True)
            journeys.setdefault(journey_id, {})[version] = compiled
        self.journeys, self.live, self._exiting = journeys, live, exiting

    async def refresh_forever(self, pool: asyncpg.Pool, interval_s: float = 2.0) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh(pool)
            except (OSError, asyncpg.PostgresError):
                log.exception("refreshing journeys failed; keeping the ones loaded")
