"""Publishing the content catalogue: versions in PostgreSQL, like journeys.

``publish`` checks the catalogue folder, then stores ``catalogue.yaml`` and every
template as a new version (none when nothing changed). The delivery service renders
from the latest published version and picks up a new one while running; downloadable
files are served from the content store directory (``TRAYECTO_CONTENT_DIR/files``, by
ingest) or from the URL base ``TRAYECTO_CONTENT_BASE_URL``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import asyncpg

from shared.db import Connection

from .catalogue import Catalogue, load_catalogue

CATALOGUE_FILE = "catalogue.yaml"
TEMPLATES = "templates"
FILES = "files"


def snapshot(root: Path) -> dict[str, str]:
    """The catalogue and templates under ``root``, by relative path."""
    texts = {CATALOGUE_FILE: (root / CATALOGUE_FILE).read_text(encoding="utf-8")}
    for path in sorted((root / TEMPLATES).rglob("*")):
        if path.is_file():
            texts[path.relative_to(root).as_posix()] = path.read_text(encoding="utf-8")
    return texts


def checksum(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


async def publish(db: Connection, root: Path) -> tuple[int, bool]:
    """Validate and publish ``root``; returns (version, created)."""
    load_catalogue(root)  # raises CatalogueError listing every problem
    files = snapshot(root)
    digest = checksum(files)
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock(hashtext('trayecto.content'))")
        latest = await db.fetchrow(
            "SELECT version, checksum FROM content_versions ORDER BY version DESC LIMIT 1"
        )
        if latest is not None and latest["checksum"] == digest:
            return int(latest["version"]), False
        version = (int(latest["version"]) if latest else 0) + 1
        await db.execute(
            "INSERT INTO content_versions (version, checksum, files) VALUES ($1, $2, $3)",
            version,
            digest,
            json.dumps(files),
        )
    return version, True


async def latest_version(conn: Connection | asyncpg.Pool) -> int | None:
    value = await conn.fetchval("SELECT max(version) FROM content_versions")
    return int(value) if value is not None else None


async def load_published(
    conn: Connection | asyncpg.Pool, version: int, store: Path, workdir: Path
) -> Catalogue:
    """Write a published version into ``workdir`` (files from ``store``) and load it."""
    raw = await conn.fetchval("SELECT files FROM content_versions WHERE version = $1", version)
    files: dict[str, str] = json.loads(raw)
    target = workdir / f"v{version}"
    shutil.rmtree(target, ignore_errors=True)
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if (store / FILES).is_dir():
        (target / FILES).symlink_to((store / FILES).resolve(), target_is_directory=True)
    return load_catalogue(target)
