"""``delivery.commands`` → one ``deliveries`` row per command id, then offsets.

Storing the command is all the consumer does: a redelivered command hits the primary
key and changes nothing, and the workers send from the table. A record that is not a
valid command goes to ``delivery.dlq`` (through the outbox, in the same transaction).
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from shared import outbox
from shared.contract import DeliveryCommand
from shared.kafka.codec import Record, UnknownMessageType, decode
from shared.kafka.consumer import Batch, consume_batches
from shared.settings import Settings
from shared.topics import DELIVERY_COMMANDS

from .worker import DeliveryTopics

log = logging.getLogger(__name__)
GROUP = "trayecto-delivery"


async def store_batch(
    pool: asyncpg.Pool, records: list[ConsumerRecord[bytes, bytes]], topics: DeliveryTopics
) -> int:
    """Store the commands of a batch; returns how many were new."""
    commands: list[DeliveryCommand] = []
    dead: list[tuple[str, Record]] = []
    for r in records:
        headers = {k: v.decode(errors="replace") for k, v in r.headers}
        try:
            message = decode(r.value or b"", headers)
            if not isinstance(message, DeliveryCommand):
                raise UnknownMessageType(
                    f"expected a DeliveryCommand, got {type(message).__name__}"
                )
        except (UnknownMessageType, ValidationError, ValueError) as exc:
            reason = {"trayecto-dlq-reason": f"cannot decode: {exc}"[:1000]}
            dead.append(
                (topics.dead_letters, Record(r.key or b"", r.value or b"", {**headers, **reason}))
            )
            continue
        commands.append(message)
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            """
            INSERT INTO deliveries (command_id, prospect_id, command, channel, content)
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::text[], $5::text[])
            ON CONFLICT (command_id) DO NOTHING
            RETURNING command_id
            """,
            [c.command_id for c in commands],
            [c.prospect_id for c in commands],
            [c.model_dump_json() for c in commands],
            [c.channel.value for c in commands],
            [c.content for c in commands],
        )
        await outbox.add_records(conn, dead)
    return len(rows)


async def consume_forever(
    settings: Settings,
    pool: asyncpg.Pool,
    topics: DeliveryTopics,
    wake: asyncio.Event,
    *,
    commands_topic: str = DELIVERY_COMMANDS,
    group: str = GROUP,
    registry: CollectorRegistry | None = None,
) -> None:
    async def handle(records: Batch) -> None:
        while True:
            try:
                await store_batch(pool, records, topics)
                break
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.exception("storing commands failed; retrying in 1 s")
                await asyncio.sleep(1)
        wake.set()

    await consume_batches(
        settings,
        [commands_topic],
        handle,
        group=group,
        client_id="delivery",
        registry=registry,
    )
