"""What the ingest handlers share, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from fastapi import Request

from shared.ratelimit import RateLimiter
from shared.settings import Settings

from .pipeline import Ingestor
from .sources import SourceAuth


@dataclass(frozen=True, slots=True)
class IngestState:
    settings: Settings
    pool: asyncpg.Pool
    auth: SourceAuth
    ingestor: Ingestor
    limiter: RateLimiter


async def ingest_state(request: Request) -> IngestState:
    # async, as every dependency here: FastAPI runs a plain function dependency in a
    # worker thread, a thread hand-off per request that cost a third of a `track` call.
    state: IngestState = request.app.state.ingest
    return state
