"""One batch of inputs, one PostgreSQL transaction: the orchestrator's commit point.

In the transaction: drop event ids already processed, lock the batch's prospects,
run the engine on each input in order, then write states, timers, history, timeline
and the outbox rows (delivery commands, transitions, dead letters). Nothing is
published here: the relay publishes the outbox after the commit (see ``runtime``: the
Kafka offsets may be committed before the relay finishes, since the rows are durable
and a relay loop publishes whatever is left). A redelivered batch is a no-op; a crash
anywhere before the commit leaves no trace.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from shared import outbox
from shared.contract import (
    DeliveryCommand,
    DeliveryOutcome,
    IdentifyEvent,
    StageTransition,
    TouchpointEvent,
    WireMessage,
)
from shared.db import Connection
from shared.kafka.codec import Record, encode

from .catalog import JourneyCatalog
from .engine import Input, ProspectState, TimerRequest, decide
from .engine.identity import adopt
from .topics import OrchestratorTopics

log = logging.getLogger(__name__)
CONSUMER = "orchestrator"
REASON_HEADER = "trayecto-dlq-reason"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that cannot be processed, and why (it goes to the dead-letter topic)."""

    record: Record
    source_topic: str
    reason: str


@dataclass
class BatchResult:
    processed: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    commands: int = 0
    transitions: list[StageTransition] = field(default_factory=list)
    outbox: list[tuple[int, str, Record]] = field(default_factory=list)
    """The outbox rows the batch wrote: (id, topic, record), in id order."""


def _adopted(message: Input) -> str | None:
    """The anonymous prospect an identify hands over to its user, if any."""
    if isinstance(message, IdentifyEvent) and message.anonymous_id not in (None, ""):
        return message.anonymous_id if message.anonymous_id != message.prospect_id else None
    return None


