"""The Segment-compatible event API: /v1/track, /identify, /page, /screen, /alias, /batch."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json

from shared.http import ApiError, from_validation_error
from shared.kafka.producer import KafkaUnavailable

from .body import read_body
from .segment import MAX_BATCH_BYTES, MAX_EVENT_BYTES, Alias, Batch, Call, Identify, Page, Track
from .sources import Source
from .state import IngestState, ingest_state

router = APIRouter(prefix="/v1", tags=["events"])
basic = HTTPBasic(auto_error=False, realm="trayecto", description="Write key as the user name")
RETRY_AFTER_S = 5
_TAGS = frozenset({"track", "page", "screen", "identify", "alias"})
Model = TypeVar("Model", bound=BaseModel)

State = Annotated[IngestState, Depends(ingest_state)]
Credentials = Annotated[HTTPBasicCredentials | None, Depends(basic)]

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body is not JSON"},
    401: {"description": "Unknown or revoked write key"},
    413: {"description": "Event over 32 KB or batch over 500 KB"},
    422: {"description": "Invalid fields, each named (batch: with its index)"},
    429: {"description": "Source over its rate limit; see Retry-After"},
    503: {"description": "Kafka or PostgreSQL unavailable; retry after Retry-After"},
}


class Ok(BaseModel):
    success: bool = True
    published: int
    duplicates: int


async def authenticate(state: State, credentials: Credentials) -> Source:
    unauthorized = {"WWW-Authenticate": 'Basic realm="trayecto"'}
    if credentials is None or not credentials.username:
        raise ApiError(
            401, "send the source's write key as the HTTP Basic user", headers=unauthorized
        )
    source = await state.auth.by_write_key(credentials.username)
    if source is None:
        raise ApiError(401, "unknown or revoked write key", headers=unauthorized)
    return source


Authenticated = Annotated[Source, Depends(authenticate)]


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    }


def parse(model: type[Model], raw: bytes) -> Model:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise from_validation_error(exc, _TAGS) from exc


async def accept(
    state: IngestState,
    source: Source,
    calls: list[Call],
    *,
    keep_until: datetime | None = None,
) -> Ok:
    wait = state.limiter.take(source.id, source.rate_limit, len(calls))
    if wait > 0:
        raise ApiError(
            429,
            f"source {source.name!r} is over its rate limit; retry later",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    try:
        accepted = await state.ingestor.accept(source, calls, keep_until=keep_until)
    except KafkaUnavailable as exc:
        raise ApiError(
            503,
            "events could not be stored right now; nothing was accepted, retry the request",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from exc
    return Ok(published=accepted.published, duplicates=accepted.duplicates)


async def _single(request: Request, state: IngestState, source: Source, model: type[Call]) -> Ok:
    raw = await read_body(request, MAX_EVENT_BYTES)
    return await accept(state, source, [parse(model, raw)])


def _route(model: type[BaseModel], summary: str) -> dict[str, Any]:
    return {"summary": summary, "openapi_extra": _body_schema(model), "responses": ERRORS}


@router.post("/track", **_route(Track, "Record an action (Segment track)"))
async def track(request: Request, state: State, source: Authenticated) -> Ok:
    return await _single(request, state, source, Track)


@router.post("/page", **_route(Page, "Record a page view (Segment page)"))
async def page(request: Request, state: State, source: Authenticated) -> Ok:
    return await _single(request, state, source, Page)


@router.post("/screen", **_route(Page, "Record a screen view (Segment screen)"))
async def screen(request: Request, state: State, source: Authenticated) -> Ok:
    return await _single(request, state, source, Page)


@router.post("/identify", **_route(Identify, "Link an anonymous id to a user, set traits"))
async def identify(request: Request, state: State, source: Authenticated) -> Ok:
    return await _single(request, state, source, Identify)


@router.post("/alias", **_route(Alias, "Link a previous id to a user id"))
async def alias(request: Request, state: State, source: Authenticated) -> Ok:
    return await _single(request, state, source, Alias)


@router.post(
    "/batch",
    **_route(Batch, "Several calls at once; all-or-nothing (any invalid call: none accepted)"),
)
async def batch(request: Request, state: State, source: Authenticated) -> Ok:
    raw = await read_body(request, MAX_BATCH_BYTES)
    body = parse(Batch, raw)
    calls: list[Call] = []
    too_large: list[dict[str, str]] = []
    for index, call in enumerate(body.batch):
        if body.context:
            call = call.model_copy(update={"context": {**body.context, **call.context}})
        if len(raw) > MAX_EVENT_BYTES and len(to_json(call)) > MAX_EVENT_BYTES:
            too_large.append({"field": f"batch[{index}]", "message": "event larger than 32 KB"})
        calls.append(call)
    if too_large:
        raise ApiError(413, "events larger than 32 KB in the batch", errors=too_large)
    return await accept(state, source, calls)
