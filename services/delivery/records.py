"""The writes of the send path: the hand-off mark (with the suppression check) and the
outcome (with its outbox row), each batched across concurrent sends (``shared.batching``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from shared.batching import Batched
from shared.contract import DeliveryCommand
from shared.kafka.codec import Record

from .smtp import Withdrawn


def _suppression(channel: str, prospect: str, address: str) -> str:
    """The reason the recipient is suppressed on the channel (no row: not suppressed).
    An erased person's suppressions are kept by the hash of the address only."""
    return f"""
        SELECT reason FROM suppressions WHERE channel = {channel}
           AND (prospect_id = {prospect} OR address_hash = (SELECT address_hash({address}::text)))
        LIMIT 1"""


# One row per mark: the suppression of the recipient on the channel if there is one
# (then the row is not marked), and whether the row was marked. A suppression committed
# before the statement started stops the send. Fenced by the attempt number: a claim
# given up as abandoned and claimed again meanwhile is not this worker's to send. The
# lease of a row being handed off runs from its mark (claimed_at), not from its claim.
_MARK = f"""
    WITH suppressed AS ({_suppression("$3", "$4", "$5")}
    ), marked AS (
        UPDATE deliveries SET status = 'handing_off', claimed_at = now(), updated_at = now()
        WHERE command_id = $1 AND status = 'sending' AND attempts = $2
          AND NOT EXISTS (SELECT FROM suppressed)
        RETURNING command_id
    )
    SELECT (SELECT reason FROM suppressed) AS suppressed, EXISTS (SELECT FROM marked) AS marked
"""
_SUPPRESSED = _suppression("$1", "$2", "$3")
# The row's state and its outcome message, atomically: one statement.
_FINISH = """
    WITH done AS (
        UPDATE deliveries SET status = $2, reason = $3, updated_at = now() WHERE command_id = $1
    )
    INSERT INTO outbox (topic, key, value, headers) VALUES ($4, $5, $6, $7::json)
"""
MARKS_IN_FLIGHT = 4
# What a batch that fails for one item's data raises: that item fails alone.
_ITEM_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)


class LostClaim(Withdrawn):
    """The claim expired and another worker owns the delivery now."""


class Suppressed(Withdrawn):
    """The recipient is suppressed on the channel: not sent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Finish:
    command_id: uuid.UUID
    state: str
    reason: str
    outcome: Record


class SendRecords:
    """A batch of marks or outcomes is one round trip and one transaction: its statements
    go in one write (asyncpg's ``fetchmany``/``executemany``, atomic), each a simple
    statement PostgreSQL plans once per connection."""

    def __init__(self, pool: asyncpg.Pool, outcomes_topic: str) -> None:
        self._pool = pool
        self._topic = outcomes_topic
        # A send waits for its mark before DATA: a few batches of marks may be on their
        # way at once. Outcomes are recorded after the send, and batch up more.
        self._marks = Batched(self._mark_batch, alone=_ITEM_ERRORS, in_flight=MARKS_IN_FLIGHT)
        self._finishes = Batched(self._finish_batch, alone=_ITEM_ERRORS)

    async def mark_handoff(self, command: DeliveryCommand, attempt: int) -> None:
        """Marks the claimed row ``handing_off``; raises Suppressed or LostClaim instead."""
        suppressed, marked = await self._marks.submit((command, attempt))
        if suppressed is not None:
            raise Suppressed(suppressed)
        if not marked:
            raise LostClaim(str(command.command_id))

    async def suppression(self, command: DeliveryCommand) -> str | None:
        """Why the command's recipient is suppressed on its channel, if they are."""
        reason: str | None = await self._pool.fetchval(_SUPPRESSED, *_recipient(command))
        return reason

    async def finish(self, command_id: uuid.UUID, state: str, reason: str, outcome: Record) -> None:
        """The row's final state and its outcome's outbox row, atomically."""
        await self._finishes.submit(_Finish(command_id, state, reason, outcome))

    async def _mark_batch(
        self, marks: Sequence[tuple[DeliveryCommand, int]]
    ) -> list[tuple[str | None, bool]]:
        rows = await self._pool.fetchmany(
            _MARK, [(c.command_id, n, *_recipient(c)) for c, n in marks]
        )
        return [(row["suppressed"], row["marked"]) for row in rows]

    async def _finish_batch(self, finishes: Sequence[_Finish]) -> list[None]:
        await self._pool.executemany(
            _FINISH,
            [
                (
                    f.command_id,
                    f.state,
                    f.reason,
                    self._topic,
                    f.outcome.key,
                    f.outcome.value,
                    json.dumps(f.outcome.headers),
                )
                for f in finishes
            ],
        )
        return [None] * len(finishes)


def _recipient(command: DeliveryCommand) -> tuple[str, str, str | None]:
    """The parameters of :func:`_suppression`: channel, prospect and email address."""
    address = command.recipient.get("email")
    return command.channel.value, command.prospect_id, address if isinstance(address, str) else None
