"""``trayecto import FILE.csv --source NAME``: bulk lead lists through the ingest pipeline.

Each valid row becomes an identify and a ``lead_captured`` track whose messageIds are
a hash of the source and the normalised row, so importing a file again (or resuming
an interrupted import) publishes only the rows not imported yet, within the ingest
dedupe window (``TRAYECTO_INGEST_DEDUPE_DAYS``).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import asyncpg
import typer
from pydantic import JsonValue
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from services.ingest.leads import normalise_email
from services.ingest.pipeline import Accepted, Ingestor
from services.ingest.segment import Call, Identify, Track
from services.ingest.sources import Source

from ..db import create_pool
from ..kafka.producer import KafkaUnavailable, Producer
from ..settings import Settings
from ..topics import TOUCHPOINTS
from .common import console, friendly_errors, load_settings

CHUNK_ROWS = 100
MAX_VALUE_CHARS = 2000
SEND_ATTEMPTS = 3
CAMPAIGN_COLUMNS = {"utm_source": "source", "utm_medium": "medium", "utm_campaign": "name"}
_PHONE = re.compile(r"^\+?[0-9 ()./-]{6,30}$")
_ID = re.compile(r"^[^\x00-\x1f]{1,200}$")


class LeadImportError(Exception):
    """The file or the source cannot be imported at all."""


@dataclass(frozen=True, slots=True)
class Lead:
    line: int
    user_id: str
    traits: dict[str, JsonValue]
    campaign: dict[str, JsonValue]
    digest: str


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    errors: list[tuple[str, str]]
    values: list[str]


def column_name(raw: str) -> str:
    return re.sub(r"[\s-]+", "_", raw.strip().lower())


def validate_row(source: str, line: int, row: Mapping[str, str]) -> Lead | Rejected:
    """A lead, or the reasons (field, message) the row cannot be one."""
    values = {name: value.strip() for name, value in row.items() if value and value.strip()}
    errors: list[tuple[str, str]] = []
    email = normalise_email(values.get("email"))
    if email is None:
        errors.append(("email", "not a valid email address" if "email" in values else "missing"))
    else:
        values["email"] = email
    user_id = values.get("user_id", email)
    if "user_id" in values and not _ID.match(values["user_id"]):
        errors.append(("user_id", "at most 200 printable characters"))
    phone = values.get("phone")
    if phone and (not _PHONE.match(phone) or sum(c.isdigit() for c in phone) < 6):
        errors.append(("phone", "not a phone number (digits, spaces, + ( ) . - /)"))
    too_long = f"longer than {MAX_VALUE_CHARS} characters"
    errors += [(name, too_long) for name, value in values.items() if len(value) > MAX_VALUE_CHARS]
    if errors or user_id is None:
        return Rejected(line, errors, list(row.values()))
    digest = hashlib.sha256(f"{source}\n{json.dumps(values, sort_keys=True)}".encode()).hexdigest()[
        :40
    ]
    campaign: dict[str, JsonValue] = {
        key: values[column] for column, key in CAMPAIGN_COLUMNS.items() if column in values
    }
    traits: dict[str, JsonValue] = {
        name: value
        for name, value in values.items()
        if name != "user_id" and name not in CAMPAIGN_COLUMNS
    }
    return Lead(line, user_id, traits, campaign, digest)


def lead_calls(lead: Lead, file_name: str) -> list[Call]:
    properties: dict[str, JsonValue] = {"method": "import", "file": file_name}
    if not lead.campaign:
        properties["channel"] = "other"  # no UTM tags: say so rather than "direct"
    context: dict[str, JsonValue] = {"campaign": lead.campaign} if lead.campaign else {}
    return [
        Identify(
            user_id=lead.user_id, message_id=f"import:{lead.digest}:identify", traits=lead.traits
        ),
        Track(
            user_id=lead.user_id,
            message_id=f"import:{lead.digest}:lead",
            event="lead_captured",
            properties=properties,
            context=context,
        ),
    ]


@dataclass
class LeadFile:
    header: list[str]
    leads: list[Lead] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    repeated: int = 0
    """Rows identical to an earlier row of the same file."""


def read_leads(path: Path, source: str) -> LeadFile:
    """Every row validated; the delimiter (, ; tab) is the one the header uses most."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            first = f.readline()
            f.seek(0)
            delimiter = max(",;\t", key=first.count)
            reader = csv.reader(f, delimiter=delimiter)
            header = [column_name(h) for h in next(reader, [])]
            _check_header(path, header)
            found = LeadFile(header)
            seen: set[str] = set()
            for values in reader:
                if not any(v.strip() for v in values):
                    continue
                if len(values) > len(header) and any(v.strip() for v in values[len(header) :]):
                    message = f"{len(values)} values but the header has {len(header)} columns"
                    found.rejected.append(Rejected(reader.line_num, [("row", message)], values))
                    continue
                row = dict(zip(header, values + [""] * (len(header) - len(values)), strict=False))
                result = validate_row(source, reader.line_num, row)
                if isinstance(result, Rejected):
                    found.rejected.append(result)
                elif result.digest in seen:
                    found.repeated += 1
                else:
                    seen.add(result.digest)
                    found.leads.append(result)
            return found
    except UnicodeDecodeError as exc:
        raise LeadImportError(f"{path} is not UTF-8 text: {exc}") from exc
    except csv.Error as exc:
        raise LeadImportError(f"{path} is not a readable CSV file: {exc}") from exc


