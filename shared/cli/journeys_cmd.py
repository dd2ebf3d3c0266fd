"""``trayecto journeys schema|validate|publish|list|show|retire|render``: journey files."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import asyncpg
import typer
from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .common import console, err_console, friendly_errors, load_settings

if TYPE_CHECKING:
    from services.orchestrator.journey.loader import Problem
    from services.orchestrator.journey.model import Annotations, Condition, Journey, Step
    from services.orchestrator.journey.store import StoredVersion, VersionInfo

# The orchestrator package is imported only by the commands that need it: it pulls in
# its web application, and `schema`/`validate` should start fast.

app = typer.Typer(
    help="Journey definitions (YAML): check, publish as versions, inspect, retire.",
    no_args_is_help=True,
)
T = TypeVar("T")
JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
_DURATION_PATTERN: Final = r"^\s*\d+(\.\d+)?\s*(s|m|h|d|w)\s*$"
_N = r"\d+(\.\d+)?"
_ISO_DURATION_PATTERN: Final = (
    rf"^P(?!$)({_N}Y)?({_N}M)?({_N}W)?({_N}D)?(T(?=\d)({_N}H)?({_N}M)?({_N}S)?)?$"
)


class RetireMode(StrEnum):
    FINISH = "finish"
    EXIT = "exit"


# ---------------------------------------------------------------- schema


def journey_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a journey file."""
    from services.orchestrator.journey.model import Journey

    generated = Journey.model_json_schema(by_alias=True)
    _durations(generated)
    generated.pop("title", None)
    generated.pop("description", None)
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": "Trayecto journey",
        "description": "One journey definition file (YAML); see docs/journeys.md.",
        **generated,
    }


def _durations(node: Any) -> None:
    """Durations are written ``90s``, ``15m``, ``2h``, ``3d``, ``1w`` (or ISO 8601, or
    seconds); the generated schema only knows ISO 8601 strings."""
    children: list[tuple[Any, Any]] = []
    if isinstance(node, dict):
        children = list(node.items())
    elif isinstance(node, list):
        children = list(enumerate(node))
    for key, value in children:
        if isinstance(value, dict) and value.get("format") == "duration":
            node[key] = {
                "anyOf": [
                    {"type": "string", "pattern": _DURATION_PATTERN},
                    {"type": "string", "pattern": _ISO_DURATION_PATTERN},
                    {"type": "number", "exclusiveMinimum": 0},
                ],
                "description": "A duration: 90s, 15m, 2h, 3d, 1w, ISO 8601 or seconds",
            }
        else:
            _durations(value)


@app.command("schema")
def schema(
    out: Path | None = typer.Option(None, help="Write to this file instead of stdout"),  # noqa: B008
) -> None:
    """The JSON Schema of journey files (for editors and CI checks)."""
    text = json.dumps(journey_schema(), indent=2, ensure_ascii=False) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        err_console.print(f"wrote {out}")


# ---------------------------------------------------------------- validate


def _expand(paths: Sequence[Path]) -> list[Path]:
    from services.orchestrator.journey.store import journey_files

    files = journey_files(paths)
    empty = [p for p in paths if p.is_dir() and not any(f.parent == p for f in files)]
    for folder in empty:
        err_console.print(f"[yellow]{escape(str(folder))} has no *.yaml journey files[/]")
    if not files:
        err_console.print("[red]Error:[/] no journey files to read")
        raise typer.Exit(1)
    return files


def _problem_lines(source: str, problems: Sequence[Problem]) -> list[str]:
    lines = []
    for problem in problems:
        where = f"{source}:{problem.line}" if problem.line else source
        message = " ".join(problem.message.split())
        lines.append(f"{where}: {problem.path}: {message}")
    return lines


def _check(files: Sequence[Path]) -> list[tuple[Path, Journey, str]]:
    """Every file loaded, or every problem printed and exit 1."""
    from services.orchestrator.journey.store import PublishError, validate_files

    try:
        return validate_files(files)
    except PublishError as exc:
        count = 0
        for error in exc.errors:
            for line in _problem_lines(error.source, error.problems):
                typer.echo(line)
            count += len(error.problems)
        broken = {e.source for e in exc.errors}
        for path in files:
            if str(path) not in broken:
                typer.echo(f"{path}: ok")
        err_console.print(f"[red]{count} problem(s) in {len(broken)} file(s)[/]")
        raise typer.Exit(1) from exc


@app.command("validate")
def validate(
    files: list[Path] = typer.Argument(..., help="Journey files or folders of *.yaml files"),  # noqa: B008
) -> None:
    """Check journey files: every problem as FILE:LINE: path: message; exit 1 if any."""
    for path, journey, _ in _check(_expand(files)):
        typer.echo(
            f"{path}: ok (journey {journey.journey}, persona {journey.persona.id}, "
            f"{len(journey.steps)} steps)"
        )


