"""Claiming with little room: each channel's due rows up to its room, oldest first, by index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from services.delivery import worker
from shared.contract import Channel, ContentType, DeliveryCommand
from shared.db import migrate

from .conftest import command

T0 = datetime.now(UTC) - timedelta(minutes=5)


async def _insert(conn: asyncpg.Connection, rows: list[tuple[DeliveryCommand, datetime]]) -> None:
    await conn.executemany(
        "INSERT INTO deliveries (command_id, prospect_id, command, channel, content,"
        " next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6)",
        [
            (c.command_id, c.prospect_id, c.model_dump_json(), c.channel.value, c.content, due)
            for c, due in rows
        ],
    )


async def test_each_channel_is_claimed_up_to_its_room_oldest_first(
    fresh_database: str,
) -> None:
    await migrate(fresh_database)
    emails = [command("it-welcome", ContentType.EMAIL) for _ in range(50)]
    posts = [
        command("it-webinar-social", ContentType.SOCIAL_POST, channel=Channel.WEBHOOK)
        for _ in range(3)
    ]
    later = command("it-webinar-social", ContentType.SOCIAL_POST, channel=Channel.WEBHOOK)
    conn = await asyncpg.connect(fresh_database)
    try:
        # The email backlog is older than every webhook post: a plain claim takes emails.
        await _insert(conn, [(c, T0 + timedelta(seconds=i)) for i, c in enumerate(emails)])
        newer = T0 + timedelta(minutes=2)
        await _insert(conn, [(c, newer - timedelta(seconds=i)) for i, c in enumerate(posts)])
        await _insert(conn, [(later, datetime.now(UTC) + timedelta(hours=1))])  # not due yet

        others = [channel.value for channel in Channel if channel is not Channel.EMAIL]
        rooms = [10] * len(others)  # and no room at all for email

        async def claim(limit: int, room: list[int]) -> set[object]:
            rows = await conn.fetch(worker._CLAIM_FROM, limit, others, room)
            assert {r["attempts"] for r in rows} == {1}
            return {DeliveryCommand.model_validate_json(r["command"]).command_id for r in rows}

        webhook = [1 if channel == Channel.WEBHOOK.value else 10 for channel in others]
        assert await claim(10, webhook) == {posts[2].command_id}  # the oldest, room for one
        assert await claim(1, rooms) == {posts[1].command_id}  # the next, within the limit
        assert await claim(10, rooms) == {posts[0].command_id}  # then what is due, only that
        statuses = await conn.fetch(
            "SELECT channel, status, count(*) AS n FROM deliveries GROUP BY 1, 2 ORDER BY 1, 2"
        )
        assert [tuple(r) for r in statuses] == [
            ("email", "pending", 50),
            ("webhook", "pending", 1),
            ("webhook", "sending", 3),
        ]

        # Each channel through its own index: the backlog is never walked past.
        await conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            r[0] for r in await conn.fetch(f"EXPLAIN {worker._CLAIM_FROM}", 10, others, rooms)
        )
        assert "deliveries_due_by_channel" in plan, plan
    finally:
        await conn.close()
