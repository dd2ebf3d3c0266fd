"""Published journey versions in PostgreSQL (table ``journey_versions``).

Publishing validates first and never edits a version: a changed definition becomes the
next version, an identical one (same checksum as the latest) changes nothing. Prospects
keep the version they started, so the runtime compiles every stored version
(:func:`all_definitions`); new prospects enter the live one, the highest version that is
not retired.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import asyncpg
from pydantic_core import to_jsonable_python

from shared.db import Connection

from .loader import JourneyError, Problem, load_journey
from .model import Journey

RetireMode = Literal["finish", "exit"]
RETIRE_MODES: Final[tuple[RetireMode, ...]] = ("finish", "exit")
SUFFIXES: Final = (".yaml", ".yml")

# First key of the two-key advisory locks that serialise publishing per journey
# (the second is the hash of the journey id); arbitrary, just unlike other lock users.
_LOCK_CLASS: Final = 0x6A72_6E79

Database = Connection | asyncpg.Pool
"""A connection, or a pool to take one from."""


class JourneyStoreError(ValueError):
    """A store operation that cannot be done (unknown journey or version, bad mode)."""


class PublishError(ValueError):
    """Journey files that cannot be published; ``errors`` has every file's problems."""

    def __init__(self, errors: Sequence[JourneyError]) -> None:
        self.errors = list(errors)
        count = sum(len(e.problems) for e in self.errors)
        super().__init__(
            f"nothing published: {count} problem(s) in {len(self.errors)} file(s)\n"
            + "\n".join(str(e) for e in self.errors)
        )


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One published version, without its definition."""

    journey: str
    version: int
    persona: str
    title: str
    checksum: str
    published_at: datetime
    retired_at: datetime | None
    retire_mode: RetireMode | None

    @property
    def retired(self) -> bool:
        return self.retired_at is not None


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """One published version with its definition and the YAML it was published from."""

    info: VersionInfo
    definition: Journey
    source: str


@dataclass(frozen=True, slots=True)
class Published:
    """What publishing one file did."""

    journey: str
    version: int
    created: bool
    source: str
    retired: bool = False
    """Unchanged, and that version is retired: nobody enters it."""


def normalised(journey: Journey) -> dict[str, Any]:
    """The definition as stored: every field (defaults included) by alias, JSON types,
    whole numbers as integers (a score of 5 and of 5.0 are the same definition)."""
    # Not model_dump(mode="json"): its serializer for `str | int | float | bool` values
    # can turn a true in `update.set` into 1. Dumping Python objects and converting them
    # keeps each value's own type.
    data: dict[str, Any] = _canonical(to_jsonable_python(journey.model_dump(by_alias=True)))
    return data


def checksum(journey: Journey) -> str:
    """SHA-256 of the normalised definition: YAML layout, comments and defaults spelled
    out or not make no difference."""
    text = json.dumps(normalised(journey), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@asynccontextmanager
async def _connection(db: Database) -> AsyncIterator[Connection]:
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db


# ---------------------------------------------------------------- publishing


async def publish(db: Database, journey: Journey, source_text: str) -> tuple[int, bool]:
    """Store a validated journey; returns (version, created).

    Identical to the latest version (same checksum): nothing is created and that version
    is returned, even when it is retired (republishing the same folder must not revive
    what someone retired; a changed definition does). Otherwise the next version number
    is taken under a per-journey advisory lock, so concurrent publishers get distinct
    versions.
    """
    published = await _publish(db, journey, source_text, "")
    return published.version, published.created


async def _publish(db: Database, journey: Journey, source_text: str, source: str) -> Published:
    digest = checksum(journey)
    async with _connection(db) as conn, conn.transaction():
        # Held to the end of the (outer) transaction: the max+1 below cannot race.
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK_CLASS, journey.journey
        )
        latest = await conn.fetchrow(
            "SELECT version, checksum, retired_at FROM journey_versions"
            " WHERE journey = $1 ORDER BY version DESC LIMIT 1",
            journey.journey,
        )
        if latest is not None and latest["checksum"] == digest:
            retired = latest["retired_at"] is not None
            return Published(journey.journey, latest["version"], False, source, retired)
        version = 1 if latest is None else int(latest["version"]) + 1
        await conn.execute(
            "INSERT INTO journey_versions"
            " (journey, version, persona, title, definition, source, checksum)"
            " VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)",
            journey.journey,
            version,
            journey.persona.id,
            journey.title,
            json.dumps(normalised(journey)),
            source_text,
            digest,
        )
        return Published(journey.journey, version, True, source)


def journey_files(paths: Iterable[Path]) -> list[Path]:
    """Files as given, and the ``*.yaml``/``*.yml`` files of folders (sorted); each once."""
    found: dict[Path, Path] = {}
    for path in paths:
        files = [path]
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES)
        for file in files:
            found.setdefault(file.resolve(), file)
    return list(found.values())


def validate_files(files: Sequence[Path]) -> list[tuple[Path, Journey, str]]:
    """Load every file; raises PublishError listing the problems of all broken ones."""
    loaded: list[tuple[Path, Journey, str]] = []
    errors: list[JourneyError] = []
    owners: dict[str, Path] = {}
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
            journey = load_journey(text, str(path))
        except JourneyError as exc:
            errors.append(exc)
            continue
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(_file_error(path, f"cannot read the file: {exc}"))
            continue
        if (first := owners.setdefault(journey.journey, path)) != path:
            errors.append(
                _file_error(path, f"journey {journey.journey!r} is also defined in {first}")
            )
            continue
        loaded.append((path, journey, text))
    if errors:
        raise PublishError(errors)
    return loaded


def _file_error(path: Path, message: str) -> JourneyError:
    return JourneyError(str(path), [Problem("(file)", message)])


async def publish_files(db: Database, files: Sequence[Path]) -> list[Published]:
    """Validate every file, then publish them all in one transaction (all or nothing)."""
    if not files:
        raise JourneyStoreError("no journey files given")
    return await publish_all(db, validate_files(files))


async def publish_all(db: Database, loaded: Sequence[tuple[Path, Journey, str]]) -> list[Published]:
    """Publish journeys validated by :func:`validate_files`, in one transaction."""
    results: list[Published] = []
    async with _connection(db) as conn, conn.transaction():
        # Locks taken in journey order: two publishers of the same files cannot deadlock.
        for path, journey, text in sorted(loaded, key=lambda item: item[1].journey):
            results.append(await _publish(conn, journey, text, str(path)))
    return results


async def publish_directory(db: Database, path: Path) -> list[tuple[str, int, bool]]:
    """Publish every ``*.yaml`` file of a folder: all validated first, one transaction."""
    files = _folder_files(path)
    return [(p.journey, p.version, p.created) for p in await publish_files(db, files)]


def _folder_files(path: Path) -> list[Path]:
    if not path.is_dir():
        raise JourneyStoreError(f"{path} is not a folder of journey files")
    files = journey_files([path])
    if not files:
        raise JourneyStoreError(f"{path} has no *.yaml journey files")
    return files


# ---------------------------------------------------------------- reading


_INFO_COLUMNS: Final = (
    "journey, version, persona, title, checksum, published_at, retired_at, retire_mode"
)


def _info(row: asyncpg.Record) -> VersionInfo:
    return VersionInfo(
        journey=row["journey"],
        version=row["version"],
        persona=row["persona"],
        title=row["title"],
        checksum=row["checksum"],
        published_at=row["published_at"],
        retired_at=row["retired_at"],
        retire_mode=row["retire_mode"],
    )


def _definition(value: Any) -> Journey:
    # jsonb arrives as text unless the connection has a JSON codec.
    data = json.loads(value) if isinstance(value, str) else value
    return Journey.model_validate(data)


async def list_versions(db: Database, journey: str | None = None) -> list[VersionInfo]:
    """Every version (of every journey, or of one), by journey then version."""
    async with _connection(db) as conn:
        rows = await conn.fetch(
            f"SELECT {_INFO_COLUMNS} FROM journey_versions"
            " WHERE $1::text IS NULL OR journey = $1 ORDER BY journey, version",
            journey,
        )
    return [_info(row) for row in rows]


async def get_version(db: Database, journey: str, version: int | None) -> StoredVersion | None:
    """One version, or with ``version=None`` the live one; None when there is none."""
    async with _connection(db) as conn:
        if version is None:
            row = await conn.fetchrow(
                f"SELECT {_INFO_COLUMNS}, definition, source FROM journey_versions"
                " WHERE journey = $1 AND retired_at IS NULL ORDER BY version DESC LIMIT 1",
                journey,
            )
        else:
            row = await conn.fetchrow(
                f"SELECT {_INFO_COLUMNS}, definition, source FROM journey_versions"
                " WHERE journey = $1 AND version = $2",
                journey,
                version,
            )
    if row is None:
        return None
    return StoredVersion(_info(row), _definition(row["definition"]), row["source"])


async def live_versions(db: Database) -> dict[str, int]:
    """journey → live version (highest non-retired); fully retired journeys are absent."""
    async with _connection(db) as conn:
        rows = await conn.fetch(
            "SELECT DISTINCT ON (journey) journey, version FROM journey_versions"
            " WHERE retired_at IS NULL ORDER BY journey, version DESC"
        )
    return {row["journey"]: row["version"] for row in rows}


async def all_definitions(db: Database) -> list[tuple[str, int, Journey]]:
    """Every stored version, retired ones included (prospects may still be on them)."""
    async with _connection(db) as conn:
        rows = await conn.fetch(
            "SELECT journey, version, definition FROM journey_versions ORDER BY journey, version"
        )
    return [(row["journey"], row["version"], _definition(row["definition"])) for row in rows]


async def retired_versions(db: Database) -> dict[tuple[str, int], RetireMode]:
    """(journey, version) → retire mode, for every retired version."""
    async with _connection(db) as conn:
        rows = await conn.fetch(
            "SELECT journey, version, retire_mode FROM journey_versions"
            " WHERE retired_at IS NOT NULL"
        )
    return {(row["journey"], row["version"]): row["retire_mode"] for row in rows}


# ---------------------------------------------------------------- retiring


async def retire(db: Database, journey: str, version: int, mode: str) -> VersionInfo:
    """Stop new entries into a version; ``finish`` lets prospects on it complete their
    run, ``exit`` takes them out. Retiring again with the same mode changes nothing;
    ``finish`` may later be hardened to ``exit``, never the reverse."""
    if mode not in RETIRE_MODES:
        raise JourneyStoreError(f"retire mode {mode!r} is not one of: finish, exit")
    async with _connection(db) as conn, conn.transaction():
        row = await conn.fetchrow(
            f"SELECT {_INFO_COLUMNS} FROM journey_versions"
            " WHERE journey = $1 AND version = $2 FOR UPDATE",
            journey,
            version,
        )
        if row is None:
            known = await conn.fetch(
                "SELECT version FROM journey_versions WHERE journey = $1 ORDER BY version",
                journey,
            )
            if not known:
                raise JourneyStoreError(
                    f"no journey {journey!r} is published: see `trayecto journeys list`"
                )
            listed = ", ".join(str(r["version"]) for r in known)
            raise JourneyStoreError(
                f"journey {journey!r} has no version {version} (versions: {listed})"
            )
        current = _info(row)
        if current.retire_mode == mode:
            return current
        if current.retire_mode == "exit":
            raise JourneyStoreError(
                f"{journey} v{version} was retired with mode exit: its prospects have "
                "left already, it cannot become finish"
            )
        updated = await conn.fetchrow(
            "UPDATE journey_versions SET retire_mode = $3, retired_at = coalesce(retired_at, now())"
            f" WHERE journey = $1 AND version = $2 RETURNING {_INFO_COLUMNS}",
            journey,
            version,
            mode,
        )
        assert updated is not None  # the row is locked above
        return _info(updated)