class Processor:
    def __init__(self, catalog: JourneyCatalog, topics: OrchestratorTopics) -> None:
        self._catalog = catalog
        self._topics = topics

    async def process(
        self,
        conn: Connection,
        inputs: Sequence[tuple[Input, Record, str]],
        dead: Sequence[DeadLetter],
        now: datetime,
        *,
        settled: Sequence[Input] = (),
    ) -> BatchResult:
        """Apply a batch (input, its record, its topic) and the undecodable records.

        ``settled``: inputs the caller dead-letters itself (in ``dead``), recorded as
        processed with them, so that a redelivery of the batch skips them as duplicates.
        """
        result = BatchResult()
        dead_letters = list(dead)
        async with conn.transaction():
            if settled:
                await self._claim(conn, list(settled))
            fresh = await self._claim(conn, [message for message, _, _ in inputs])
            todo: list[tuple[Input, Record, str, str | None]] = []
            for message, record, topic in inputs:
                if message.event_id in fresh:
                    fresh.discard(message.event_id)  # a copy later in the batch is a duplicate
                    todo.append((message, record, topic, _adopted(message)))
            result.duplicates = len(inputs) - len(todo)
            # An identify also locks the anonymous prospect whose journeys it takes over.
            prospects = sorted(
                {message.prospect_id for message, _, _, _ in todo}
                | {anonymous for _, _, _, anonymous in todo if anonymous is not None}
            )
            states = await self._lock_and_load(conn, prospects)
            changed: dict[str, ProspectState] = {}
            moved: dict[UUID, str] = {}  # run id → the user it moved to
            # What the batch's decisions add up to, gathered as they are made.
            processed = 0
            commands: list[DeliveryCommand] = []
            transitions: list[StageTransition] = []
            timers: list[tuple[str, TimerRequest]] = []  # (owner, timer)
            cancelled: list[UUID] = []
            for message, record, topic, anonymous in todo:
                if anonymous is not None:
                    user, left, runs = adopt(
                        states.get(message.prospect_id), states.get(anonymous), message.prospect_id
                    )
                    if runs and user is not None and left is not None:
                        states[message.prospect_id], states[anonymous] = user, left
                        changed[message.prospect_id], changed[anonymous] = user, left
                        moved.update(dict.fromkeys(runs, message.prospect_id))
                try:
                    decision = decide(
                        states.get(message.prospect_id),
                        message.prospect_id,
                        message,
                        self._catalog.journeys,
                        self._catalog.live,
                        now,
                    )
                except Exception as exc:  # an engine bug on one input must not stop the partition
                    log.exception(
                        "input %s of %s cannot be processed", message.event_id, message.prospect_id
                    )
                    dead_letters.append(DeadLetter(record, topic, f"engine error: {exc!r}"[:1000]))
                    continue
                states[message.prospect_id] = decision.state
                changed[message.prospect_id] = decision.state
                processed += 1
                commands += decision.commands
                transitions += decision.transitions
                timers += [(message.prospect_id, timer) for timer in decision.timers]
                cancelled += decision.cancelled_timers
            await self._save_states(conn, list(changed.values()))
            if moved:
                await conn.executemany(
                    "UPDATE timers SET prospect_id = $2 WHERE run_id = $1",
                    list(moved.items()),
                )
            await self._save_timers(conn, timers, cancelled)
            await self._save_history(conn, transitions)
            await self._save_timeline(conn, [message for message, _, _, _ in todo])
            records = [(self._topics.commands, encode(c)) for c in commands]
            records += [(self._topics.transitions, encode(t)) for t in transitions]
            records += [self._dead(letter) for letter in dead_letters]
            ids = await outbox.add_records(conn, records)
        result.processed = processed
        result.dead_letters = len(dead_letters)
        result.commands = len(commands)
        result.transitions = transitions
        result.outbox = [(i, topic, r) for i, (topic, r) in zip(ids, records, strict=True)]
        return result

    async def _claim(self, conn: Connection, messages: Sequence[WireMessage]) -> set[Any]:
        rows = await conn.fetch(
            "INSERT INTO processed_events (consumer, event_id)"
            " SELECT $1, e FROM unnest($2::uuid[]) AS t(e)"
            " ON CONFLICT DO NOTHING RETURNING event_id",
            CONSUMER,
            [m.event_id for m in messages],
        )
        return {row["event_id"] for row in rows}

    async def _lock_and_load(
        self, conn: Connection, prospects: list[str]
    ) -> dict[str, ProspectState]:
        # Another instance may hold the same prospect through another topic's partition
        # (timers.fired vs touchpoints): serialise per prospect, in a fixed order.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(p, 0))"
            " FROM (SELECT unnest($1::text[]) AS p ORDER BY 1) AS ordered",
            prospects,
        )
        rows = await conn.fetch(
            "SELECT prospect_id, state FROM prospect_state WHERE prospect_id = ANY($1::text[])",
            prospects,
        )
        return {row["prospect_id"]: ProspectState.model_validate_json(row["state"]) for row in rows}

    async def _save_states(self, conn: Connection, states: list[ProspectState]) -> None:
        if not states:
            return
        await conn.execute(
            """
            INSERT INTO prospect_state (prospect_id, state, updated_at)
            SELECT p, s, now() FROM unnest($1::text[], $2::jsonb[]) AS t(p, s)
            ON CONFLICT (prospect_id) DO UPDATE SET state = EXCLUDED.state, updated_at = now()
            """,
            [s.prospect_id for s in states],
            [s.model_dump_json() for s in states],
        )

    async def _save_timers(
        self, conn: Connection, timers: list[tuple[str, TimerRequest]], cancelled: list[UUID]
    ) -> None:
        """Delete the cancelled timers, insert the new ones (each with its prospect).

        A timer set by one input of the batch and cancelled by a later one (a wait_for and
        its event, or a re-entry, in the same batch) is not stored at all. Timer ids are
        unique per visit of a step, so a cancelled id is never set again.
        """
        if cancelled:
            await conn.execute("DELETE FROM timers WHERE timer_id = ANY($1::uuid[])", cancelled)
            gone = set(cancelled)
            timers = [(owner, t) for owner, t in timers if t.timer_id not in gone]
        if not timers:
            return
        await conn.execute(
            """
            INSERT INTO timers (timer_id, prospect_id, run_id, journey, journey_version, step,
                                due_at, payload)
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::int[],
                                 $6::text[], $7::timestamptz[], $8::jsonb[])
            ON CONFLICT (timer_id) DO NOTHING
            """,
            [t.timer_id for _, t in timers],
            [owner for owner, _ in timers],
            [t.run_id for _, t in timers],
            [t.journey for _, t in timers],
            [t.journey_version for _, t in timers],
            [t.step for _, t in timers],
            [t.due_at for _, t in timers],
            [json.dumps(t.payload) for _, t in timers],
        )

    async def _save_history(self, conn: Connection, transitions: list[StageTransition]) -> None:
        if not transitions:
            return
        await conn.execute(
            """
            INSERT INTO journey_history (event_id, prospect_id, journey, journey_version, persona,
                run_id, reason, from_stage, to_stage, step, variant, cause_event_id, occurred_at,
                send_outcome, held_by, deferred_until, exit_reason)
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[],
                $6::uuid[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
                $12::uuid[], $13::timestamptz[], $14::text[], $15::text[], $16::timestamptz[],
                $17::text[])
            ON CONFLICT (event_id) DO NOTHING
            """,
            *_columns([_history_row(t) for t in transitions]),
        )

    async def _save_timeline(self, conn: Connection, messages: list[Input]) -> None:
        rows = [row for m in messages if (row := _timeline_row(m)) is not None]
        if not rows:
            return
        await conn.execute(
            """
            INSERT INTO prospect_timeline (event_id, prospect_id, kind, type, name, channel,
                                           occurred_at, detail)
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                                 $6::text[], $7::timestamptz[], $8::jsonb[])
            ON CONFLICT (event_id) DO NOTHING
            """,
            *_columns(rows),
        )

    def _dead(self, letter: DeadLetter) -> tuple[str, Record]:
        headers = {
            **letter.record.headers,
            REASON_HEADER: letter.reason,
            "trayecto-dlq-source-topic": letter.source_topic,
        }
        return self._topics.dead_letters, Record(letter.record.key, letter.record.value, headers)


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows → one list per column, for ``unnest`` inserts."""
    return [list(column) for column in zip(*rows, strict=True)]


def _history_row(t: StageTransition) -> tuple[Any, ...]:
    return (
        t.event_id, t.prospect_id, t.journey, t.journey_version, t.persona, t.run_id, t.reason,
        t.from_stage, t.to_stage, t.step, t.variant, t.cause_event_id, t.occurred_at,
        t.send_outcome, t.held_by, t.deferred_until, t.exit_reason,
    )  # fmt: skip


def _timeline_row(message: Input) -> tuple[Any, ...] | None:
    detail: dict[str, Any]
    if isinstance(message, TouchpointEvent):
        detail = {
            "properties": message.properties,
            "campaign": message.campaign.model_dump(exclude_none=True)
            if message.campaign
            else None,
            "emotion": message.emotion,
            "source": message.source,
        }
        return (
            message.event_id, message.prospect_id, "touchpoint", message.type.value,
            message.name, message.channel.value, message.occurred_at,
            json.dumps(detail, default=str),
        )  # fmt: skip
    if isinstance(message, DeliveryOutcome):
        detail = {"journey": message.journey, "step": message.step, "reason": message.reason}
        return (
            message.event_id, message.prospect_id, "delivery", message.status.value,
            message.content, message.channel.value, message.occurred_at, json.dumps(detail),
        )  # fmt: skip
    if isinstance(message, IdentifyEvent):
        detail = {
            "traits": sorted(message.traits),
            "anonymous_id": message.anonymous_id,
        }
        return (
            message.event_id, message.prospect_id, "identify", None, None, None,
            message.occurred_at, json.dumps(detail),
        )  # fmt: skip
    return None  # timers are internal: not part of the timeline