def _check_header(path: Path, header: Sequence[str]) -> None:
    if "email" not in header:
        raise LeadImportError(f"{path} has no 'email' column (header: {', '.join(header)})")
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise LeadImportError(f"{path} has repeated columns: {', '.join(repeated)}")


def rejected_path(path: Path) -> Path:
    return path.with_name(f"{path.name.removesuffix(path.suffix)}.rejected.csv")


def write_rejected(path: Path, header: Sequence[str], rejected: Sequence[Rejected]) -> Path:
    out = rejected_path(path)
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["line", "field", "message", *header])
        for r in rejected:
            fields, messages = (", ".join(part) for part in zip(*r.errors, strict=True))
            writer.writerow([r.line, fields, messages, *r.values])
    return out


class _RowsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:,.0f} rows/s", style="progress.data.speed")


async def _source(conn: asyncpg.Pool, name: str) -> Source:
    row = await conn.fetchrow(
        "SELECT id, name, rate_limit, revoked_at FROM sources WHERE name = $1", name
    )
    if row is None:
        raise LeadImportError(f"no source named {name!r} (see `trayecto sources list`)")
    if row["revoked_at"] is not None:
        raise LeadImportError(f"source {name!r} is revoked")
    return Source(row["id"], row["name"], row["rate_limit"])


async def _already_imported(pool: asyncpg.Pool, source: Source, leads: Sequence[Lead]) -> int:
    ids = [f"import:{lead.digest}:lead" for lead in leads]
    count = await pool.fetchval(
        "SELECT count(*) FROM ingest_messages WHERE source_id = $1 AND message_id = ANY($2)",
        source.id,
        ids,
    )
    return int(count)


async def _accept(ingestor: Ingestor, source: Source, calls: Sequence[Call]) -> Accepted:
    for attempt in range(SEND_ATTEMPTS - 1):
        try:
            return await ingestor.accept(source, calls)
        except KafkaUnavailable:
            await asyncio.sleep(2**attempt)
    return await ingestor.accept(source, calls)


async def _publish(
    settings: Settings,
    pool: asyncpg.Pool,
    source: Source,
    leads: Sequence[Lead],
    *,
    file_name: str,
    rate: float,
    topic: str,
    advance: Callable[[int], None],
) -> tuple[int, int]:
    """(imported, duplicates); paced to ``rate`` rows/s in chunks of at most ~1 s."""
    producer = Producer(settings, client_id="import", timeout_s=settings.ingest_publish_timeout_s)
    await producer.start()
    ingestor = Ingestor(pool, producer, settings, topic=topic)
    chunk = max(1, min(CHUNK_ROWS, int(rate)))
    imported = duplicates = 0
    started = time.monotonic()
    try:
        for start in range(0, len(leads), chunk):
            rows = leads[start : start + chunk]
            calls = [call for lead in rows for call in lead_calls(lead, file_name)]
            try:
                accepted = await _accept(ingestor, source, calls)
            except KafkaUnavailable as exc:
                raise LeadImportError(
                    f"Kafka is unavailable ({exc}); {imported} rows were imported. "
                    "Run the same command again: imported rows are skipped."
                ) from exc
            # Both calls of a row share its digest, so they are new or duplicate together.
            imported += accepted.published // 2
            duplicates += accepted.duplicates // 2
            advance(len(rows))
            ahead = (start + len(rows)) / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
    finally:
        await producer.stop()
    return imported, duplicates


def import_leads(
    file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV with a header row"),
    ],
    source: Annotated[str, typer.Option(help="Name of an active source (trayecto sources list)")],
    rate: Annotated[float, typer.Option(min=0.1, help="Rows per second at most")] = 200.0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and count; publish nothing")
    ] = False,
    topic: Annotated[str, typer.Option(hidden=True)] = TOUCHPOINTS,
) -> None:
    """Import a lead list: an identify and a lead_captured per valid row, once per row.

    Columns: email (required), user_id, first_name, last_name, phone, company,
    utm_source, utm_medium, utm_campaign; any other column becomes a trait.

    Rejected rows and their reasons are written to FILE.rejected.csv next to FILE.
    """
    settings = load_settings()
    with friendly_errors(LeadImportError, OSError, asyncpg.PostgresError):
        found = read_leads(file, source)
        stale = rejected_path(file)
        if found.rejected:
            out: Path | None = write_rejected(file, found.header, found.rejected)
        else:
            out = None
            stale.unlink(missing_ok=True)  # a report from an earlier run would mislead
        imported, duplicates = asyncio.run(
            _run(settings, source, found.leads, file.name, rate, topic, dry_run)
        )
    duplicates += found.repeated
    console.print(f"{'would import' if dry_run else 'imported'}: [bold]{imported}[/]")
    console.print(f"duplicates (already imported): [bold]{duplicates}[/]")
    console.print(f"rejected: [bold]{len(found.rejected)}[/]")
    if out is not None:
        console.print(f"rejected rows and reasons: {escape(str(out))}", soft_wrap=True)


async def _run(
    settings: Settings,
    source_name: str,
    leads: Sequence[Lead],
    file_name: str,
    rate: float,
    topic: str,
    dry_run: bool,
) -> tuple[int, int]:
    pool = await create_pool(settings)
    try:
        source = await _source(pool, source_name)
        if dry_run:
            already = await _already_imported(pool, source, leads)
            return len(leads) - already, already
        progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RowsPerSecond(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        with progress:
            task = progress.add_task("importing", total=len(leads))
            return await _publish(
                settings,
                pool,
                source,
                leads,
                file_name=file_name,
                rate=rate,
                topic=topic,
                advance=lambda n: progress.advance(task, n),
            )
    finally:
        await pool.close()
