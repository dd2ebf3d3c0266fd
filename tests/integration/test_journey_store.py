"""Journey versions in a real PostgreSQL: publish, republish, retire, folders, races."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from services.orchestrator.journey import Journey, load_journey, load_journey_file
from services.orchestrator.journey.store import (
    JourneyStoreError,
    PublishError,
    all_definitions,
    get_version,
    list_versions,
    live_versions,
    publish,
    publish_directory,
    retire,
    retired_versions,
)
from shared.db import migrate

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "journeys"
SMB = SEEDS / "smb-owner.yaml"


@pytest.fixture
async def conn(fresh_database: str) -> AsyncIterator[asyncpg.Connection]:
    await migrate(fresh_database)
    connection = await asyncpg.connect(fresh_database)
    try:
        yield connection
    finally:
        await connection.close()


def smb(title: str | None = None) -> tuple[Journey, str]:
    text = SMB.read_text()
    if title is not None:
        text = text.replace(
            "title: Small business owner — lead form, offer test, free trial",
            f"title: {title}",
            1,
        )
    return load_journey(text), text


async def test_publish_creates_v1_and_an_identical_file_changes_nothing(
    conn: asyncpg.Connection,
) -> None:
    journey, text = smb()
    assert await publish(conn, journey, text) == (1, True)
    # Comments and layout are not the definition.
    commented = "# reviewed by marketing ops\n" + text.replace("\n\n", "\n")
    assert await publish(conn, load_journey(commented), commented) == (1, False)

    stored = await get_version(conn, "smb-owner", None)
    assert stored is not None
    assert stored.info.version == 1
    assert stored.info.persona == "smb-owner"
    assert stored.definition == journey
    assert stored.source == text, "the YAML as first published"
    assert [v.version for v in await list_versions(conn)] == [1]
    # A true set by an update step is stored as JSON true.
    flag = await conn.fetchval(
        "SELECT jsonb_typeof(step -> 'update' -> 'set' -> 'trial_reminded')"
        " FROM journey_versions, jsonb_array_elements(definition -> 'steps') AS step"
        " WHERE step ->> 'id' = 'mark-reminded'"
    )
    assert flag == "boolean"


async def test_a_changed_file_makes_the_next_version(conn: asyncpg.Connection) -> None:
    first, first_text = smb()
    second, second_text = smb("Small business owner — spring offer")
    assert await publish(conn, first, first_text) == (1, True)
    assert await publish(conn, second, second_text) == (2, True)
    assert await live_versions(conn) == {"smb-owner": 2}
    definitions = await all_definitions(conn)
    assert [(j, v) for j, v, _ in definitions] == [("smb-owner", 1), ("smb-owner", 2)]
    assert definitions[0][2] == first
    assert definitions[1][2] == second
    old = await get_version(conn, "smb-owner", 1)
    assert old is not None
    assert old.definition.title == first.title
    assert await get_version(conn, "smb-owner", 3) is None
    # Back to the first definition: a new version, not the old number.
    assert await publish(conn, first, first_text) == (3, True)


async def test_retire_and_live_versions(conn: asyncpg.Connection) -> None:
    for title in ("one", "two"):
        journey, text = smb(title)
        await publish(conn, journey, text)
    other = load_journey_file(SEEDS / "it-manager.yaml")
    await publish(conn, other, "")

    info = await retire(conn, "smb-owner", 2, "finish")
    assert info.retired
    assert info.retire_mode == "finish"
    assert await live_versions(conn) == {"smb-owner": 1, "it-manager": 1}
    live = await get_version(conn, "smb-owner", None)
    assert live is not None
    assert live.info.version == 1

    await retire(conn, "smb-owner", 1, "exit")
    assert await live_versions(conn) == {"it-manager": 1}
    assert await get_version(conn, "smb-owner", None) is None
    assert await retired_versions(conn) == {("smb-owner", 1): "exit", ("smb-owner", 2): "finish"}
    # Retired versions stay loadable: prospects may still be on them.
    assert len(await all_definitions(conn)) == 3

    again = await retire(conn, "smb-owner", 2, "finish")
    assert again.retired_at == info.retired_at
    hardened = await retire(conn, "smb-owner", 2, "exit")
    assert hardened.retire_mode == "exit"
    with pytest.raises(JourneyStoreError, match="cannot become finish"):
        await retire(conn, "smb-owner", 2, "finish")
    with pytest.raises(JourneyStoreError, match=r"no version 7 \(versions: 1, 2\)"):
        await retire(conn, "smb-owner", 7, "exit")
    with pytest.raises(JourneyStoreError, match="no journey 'nobody' is published"):
        await retire(conn, "nobody", 1, "exit")
    with pytest.raises(JourneyStoreError, match="not one of: finish, exit"):
        await retire(conn, "smb-owner", 1, "pause")

    # Republishing the retired definition does not revive it; a changed one does.
    journey, text = smb("two")
    assert await publish(conn, journey, text) == (2, False)
    assert "smb-owner" not in await live_versions(conn)
    journey, text = smb("three")
    assert await publish(conn, journey, text) == (3, True)
    assert (await live_versions(conn))["smb-owner"] == 3


async def test_publish_directory_is_all_or_nothing(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    folder = tmp_path / "journeys"
    shutil.copytree(SEEDS, folder)
    (folder / "broken.yaml").write_text(
        "journey: broken\ntitle: Broken\npersona: {id: p}\nentry: {event: ad_click}\n"
        "steps:\n  - id: start\n    goto: nowhere\n"
    )
    with pytest.raises(PublishError) as raised:
        await publish_directory(conn, folder)
    assert [e.source for e in raised.value.errors] == [str(folder / "broken.yaml")]
    assert await list_versions(conn) == []

    (folder / "broken.yaml").unlink()
    published = await publish_directory(conn, folder)
    assert sorted(published) == [
        ("it-manager", 1, True),
        ("procurement-lead", 1, True),
        ("smb-owner", 1, True),
    ]
    assert sorted(await publish_directory(conn, folder)) == [
        ("it-manager", 1, False),
        ("procurement-lead", 1, False),
        ("smb-owner", 1, False),
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(JourneyStoreError, match=r"has no \*\.yaml journey files"):
        await publish_directory(conn, empty)
    with pytest.raises(JourneyStoreError, match="is not a folder"):
        await publish_directory(conn, tmp_path / "missing")


async def test_a_failure_while_publishing_a_folder_publishes_nothing(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    shutil.copytree(SEEDS, tmp_path / "journeys")
    # Valid files, but the database refuses the last one (in journey order).
    await conn.execute(
        "ALTER TABLE journey_versions ADD CONSTRAINT no_smb CHECK (journey <> 'smb-owner')"
    )
    with pytest.raises(asyncpg.CheckViolationError):
        await publish_directory(conn, tmp_path / "journeys")
    assert await list_versions(conn) == []


async def test_concurrent_publishes_get_distinct_versions(fresh_database: str) -> None:
    await migrate(fresh_database)
    pool = await asyncpg.create_pool(fresh_database, min_size=8, max_size=8)
    assert pool is not None
    try:
        variants = [smb(f"Small business owner — variant {i}") for i in range(8)]
        results = await asyncio.gather(*(publish(pool, j, t) for j, t in variants))
        assert sorted(v for v, _ in results) == list(range(1, 9))
        assert all(created for _, created in results)

        same = smb("Small business owner — the same for everyone")
        results = await asyncio.gather(*(publish(pool, *same) for _ in range(6)))
        assert {v for v, _ in results} == {9}
        assert sorted(created for _, created in results) == [False] * 5 + [True]
        assert await live_versions(pool) == {"smb-owner": 9}
    finally:
        await pool.close()


def test_cli_publish_list_show_retire(fresh_database: str, tmp_path: Path) -> None:
    asyncio.run(migrate(fresh_database))
    env = {**os.environ, "TRAYECTO_DATABASE_URL": fresh_database}

    def trayecto(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "shared.cli.main", "journeys", *args],
            capture_output=True,
            text=True,
            env={**env, "COLUMNS": "200"},
            cwd=ROOT,
            check=False,
            timeout=120,
        )

    broken = tmp_path / "broken.yaml"
    broken.write_text("journey: broken\ntitle: Broken\n")
    refused = trayecto("publish", str(SEEDS), str(broken))
    assert refused.returncode == 1
    assert f"{broken}:" in refused.stdout
    assert "persona: Field required" in refused.stdout

    first = trayecto("publish", str(SEEDS))
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("new") == 3
    second = trayecto("publish", str(SEEDS))
    assert second.stdout.count("unchanged") == 3

    listed = trayecto("list")
    assert listed.returncode == 0, listed.stderr
    for name in ("smb-owner", "it-manager", "procurement-lead"):
        assert name in listed.stdout

    shown = trayecto("show", "it-manager")
    assert shown.returncode == 0, shown.stderr
    assert "it-manager v1" in shown.stdout
    assert "status:   live" in shown.stdout
    assert "if fact video_max_percent gt 0 → pdf-summary" in shown.stdout
    as_yaml = trayecto("show", "it-manager", "--version", "1", "--yaml")
    assert as_yaml.stdout == (SEEDS / "it-manager.yaml").read_text()

    retired = trayecto("retire", "it-manager", "--version", "1", "--mode", "finish")
    assert retired.returncode == 0, retired.stderr
    assert "it-manager has no live version now" in retired.stdout
    gone = trayecto("show", "it-manager")
    assert gone.returncode == 1
    assert "every version of 'it-manager' is retired" in gone.stderr
    missing = trayecto("retire", "it-manager", "--version", "4", "--mode", "exit")
    assert missing.returncode == 1
    assert "has no version 4" in missing.stderr
