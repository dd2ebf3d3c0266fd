"""``/map`` (the published journeys) and ``/map/{journey}`` (one live map, or two versions
side by side with ``?compare=V1,V2``), server-rendered HTML with inline SVG, no scripts."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from services.orchestrator.journey.store import get_version, list_versions
from shared.http import ApiError
from shared.settings import Settings

from ..funnel import FunnelQueryError
from .kpis import Thresholds, map_numbers
from .layout import layout
from .model import MapLayout, MapNumbers
from .page import render_html


def _compare(value: str | None) -> list[int]:
    if value is None:
        return []
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 2 or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise ApiError(
            422,
            "invalid fields: compare",
            errors=[{"field": "compare", "message": "two version numbers, e.g. compare=1,2"}],
        )
    return [int(p) for p in parts]


def _utc(value: datetime | None) -> datetime | None:
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


def _filters(
    journey: str,
    versions: list[int],
    persona: str | None,
    since: datetime | None,
    until: datetime | None,
    compare: list[int],
) -> str:
    def field(name: str, label: str, value: object, kind: str = "text") -> str:
        shown = "" if value is None else escape(str(value), quote=True)
        return f'<label>{label} <input type="{kind}" name="{name}" value="{shown}"></label>'

    options = "".join(f"<option>{v}</option>" for v in versions)
    return (
        f'<form class="filters" method="get" action="/map/{quote(journey)}">'
        f'<label>Version <select name="version"><option value="">latest</option>{options}'
        "</select></label> "
        + field("persona", "Persona", persona)
        + " "
        + field("since", "Entered from (UTC)", since.isoformat() if since else None)
        + " "
        + field("until", "until", until.isoformat() if until else None)
        + " "
        + field("compare", "Compare versions", ",".join(map(str, compare)) or None)
        + ' <button type="submit">Show</button></form>'
    )


def map_router(settings: Settings) -> APIRouter:
    """Reads the asyncpg pool from ``request.app.state.pool``."""
    router = APIRouter(tags=["map"])
    thresholds = Thresholds.from_settings(settings)

    @router.get("/map", response_class=HTMLResponse, summary="The published journeys' maps")
    async def index(request: Request) -> HTMLResponse:
        versions = await list_versions(request.app.state.pool)
        live: dict[str, tuple[int, str, str]] = {}
        for v in versions:
            if v.retired_at is None:
                live[v.journey] = (v.version, v.title, v.persona)
        rows = "".join(
            f'<li><a href="/map/{quote(j)}">{escape(title)}</a> '
            f"<span>({escape(j)} v{version}, persona {escape(persona)})</span></li>"
            for j, (version, title, persona) in sorted(live.items())
        )
        body = (
            rows or "<li>No journey is published yet: <code>trayecto journeys publish</code>.</li>"
        )
        return HTMLResponse(
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            "<title>Trayecto — journey maps</title>"
            "<style>body{font-family:system-ui,sans-serif;margin:2rem;color:#1a1a1a}"
            "a{color:#0b4f9c}</style></head><body><h1>Journey maps</h1>"
            f"<ul>{body}</ul></body></html>"
        )

    @router.get(
        "/map/{journey}",
        response_class=HTMLResponse,
        summary="A journey's live map: stages, touchpoints, numbers, emotions, pain and truth",
        responses={
            404: {"description": "No such journey or version"},
            422: {"description": "A bad query parameter, named in errors"},
        },
    )
    async def journey_map(
        request: Request,
        journey: str,
        version: Annotated[int | None, Query(ge=1)] = None,
        persona: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        compare: Annotated[str | None, Query(description="Two versions: compare=1,2")] = None,
    ) -> HTMLResponse:
        pool = request.app.state.pool
        since, until = _utc(since), _utc(until)
        wanted: list[int | None] = [*_compare(compare)] or [version]
        maps: list[tuple[MapLayout, MapNumbers | None]] = []
        for v in wanted:
            stored = await get_version(pool, journey, v)
            if stored is None:
                field = "journey" if v is None else "version"
                raise ApiError(
                    404,
                    f"no published {field} {journey!r}" + ("" if v is None else f" v{v}"),
                    errors=[{"field": field, "message": "not published"}],
                )
            try:
                numbers = await map_numbers(
                    pool,
                    stored.definition,
                    version=stored.info.version,
                    persona=persona,
                    since=since,
                    until=until,
                    thresholds=thresholds,
                )
            except FunnelQueryError as exc:
                raise ApiError(
                    422,
                    f"invalid fields: {exc.field}",
                    errors=[{"field": exc.field, "message": str(exc)}],
                ) from exc
            maps.append((layout(stored.definition, stored.info.version, numbers), numbers))
        all_versions = [v.version for v in await list_versions(pool, journey)]
        title = f"{maps[0][0].title} — journey map"
        html = render_html(
            maps,
            title=title,
            filters_html=_filters(journey, all_versions, persona, since, until, _compare(compare)),
        )
        return HTMLResponse(html)

    return router