# ---------------------------------------------------------------- database commands


def _run(action: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    from services.orchestrator.journey.store import JourneyStoreError

    settings = load_settings()

    async def go() -> T:
        try:
            conn = await asyncpg.connect(settings.database_url)
        except OSError as exc:
            raise JourneyStoreError(
                f"cannot reach PostgreSQL (TRAYECTO_DATABASE_URL): {exc}. "
                "Start the local stack with `trayecto stack up` or point the variable at "
                "a running server"
            ) from exc
        try:
            return await action(conn)
        except asyncpg.UndefinedTableError as exc:
            raise JourneyStoreError(
                "the database has no journey tables yet: run `trayecto db migrate`"
            ) from exc
        finally:
            await conn.close()

    with friendly_errors(JourneyStoreError, OSError, asyncpg.PostgresError):
        return asyncio.run(go())


@app.command("publish")
def publish(
    paths: list[Path] = typer.Argument(..., help="Journey files or folders of *.yaml files"),  # noqa: B008
) -> None:
    """Validate every file, then publish them all in one transaction (all or nothing).

    A changed journey becomes its next version; an unchanged one stays as it is.
    Prospects already travelling stay on the version they started.
    """
    from services.orchestrator.journey.store import publish_all

    loaded = _check(_expand(paths))
    results = _run(lambda conn: publish_all(conn, loaded))
    for result in results:
        where = escape(result.source)
        if result.created:
            line = f"[green]new[/]       {result.journey} v{result.version}  ({where})"
        elif result.retired:
            line = (
                f"[yellow]unchanged[/] {result.journey} v{result.version}  ({where}: identical "
                "to the latest version, which is retired: change the file to publish a new one)"
            )
        else:
            line = (
                f"unchanged {result.journey} v{result.version}  ({where}: identical to the "
                "latest version)"
            )
        console.print(line, highlight=False, soft_wrap=True)


@app.command("list")
def list_() -> None:
    """Every published journey: persona, live version, versions, retired ones."""
    from services.orchestrator.journey.store import list_versions

    versions = _run(list_versions)
    if not versions:
        console.print("no journeys published yet: `trayecto journeys publish journeys/`")
        return
    by_journey: dict[str, list[VersionInfo]] = {}
    for info in versions:
        by_journey.setdefault(info.journey, []).append(info)
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("journey", "persona", "live", "versions", "published (UTC)"):
        table.add_column(column, no_wrap=column != "persona")
    table.add_column("retired", min_width=9)
    for journey, infos in by_journey.items():
        live = [i.version for i in infos if not i.retired]
        latest = infos[-1]
        retired = ", ".join(f"v{i.version} {i.retire_mode}" for i in infos if i.retired)
        table.add_row(
            Text(journey),
            Text(latest.persona),
            Text(f"v{max(live)}") if live else Text("none", style="red"),
            str(len(infos)),
            f"{latest.published_at:%Y-%m-%d %H:%M}",
            Text(retired),
        )
    console.print(table)


@app.command("show")
def show(
    journey: str = typer.Argument(..., help="Journey id"),
    version: int | None = typer.Option(None, "--version", "-v", help="Default: the live one"),
    yaml: bool = typer.Option(False, "--yaml", help="Print the YAML as published"),
) -> None:
    """A published version: persona, entry, stages, goals, steps and policies."""
    stored, infos = _published(journey, version)
    if yaml:
        typer.echo(stored.source, nl=not stored.source.endswith("\n"))
        return
    _print_summary(stored, live=max((i.version for i in infos if not i.retired), default=None))


def _not_found(journey: str, version: int | None, infos: Sequence[VersionInfo]) -> str:
    if not infos:
        return f"no journey {journey!r} is published: see `trayecto journeys list`"
    listed = ", ".join(str(i.version) for i in infos)
    if version is None:
        return f"every version of {journey!r} is retired: pick one with --version ({listed})"
    return f"journey {journey!r} has no version {version} (versions: {listed})"


@app.command("retire")
def retire(
    journey: str = typer.Argument(..., help="Journey id"),
    version: int = typer.Option(..., "--version", "-v", help="Version to retire"),
    mode: RetireMode = typer.Option(  # noqa: B008
        ...,
        "--mode",
        help="finish: prospects on it complete their run; exit: they leave the journey",
    ),
) -> None:
    """Stop new prospects entering a version (the live one becomes the next highest)."""
    from services.orchestrator.journey import store

    async def go(conn: asyncpg.Connection) -> tuple[VersionInfo, dict[str, int]]:
        info = await store.retire(conn, journey, version, mode.value)
        return info, await store.live_versions(conn)

    info, live = _run(go)
    effect = (
        "prospects on it finish their run"
        if info.retire_mode == "finish"
        else "prospects on it leave the journey"
    )
    console.print(
        f"retired {journey} v{version} ({info.retire_mode}): no new entries, {effect}",
        highlight=False,
    )
    if journey in live:
        console.print(f"live version of {journey}: v{live[journey]}", highlight=False)
    else:
        console.print(
            f"[yellow]{journey} has no live version now[/]: nobody enters it until you "
            "publish a changed definition",
            highlight=False,
        )


# ---------------------------------------------------------------- render


MAP_FORMATS: Final = (".svg", ".html")


@app.command("render")
def render(
    source: str = typer.Argument(
        ..., metavar="FILE|JOURNEY", help="A journey file, or the id of a published journey"
    ),
    version: int | None = typer.Option(
        None, "--version", "-v", help="Published version (default: the live one)"
    ),
    out: Path = typer.Option(..., "--out", "-o", help="map.svg or map.html"),  # noqa: B008
) -> None:
    """Draw a journey as a customer-journey map: stages as columns, cards, transitions."""
    from services.metrics.map.layout import layout
    from services.metrics.map.page import render_html
    from services.metrics.map.svg import render_svg

    if out.suffix.lower() not in MAP_FORMATS:
        err_console.print(
            f"[red]Error:[/] --out must end in .svg or .html, not {escape(repr(out.name))}"
        )
        raise typer.Exit(2)
    path = Path(source)
    looks_like_file = "/" in source or path.suffix in (".yaml", ".yml")
    if path.is_file():
        if version is not None:
            err_console.print("[red]Error:[/] --version is for published journeys, not files")
            raise typer.Exit(2)
        (_, journey, _), *_ = _check([path])
    elif looks_like_file:
        err_console.print(f"[red]Error:[/] no journey file {escape(source)}")
        raise typer.Exit(1)
    else:
        stored, _ = _published(source, version)
        journey, version = stored.definition, stored.info.version
    drawn = layout(journey, version)
    if out.suffix.lower() == ".svg":
        text = render_svg(drawn)
    else:
        text = render_html([(drawn, None)], title=f"{journey.title}: journey map")
    with friendly_errors(OSError):
        out.write_text(text, encoding="utf-8")
    which = "" if version is None else f" v{version}"
    typer.echo(
        f"wrote {out}: {journey.journey}{which}, {len(drawn.cards)} cards in "
        f"{len(drawn.columns)} stages, {len(drawn.edges)} transitions"
    )


def _published(journey: str, version: int | None) -> tuple[StoredVersion, list[VersionInfo]]:
    """A published version (the live one by default) and every version of the journey,
    or the reason there is none."""
    from services.orchestrator.journey.store import get_version, list_versions

    async def fetch(conn: asyncpg.Connection) -> tuple[StoredVersion | None, list[VersionInfo]]:
        return await get_version(conn, journey, version), await list_versions(conn, journey)

    stored, infos = _run(fetch)
    if stored is None:
        err_console.print(f"[red]Error:[/] {_not_found(journey, version, infos)}")
        raise typer.Exit(1)
    return stored, infos


# ---------------------------------------------------------------- summary


def _print_summary(stored: StoredVersion, live: int | None) -> None:
    info, journey = stored.info, stored.definition
    if info.retired:
        status = f"retired {info.retired_at:%Y-%m-%d %H:%M} UTC ({info.retire_mode})"
    elif info.version == live:
        status = "live"
    else:
        status = f"superseded by v{live}"
    persona, entry = journey.persona, journey.entry
    lines = [
        f"{journey.journey} v{info.version}: {journey.title}",
        f"status:   {status}; published {info.published_at:%Y-%m-%d %H:%M} UTC; "
        f"checksum {info.checksum[:12]}",
        f"persona:  {persona.id}"
        + (f" ({persona.title})" if persona.title else "")
        + (f" when {describe_condition(persona.when)}" if persona.when else ""),
        f"entry:    {entry.event}"
        + (f" when {describe_condition(entry.when)}" if entry.when else "")
        + f"; re-entry: {entry.reentry}",
        "stages:   " + " → ".join(journey.stages),
        "policies: " + _policies(journey),
        f"locale:   trait {journey.locale_trait}, default {journey.default_locale}",
        "",
        f"goals ({len(journey.goals)}):",
    ]
    for goal in journey.goals:
        when = f" when {describe_condition(goal.when)}" if goal.when else ""
        lines.append(f"  {goal.event}{when} → {goal.stage}")
        if annotations := _annotations(goal.map):
            lines.append(f"      map: {annotations}")
    lines += ["", f"steps ({len(journey.steps)}):"]
    width = max(len(step.id) for step in journey.steps)
    for i, step in enumerate(journey.steps):
        kind, does, routes = describe_step(journey, i)
        lines.append(f"  {step.id:<{width}}  {kind} {does}".rstrip())
        lines += [f"  {'':<{width}}    {route}" for route in routes]
        if annotations := _annotations(step.map):
            lines.append(f"  {'':<{width}}    map: {annotations}")
    for line in lines:
        typer.echo(line)


def _policies(journey: Journey) -> str:
    policies = journey.policies
    parts = []
    if (cap := policies.frequency_cap) is not None:
        parts.append(
            f"at most {cap.max_sends} send(s) per {format_duration(cap.per)} "
            f"({cap.when_capped} when capped)"
        )
    if (quiet := policies.quiet_hours) is not None:
        parts.append(f"quiet hours {quiet.start} to {quiet.end} ({quiet.when_quiet})")
    parts.append(
        f"time zone from trait {policies.timezone_trait}, default {policies.default_timezone}"
    )
    return "; ".join(parts)


def _annotations(annotations: Annotations) -> str:
    parts = [
        str(value)
        for value in (annotations.stage, annotations.channel, annotations.emotion)
        if value is not None
    ]
    text = ", ".join(parts)
    if annotations.title:
        text = f"{text}: {annotations.title}" if text else annotations.title
    return text


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def describe_condition(condition: Condition) -> str:
    """A condition on one line: ``all(fact score gte 30, not(trait vip eq true))``."""
    from services.orchestrator.journey.model import All, AnyOf, Compare, Not

    if isinstance(condition, All):
        return "all(" + ", ".join(describe_condition(c) for c in condition.all) + ")"
    if isinstance(condition, AnyOf):
        return "any(" + ", ".join(describe_condition(c) for c in condition.any) + ")"
    if isinstance(condition, Not):
        return f"not({describe_condition(condition.not_)})"
    assert isinstance(condition, Compare)
    kind, path = condition.subject
    operator, value = condition.operator
    return f"{kind} {path} {operator} {_json(value)}"


def _json(value: Any) -> str:
    """JSON for people: 100.0 is 100."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, list):
        return "[" + ", ".join(_json(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def describe_step(journey: Journey, index: int) -> tuple[str, str, list[str]]:
    """(kind, what it does, where it goes: one line per route) of one step, for people."""
    from services.orchestrator.journey.loader import next_in_order
    from services.orchestrator.journey.model import (
        BranchStep,
        ExitStep,
        GotoStep,
        SendStep,
        SplitStep,
        UpdateStep,
        WaitForStep,
        WaitStep,
    )

    step: Step = journey.steps[index]
    implicit = next_in_order(journey, index) or "(end of the journey)"
    if isinstance(step, SendStep):
        send = step.send
        does = f"{send.content} ({send.type} by {send.channel})"
        if send.variants:
            does += "; variants " + ", ".join(
                f"{v.name}={v.content} ({v.weight:g})" for v in send.variants
            )
        if send.params:
            does += "; params " + ", ".join(f"{k}={_json(v)}" for k, v in send.params.items())
        return "send", does, [f"→ {step.next or implicit}"]
    if isinstance(step, WaitStep):
        if isinstance(step.wait, timedelta):
            does = f"for {format_duration(step.wait)}"
        else:
            days = ",".join(step.wait.days) or "any day"
            does = f"until {step.wait.time} local time ({days})"
        return "wait", does, [f"→ {step.next or implicit}"]
    if isinstance(step, WaitForStep):
        action = step.wait_for
        does = action.event
        if action.when is not None:
            does += f" when {describe_condition(action.when)}"
        does += f", at most {format_duration(action.timeout)}"
        return "wait_for", does, [f"→ {step.next or implicit}", f"timeout → {step.on_timeout}"]
    if isinstance(step, BranchStep):
        cases = [f"if {describe_condition(c.when)} → {c.next}" for c in step.branch]
        return "branch", "", [*cases, f"else → {step.else_}"]
    if isinstance(step, SplitStep):
        total = sum(arm.weight for arm in step.split)
        return "split", "", [f"{a.variant} {a.weight / total:.0%} → {a.next}" for a in step.split]
    if isinstance(step, UpdateStep):
        changes = [f"{k}={_json(v)}" for k, v in step.update.set.items()]
        if step.update.score:
            changes.append(f"score {step.update.score:+g}")
        return "update", ", ".join(changes) or "nothing", [f"→ {step.next or implicit}"]
    if isinstance(step, GotoStep):
        return "goto", "", [f"→ {step.goto}"]
    assert isinstance(step, ExitStep)
    return "exit", f"reason {step.exit}", ["leaves the journey"]
