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


def ingest_state(request: Request) -> IngestState:
    state: IngestState = request.app.state.ingest
    return state
