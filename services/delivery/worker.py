"""Sending the accepted commands: claim, check consent, render, hand off once, record.

Every command has one ``deliveries`` row (written by the inbox before any send). A
worker claims due rows (``sending``), and for each: checks the suppression list,
renders, marks ``handing_off`` just before the SMTP DATA (or the webhook POST), and
records the final state with its outcome message in one transaction. A crash while
``sending`` is retried (nothing was handed off); a crash while ``handing_off`` is never
retried: the row becomes ``in_doubt`` (reported as a failed outcome) rather than risk a
second copy in someone's inbox.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from shared import outbox
from shared.contract import DeliveryCommand, DeliveryOutcome, DeliveryStatus
from shared.db import Connection
from shared.kafka.codec import Record, encode
from shared.ratelimit import Pacer
from shared.settings import Settings
from shared.topics import DELIVERY_DLQ, DELIVERY_OUTCOMES

from .content import RenderedPayload
from .smtp import InDoubt, PermanentFailure, SmtpServer, SmtpSessions, TransientFailure
from .webhook import post_webhook

log = logging.getLogger(__name__)
OUTCOME_NAMESPACE = uuid.UUID("5d0b7f5e-8f1e-4c8e-a6a2-64656c697679")
RECOVER_EVERY_S = 10.0

Renderer = Callable[[DeliveryCommand, datetime], Any]


class LostClaim(Exception):
    """The claim expired and another worker owns the delivery now."""


@dataclass(frozen=True, slots=True)
class DeliveryTopics:
    outcomes: str = DELIVERY_OUTCOMES
    dead_letters: str = DELIVERY_DLQ


class Worker:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        render: Renderer,
        topics: DeliveryTopics,
        relay_wake: asyncio.Event,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._render = render
        self._topics = topics
        self._relay_wake = relay_wake
        self._smtp = SmtpSessions(
            SmtpServer.from_url(settings.smtp_url), timeout_s=settings.smtp_timeout_s
        )
        self._pacer = Pacer(settings.rate_limits(), default=10.0)
        self._slots = asyncio.Semaphore(settings.delivery_concurrency)
        # Fault-injection point for tests: called with the number of hand-offs so far
        # right after the server accepted one, before it is recorded as sent.
        self.after_handoff: Callable[[int], Awaitable[None]] | None = None
        self._handoffs = 0
        self._stopping = False

    def stop(self) -> None:
        """Let ``run`` return: no new claims, the sends under way finish, the rest go back.

        A send cancelled during DATA would be left in doubt (never resent), so a clean
        shutdown waits for the sends under way instead of cancelling them.
        """
        self._stopping = True

    async def run(self, poll_s: float = 0.2) -> None:
        try:
            await self._run(poll_s)
        finally:
            await self._smtp.close()

    async def _run(self, poll_s: float) -> None:
        loop = asyncio.get_running_loop()
        next_recovery = 0.0
        while not self._stopping:
            if loop.time() >= next_recovery:
                try:
                    await self.recover()
                except (OSError, asyncpg.PostgresError):
                    log.exception("recovering abandoned deliveries failed; retrying")
                next_recovery = loop.time() + RECOVER_EVERY_S
            try:
                claimed = await self.claim(self._settings.delivery_concurrency * 4)
            except (OSError, asyncpg.PostgresError):
                log.exception("claiming deliveries failed; retrying")
                claimed = []
            if claimed:
                claimed_at = loop.time()
                await asyncio.gather(*(self._send_one(c, n, claimed_at) for c, n in claimed))
            else:
                await self._smtp.expire()
                await asyncio.sleep(poll_s)

    async def claim(self, limit: int) -> list[tuple[DeliveryCommand, int]]:
        rows = await self._pool.fetch(
            """
            UPDATE deliveries d SET status = 'sending', attempts = d.attempts + 1,
                   claimed_at = now(), updated_at = now()
            FROM (SELECT command_id FROM deliveries
                  WHERE status = 'pending' AND next_attempt_at <= now()
                  ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) due
            WHERE d.command_id = due.command_id
            RETURNING d.command, d.attempts
            """,
            limit,
        )
        return [(DeliveryCommand.model_validate_json(r["command"]), r["attempts"]) for r in rows]

    async def recover(self) -> None:
        """Claims left by a worker that died: retry the unsent, report the in-doubt.

        A claim is abandoned once older than ``delivery_lease_s``; a live worker finishes
        a send well within it (SMTP and webhook calls time out after 30 s).
        """
        lease = timedelta(seconds=self._settings.delivery_lease_s)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE deliveries SET status = 'pending', updated_at = now()"
                " WHERE status = 'sending' AND claimed_at < now() - $1::interval",
                lease,
            )
            rows = await conn.fetch(
                "UPDATE deliveries SET status = 'in_doubt', updated_at = now(),"
                " reason = 'the sender stopped while handing the message off; not resent'"
                " WHERE status = 'handing_off' AND claimed_at < now() - $1::interval"
                " RETURNING command, attempts",
                lease,
            )
            for row in rows:
                command = DeliveryCommand.model_validate_json(row["command"])
                await self._outcome(
                    conn, command, DeliveryStatus.FAILED, row["attempts"], "in doubt: not resent"
                )
        if rows:
            self._relay_wake.set()

    async def _send_one(self, command: DeliveryCommand, attempt: int, claimed_at: float) -> None:
        async with self._slots:
            try:
                if self._stopping:  # claimed, not started: another worker sends it now
                    await self._release(command, attempt)
                    return
                await self._deliver(command, attempt, claimed_at)
            except (OSError, asyncpg.PostgresError):
                # The row stays claimed; recovery retries it after the lease.
                log.exception("recording delivery %s failed", command.command_id)

    async def _release(self, command: DeliveryCommand, attempt: int) -> None:
        await self._pool.execute(
            "UPDATE deliveries SET status = 'pending', attempts = attempts - 1,"
            " updated_at = now() WHERE command_id = $1 AND status = 'sending' AND attempts = $2",
            command.command_id,
            attempt,
        )

    async def _deliver(self, command: DeliveryCommand, attempt: int, claimed_at: float) -> None:
        reason = await self._suppressed(command)
        if reason is not None:
            await self._finish(command, attempt, "skipped", DeliveryStatus.SKIPPED, reason)
            return
        try:
            rendered = self._render(command, datetime.now(UTC))
        except Exception as exc:  # a template error or bad content is not retried
            await self._dead(command, attempt, f"cannot render: {exc}")
            return
        await self._pacer.wait(command.channel.value)

        async def mark_handoff() -> None:
            # Fenced by the attempt number: if this claim was given up as abandoned and
            # claimed again meanwhile, this worker must not send.
            done = await self._pool.execute(
                "UPDATE deliveries SET status = 'handing_off', updated_at = now()"
                " WHERE command_id = $1 AND status = 'sending' AND attempts = $2",
                command.command_id,
                attempt,
            )
            if done != "UPDATE 1":
                raise LostClaim(str(command.command_id))

        try:
            if isinstance(rendered, RenderedPayload):  # social posts and the webhook channel
                answer = await post_webhook(self._settings, rendered, mark_handoff)
            else:
                message = rendered.to_email_message(self._settings.smtp_sender)
                answer = await self._smtp.hand_off(message, mark_handoff)
        except TransientFailure as exc:
            await self._retry(command, attempt, str(exc))
        except PermanentFailure as exc:
            status = DeliveryStatus.BOUNCED if exc.bounced else DeliveryStatus.FAILED
            await self._finish(command, attempt, status.value, status, str(exc), bounce=exc.bounced)
        except LostClaim:
            log.warning("delivery %s was claimed again elsewhere; not sending", command.command_id)
        except InDoubt as exc:
            await self._finish(command, attempt, "in_doubt", DeliveryStatus.FAILED, str(exc))
        else:
            self._handoffs += 1
            if self.after_handoff is not None:
                await self.after_handoff(self._handoffs)
            await self._record_sent(command, attempt, answer, claimed_at)

    async def _record_sent(
        self, command: DeliveryCommand, attempt: int, answer: str, claimed_at: float
    ) -> None:
        """The server has the message: record it so, riding out a short database outage.

        Tries until half the lease has passed since the claim: recovery, which reports
        a claim older than the lease in doubt, cannot meanwhile. A longer outage leaves
        the delivery to recovery (in doubt, not resent).
        """
        loop = asyncio.get_running_loop()
        deadline = claimed_at + self._settings.delivery_lease_s / 2
        while True:
            try:
                await self._finish(command, attempt, "sent", DeliveryStatus.SENT, answer)
                return
            except (OSError, asyncpg.PostgresError):
                if loop.time() + 1 >= deadline:
                    raise
                log.warning("recording sent delivery %s failed; retrying", command.command_id)
                await asyncio.sleep(1)

    async def _suppressed(self, command: DeliveryCommand) -> str | None:
        # An erased person's suppressions are kept by the hash of the address only.
        address = command.recipient.get("email")
        reason: str | None = await self._pool.fetchval(
            "SELECT reason FROM suppressions WHERE channel = $2"
            " AND (prospect_id = $1 OR address_hash = address_hash($3)) LIMIT 1",
            command.prospect_id,
            command.channel.value,
            address if isinstance(address, str) else None,
        )
        return reason

    async def _retry(self, command: DeliveryCommand, attempt: int, reason: str) -> None:
        if attempt >= self._settings.delivery_max_attempts:
            await self._dead(command, attempt, f"gave up after {attempt} attempts: {reason}")
            return
        base = self._settings.delivery_retry_base_s * 2 ** (attempt - 1)
        delay = base * random.uniform(0.5, 1.5)  # jitter: retries of a burst spread out
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE deliveries SET status = 'pending', reason = $2, updated_at = now(),"
                " next_attempt_at = now() + $3::interval WHERE command_id = $1",
                command.command_id,
                reason[:2000],
                timedelta(seconds=delay),
            )
            await self._outcome(conn, command, DeliveryStatus.RETRIED, attempt, reason)
        self._relay_wake.set()

    async def _dead(self, command: DeliveryCommand, attempt: int, reason: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await self._set(conn, command, "dead", reason)
            await self._outcome(conn, command, DeliveryStatus.FAILED, attempt, reason)
            record = encode(command)
            headers = {**record.headers, "trayecto-dlq-reason": reason[:1000]}
            await outbox.add_records(
                conn, [(self._topics.dead_letters, Record(record.key, record.value, headers))]
            )
        self._relay_wake.set()

    async def _finish(
        self,
        command: DeliveryCommand,
        attempt: int,
        state: str,
        status: DeliveryStatus,
        reason: str,
        *,
        bounce: bool = False,
    ) -> None:
        if not bounce:  # one statement: the row's state and its outcome, atomically
            record = encode(self._outcome_message(command, status, attempt, reason))
            await self._pool.execute(
                "WITH done AS (UPDATE deliveries SET status = $2, reason = $3, updated_at = now()"
                " WHERE command_id = $1)"
                " INSERT INTO outbox (topic, key, value, headers) VALUES ($4, $5, $6, $7::jsonb)",
                command.command_id,
                state,
                reason[:2000],
                self._topics.outcomes,
                record.key,
                record.value,
                json.dumps(record.headers),
            )
            self._relay_wake.set()
            return
        async with self._pool.acquire() as conn, conn.transaction():
            await self._set(conn, command, state, reason)
            await conn.execute(
                "INSERT INTO suppressions (prospect_id, channel, reason)"
                " VALUES ($1, $2, 'hard_bounce') ON CONFLICT DO NOTHING",
                command.prospect_id,
                command.channel.value,
            )
            await self._outcome(conn, command, status, attempt, reason)
        self._relay_wake.set()

    @staticmethod
    async def _set(conn: Connection, command: DeliveryCommand, state: str, reason: str) -> None:
        await conn.execute(
            "UPDATE deliveries SET status = $2, reason = $3, updated_at = now()"
            " WHERE command_id = $1",
            command.command_id,
            state,
            reason[:2000],
        )

    async def _outcome(
        self,
        conn: Connection,
        command: DeliveryCommand,
        status: DeliveryStatus,
        attempt: int,
        reason: str | None,
    ) -> None:
        outcome = self._outcome_message(command, status, attempt, reason)
        await outbox.add(conn, [(self._topics.outcomes, outcome)])

    @staticmethod
    def _outcome_message(
        command: DeliveryCommand, status: DeliveryStatus, attempt: int, reason: str | None
    ) -> DeliveryOutcome:
        return DeliveryOutcome(
            event_id=uuid.uuid5(OUTCOME_NAMESPACE, f"{command.command_id}:{status}:{attempt}"),
            prospect_id=command.prospect_id,
            command_id=command.command_id,
            status=status,
            channel=command.channel,
            content=command.content,
            content_type=command.content_type,
            journey=command.journey,
            journey_version=command.journey_version,
            step=command.step,
            variant=command.variant,
            attempt=attempt,
            reason=reason[:2000] if reason else None,
        )
