"""``GET /v1/prospects/{id}``: where a prospect is in each journey, and how it got there.

A person's data: it takes the admin token, as ingest's privacy endpoints do.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials

from shared.admin_auth import AUTH_ERRORS, bearer, check_admin
from shared.http import ApiError
from shared.settings import Settings

from .engine import ProspectState

TIMELINE_LIMIT = 500


async def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    settings: Settings = request.app.state.settings
    check_admin(settings.admin_token, credentials, "orchestrator")


router = APIRouter(
    prefix="/v1", tags=["prospects"], dependencies=[Depends(require_admin)], responses=AUTH_ERRORS
)


async def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


Pool = Annotated[asyncpg.Pool, Depends(_pool)]


@router.get(
    "/prospects/{prospect_id}",
    summary="A prospect's journeys, stages, facts and timeline",
    responses={404: {"description": "No such prospect"}},
)
async def prospect(
    pool: Pool, prospect_id: Annotated[str, Path(min_length=1, max_length=200)]
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT state, updated_at FROM prospect_state WHERE prospect_id = $1", prospect_id
        )
        if row is None:
            raise ApiError(404, f"no prospect {prospect_id!r} (no event for it was processed yet)")
        history = await conn.fetch(
            "SELECT journey, journey_version, run_id, reason, from_stage, to_stage, step, variant,"
            " send_outcome, held_by, deferred_until, exit_reason, occurred_at"
            " FROM journey_history WHERE prospect_id = $1 ORDER BY occurred_at, id",
            prospect_id,
        )
        timeline = await conn.fetch(
            "SELECT kind, type, name, channel, occurred_at, detail FROM prospect_timeline"
            " WHERE prospect_id = $1 ORDER BY occurred_at DESC LIMIT $2",
            prospect_id,
            TIMELINE_LIMIT,
        )
        timers = await conn.fetch(
            "SELECT journey, step, due_at FROM timers WHERE prospect_id = $1 ORDER BY due_at",
            prospect_id,
        )
    state = ProspectState.model_validate_json(row["state"])
    return {
        "prospect_id": prospect_id,
        "updated_at": row["updated_at"].isoformat(),
        "traits": state.traits,
        "facts": state.facts,
        "journeys": [
            {
                "journey": run.journey,
                "version": run.version,
                "run_id": str(run.run_id),
                "number": run.number,
                "persona": run.persona,
                "status": run.status,
                "stage": run.stage,
                "step": run.step,
                "entered_at": run.entered_at.isoformat(),
                "stage_entered_at": _iso(run.stage_entered_at),
                "waiting_until": _iso(run.waiting.due_at) if run.waiting else None,
                "waiting_for": run.waiting.kind if run.waiting else None,
                "variants": run.variants,
                "skipped": run.skipped,
                "exit_reason": run.exit_reason,
            }
            for run in state.runs.values()
        ],
        "history": [
            {
                **dict(h),
                "run_id": str(h["run_id"]),
                "deferred_until": _iso(h["deferred_until"]),
                "occurred_at": h["occurred_at"].isoformat(),
            }
            for h in history
        ],
        "timeline": [
            {
                **dict(t),
                "occurred_at": t["occurred_at"].isoformat(),
                "detail": json.loads(t["detail"]),
            }
            for t in reversed(timeline)
        ],
        "pending_timers": [{**dict(t), "due_at": t["due_at"].isoformat()} for t in timers],
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
