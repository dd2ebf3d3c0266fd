"""``GET /v1/funnel``: the funnel of a cohort of runs, exact, from the step history."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel

from shared.http import ApiError, field_path

from .funnel import Funnel, FunnelQueryError, UnknownJourneyError, funnel


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """The error answer of shared/http.py."""

    error: str
    message: str
    errors: list[FieldError] = []


class _Route(APIRoute):
    """Errors answered as shared/http.py does, a query parameter named as it is written
    (``since``, not ``query.since``), with or without the app's handlers installed."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError as exc:
                errors = [
                    {"field": _parameter(tuple(e["loc"])), "message": str(e["msg"])}
                    for e in exc.errors()
                ]
                fields = ", ".join(sorted({e["field"] for e in errors}))
                return ApiError(422, f"invalid fields: {fields}", errors=errors).response()
            except ApiError as exc:
                return exc.response()

        return route


def _parameter(loc: tuple[int | str, ...]) -> str:
    return field_path(loc[1:] if loc[:1] == ("query",) else loc)


def funnel_router() -> APIRouter:
    """The funnel API; reads the asyncpg pool from ``request.app.state.pool``."""
    router = APIRouter(prefix="/v1", tags=["funnel"], route_class=_Route)

    @router.get(
        "/funnel",
        summary="Per journey and persona: stage counts, conversion, time in stage, A/B variants",
        description=(
            "The cohort is the runs that entered a journey in [since, until); everything "
            "they did afterwards counts. Definitions: docs/metrics.md, section Funnel."
        ),
        response_model=list[Funnel],
        responses={
            404: {"model": ErrorBody, "description": "No such journey (or version) published"},
            422: {"model": ErrorBody, "description": "A bad query parameter, named in errors"},
        },
    )
    async def get_funnel(
        request: Request,
        journey: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
        persona: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
        version: Annotated[int | None, Query(ge=1, description="Runs on this version")] = None,
        since: Annotated[
            datetime | None, Query(description="Runs that entered at or after (ISO 8601)")
        ] = None,
        until: Annotated[
            datetime | None, Query(description="Runs that entered before (ISO 8601)")
        ] = None,
    ) -> list[Funnel]:
        pool: asyncpg.Pool = request.app.state.pool
        try:
            return await funnel(
                pool, journey=journey, persona=persona, version=version, since=since, until=until
            )
        except UnknownJourneyError as exc:
            raise ApiError(
                404, exc.message, errors=[{"field": exc.field, "message": exc.message}]
            ) from exc
        except FunnelQueryError as exc:
            raise ApiError(
                422,
                f"invalid fields: {exc.field}",
                errors=[{"field": exc.field, "message": exc.message}],
            ) from exc

    return router
