"""The person's rights: ``GET /v1/prospects/{id}/export`` and ``DELETE /v1/prospects/{id}``.

Both need the admin token; both act on the id and every id linked to it (:mod:`.person`,
:mod:`.erasure`). Erasing twice: the second answer is 404, naming when the id was erased
(the erasure record keeps only its hash). Ids may contain ``/``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from shared.http import ApiError

from . import erasure, person
from .admin_auth import AUTH_ERRORS, Admin
from .state import IngestState, ingest_state

router = APIRouter(
    prefix="/v1/prospects", tags=["privacy"], dependencies=Admin, responses=AUTH_ERRORS
)
State = Annotated[IngestState, Depends(ingest_state)]
ProspectId = Annotated[str, Path(min_length=1, max_length=200, description="User or anonymous id")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "Nothing is held about this id (or it was erased)"}
}


class Erased(BaseModel):
    erased_at: datetime
    ids: int = Field(description="Ids erased: the one given and those linked to it")
    deleted: dict[str, int] = Field(description="Rows deleted, per table")
    pseudonymised: dict[str, int] = Field(
        description="Rows kept for the aggregates with random ids and no personal data"
    )


async def _not_found(state: IngestState, prospect_id: str) -> ApiError:
    async with state.pool.acquire() as conn:
        erased = await erasure.last_erasure(conn, prospect_id)
    when = f"; its erasure is recorded at {erased.isoformat()}" if erased else ""
    return ApiError(404, f"nothing is held about this id{when}")


@router.get(
    "/{prospect_id:path}/export",
    summary="Everything held about a person (and the ids linked to it), as JSON",
    responses={**AUTH_ERRORS, **NOT_FOUND, 409: {"description": "Too many linked ids"}},
)
async def export(prospect_id: ProspectId, state: State) -> dict[str, Any]:
    try:
        async with state.pool.acquire() as conn:
            found = await person.export(conn, prospect_id)
    except person.TooManyLinkedIds as exc:
        raise ApiError(409, str(exc)) from exc
    if found is None:
        raise await _not_found(state, prospect_id)
    return found


@router.delete(
    "/{prospect_id:path}",
    summary="Erase a person's personal data everywhere (the aggregates keep their counts)",
    responses={
        **AUTH_ERRORS,
        **NOT_FOUND,
        409: {"description": "A message to the person is being sent; retry in a few seconds"},
    },
)
async def erase(prospect_id: ProspectId, state: State) -> Erased:
    try:
        async with state.pool.acquire() as conn:
            done = await erasure.erase(conn, prospect_id)
    except (erasure.SendInProgress, person.TooManyLinkedIds) as exc:
        raise ApiError(409, str(exc), headers={"Retry-After": "5"}) from exc
    if done is None:
        raise await _not_found(state, prospect_id)
    state.ingestor.forget(done.ids)
    return Erased(
        erased_at=done.erased_at,
        ids=len(done.ids),
        deleted=done.deleted,
        pseudonymised=done.pseudonymised,
    )
