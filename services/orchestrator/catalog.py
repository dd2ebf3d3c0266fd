"""Every published journey version, compiled, refreshed from PostgreSQL while running."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import asyncpg

from .engine import CompiledJourney, compile_journey
from .journey.store import all_definitions, live_versions

log = logging.getLogger(__name__)


@dataclass
class JourneyCatalog:
    """journey id → version → compiled journey, and the live version of each journey."""

    journeys: dict[str, dict[int, CompiledJourney]] = field(default_factory=dict)
    live: dict[str, int] = field(default_factory=dict)

    async def refresh(self, pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            definitions = await all_definitions(conn)
            live = await live_versions(conn)
        journeys: dict[str, dict[int, CompiledJourney]] = {}
        for journey_id, version, journey in definitions:
            known = self.journeys.get(journey_id, {}).get(version)
            # Versions never change once published: compile each only once.
            journeys.setdefault(journey_id, {})[version] = known or compile_journey(
                journey, version
            )
        self.journeys, self.live = journeys, live

    async def refresh_forever(self, pool: asyncpg.Pool, interval_s: float = 2.0) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh(pool)
            except (OSError, asyncpg.PostgresError):
                log.exception("refreshing journeys failed; keeping the ones loaded")
