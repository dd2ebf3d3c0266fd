"""The admin API: sources (write keys) and journeys, as ``trayecto sources|journeys`` do.

Every handler calls the function the CLI command calls (``services.ingest.sources``,
the journey loader and store), so both behave the same. All need the admin token
(:mod:`.admin_auth`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.orchestrator.journey import JourneyError, load_journey
from services.orchestrator.journey.store import list_versions, publish_all
from shared.http import ApiError

from .admin_auth import AUTH_ERRORS, Admin
from .body import read_body
from .events import parse
from .sources import (
    InvalidSourceName,
    SourceExists,
    UnknownSource,
    add_source,
    list_sources,
    revoke_source,
)
from .state import IngestState, ingest_state

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=Admin, responses=AUTH_ERRORS)
State = Annotated[IngestState, Depends(ingest_state)]
MAX_SOURCE_BODY_BYTES = 4 * 1024
MAX_JOURNEY_BYTES = 1024 * 1024
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    400: {"description": "The body is not JSON (or not UTF-8 text)"},
    413: {"description": "Body too large"},
    415: {"description": "Unsupported Content-Encoding"},
}


class NewSourceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="a-z, 0-9, '.', '_', '-'; starts with a letter or digit")
    rate_limit: float | None = Field(
        None, gt=0, description="Events/s (default TRAYECTO_INGEST_RATE_LIMIT)"
    )
    google_key: bool = Field(False, description="Also create a Google Ads webhook key")


class NewSource(BaseModel):
    name: str
    write_key: str = Field(description="The HTTP Basic user of the event API; shown only once")
    google_key: str | None = Field(description="The Google Ads webhook key; shown only once")


class SourceOut(BaseModel):
    name: str
    key_hint: str = Field(description="The write key's first characters")
    google_key: bool
    rate_limit: float | None
    created_at: datetime
    revoked_at: datetime | None


class PublishedOut(BaseModel):
    journey: str
    version: int
    created: bool = Field(description="false: identical to the latest version, nothing new")
    retired: bool = Field(description="Unchanged, and that version is retired")


class VersionOut(BaseModel):
    journey: str
    version: int
    persona: str
    title: str
    checksum: str
    published_at: datetime
    retired_at: datetime | None
    retire_mode: str | None
    live: bool = Field(description="The version new prospects enter")


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    schema = {"schema": model.model_json_schema()}
    return {"requestBody": {"required": True, "content": {"application/json": schema}}}


@router.post(
    "/sources",
    status_code=201,
    summary="Create a source; its write key is in this answer only (only its hash is kept)",
    openapi_extra=_json_body(NewSourceRequest),
    responses={
        **BODY_ERRORS,
        409: {"description": "A source of that name exists"},
        422: {"description": "Invalid fields (the name's pattern)"},
    },
)
async def create_source(request: Request, state: State) -> NewSource:
    wanted = parse(NewSourceRequest, await read_body(request, MAX_SOURCE_BODY_BYTES))
    try:
        created = await add_source(
            state.pool, wanted.name, rate_limit=wanted.rate_limit, google_key=wanted.google_key
        )
    except InvalidSourceName as exc:
        raise ApiError(422, str(exc), errors=[{"field": "name", "message": str(exc)}]) from exc
    except SourceExists as exc:
        raise ApiError(409, str(exc)) from exc
    return NewSource(name=created.name, write_key=created.write_key, google_key=created.google_key)


@router.get("/sources", summary="Every source: key hint and status, never a key")
async def sources(state: State) -> list[SourceOut]:
    return [
        SourceOut(
            name=s.name,
            key_hint=s.key_hint,
            google_key=s.google_key,
            rate_limit=s.rate_limit,
            created_at=s.created_at,
            revoked_at=s.revoked_at,
        )
        for s in await list_sources(state.pool)
    ]


@router.delete(
    "/sources/{name}",
    status_code=204,
    response_class=Response,
    summary="Revoke a source's keys (every ingest replica refuses them within 5 s)",
    responses={**AUTH_ERRORS, 404: {"description": "No active source of that name"}},
)
async def revoke(name: str, state: State) -> Response:
    try:
        await revoke_source(state.pool, name)
    except UnknownSource as exc:
        raise ApiError(404, str(exc)) from exc
    return Response(status_code=204)


@router.post(
    "/journeys",
    status_code=201,
    summary="Publish a journey file (YAML or JSON) as `trayecto journeys publish` does",
    description=(
        "201 with the new version; 200 when identical to the latest version (nothing new). "
        "Prospects already travelling stay on the version they started."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                media: {"schema": {"type": "string"}}
                for media in ("application/yaml", "application/json")
            },
        }
    },
    responses={
        **BODY_ERRORS,
        200: {"description": "Unchanged: identical to the latest version", "model": PublishedOut},
        422: {"description": "Every problem of the file, each with its path (and line)"},
    },
)
async def publish_journey(request: Request, state: State) -> JSONResponse:
    raw = await read_body(request, MAX_JOURNEY_BYTES)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "the journey file must be UTF-8 text") from exc
    try:
        journey = load_journey(text, "request body")
    except JourneyError as exc:
        raise ApiError(
            422, f"the journey has {len(exc.problems)} problem(s): nothing published",
            errors=[
                {"field": p.path, "message": p.message, **({"line": p.line} if p.line else {})}
                for p in exc.problems
            ],
        ) from exc  # fmt: skip
    [published] = await publish_all(state.pool, [(Path(f"{journey.journey}.yaml"), journey, text)])
    answer = PublishedOut(
        journey=published.journey,
        version=published.version,
        created=published.created,
        retired=published.retired,
    )
    return JSONResponse(answer.model_dump(), status_code=201 if published.created else 200)


@router.get("/journeys", summary="Every published journey version, and which one is live")
async def journeys(state: State) -> list[VersionOut]:
    versions = await list_versions(state.pool)
    live: dict[str, int] = {}
    for info in versions:
        if not info.retired:
            live[info.journey] = max(info.version, live.get(info.journey, 0))
    return [
        VersionOut(
            journey=v.journey,
            version=v.version,
            persona=v.persona,
            title=v.title,
            checksum=v.checksum,
            published_at=v.published_at,
            retired_at=v.retired_at,
            retire_mode=v.retire_mode,
            live=live.get(v.journey) == v.version,
        )
        for v in versions
    ]
