"""Sending the accepted commands: claim, render, check consent, hand off once, record.

Every command has one ``deliveries`` row (written by the inbox before any send). A
worker claims due rows (``sending``) and renders them ahead into a short queue. Each of
its ``delivery_concurrency`` senders takes the next message, checks the suppression list
and marks the row ``handing_off`` in one statement just before the SMTP DATA (or the
webhook POST), and goes on to the next message while the final state is recorded with
its outcome message in one statement. A crash while ``sending`` is retried (nothing was
handed off); a crash while ``handing_off`` is never retried: the row becomes
``in_doubt`` (reported as a failed outcome) rather than risk a second copy in someone's
inbox.

The marks and the outcomes of concurrent sends go to PostgreSQL together (``records``):
each send still waits for its own mark before DATA.

Each channel keeps its own pace (``TRAYECTO_DELIVERY_RATE_LIMITS``), counted when a send
starts: claimed messages wait in one queue per channel, and a free sender takes the
oldest message of a channel whose turn has come, so a paced channel's backlog takes no
sender and holds no other channel back. A channel is claimed only as far ahead as its
pace lets its messages out within a quarter of the claim lease (and ``PACING_AHEAD`` at
most), so no claimed message waits anywhere near the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from shared import outbox
from shared.contract import Channel, DeliveryCommand, DeliveryOutcome, DeliveryStatus
from shared.db import Connection
from shared.kafka.codec import Record, encode
from shared.ratelimit import Pacer
from shared.settings import Settings
from shared.topics import DELIVERY_DLQ, DELIVERY_OUTCOMES

from .content import RenderedPayload
from .records import SendRecords, Suppressed
from .smtp import (
    Envelope,
    InDoubt,
    PermanentFailure,
    SmtpServer,
    SmtpSessions,
    TransientFailure,
    Withdrawn,
)
from .webhook import post_webhook

log = logging.getLogger(__name__)
OUTCOME_NAMESPACE = uuid.UUID("5d0b7f5e-8f1e-4c8e-a6a2-64656c697679")
RECOVER_EVERY_S = 10.0
PACING_AHEAD = 32
"""Claimed messages of one channel that may wait for a sender (at least a claim batch);
fewer for a slow channel: what its pace lets out within a quarter of the lease."""
DEFAULT_RATE = 10.0
"""Messages per second of a channel ``TRAYECTO_DELIVERY_RATE_LIMITS`` does not name."""

Renderer = Callable[[DeliveryCommand, datetime], Any]


class _Unrenderable(Exception):
    """The command cannot be rendered (its content, a template): not worth retrying."""


_CLAIM = """
    UPDATE deliveries d SET status = 'sending', attempts = d.attempts + 1,
           claimed_at = now(), updated_at = now()
    FROM (SELECT command_id FROM deliveries
          WHERE status = 'pending' AND next_attempt_at <= now()
          ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) due
    WHERE d.command_id = due.command_id
    RETURNING d.command, d.attempts
"""
_CLAIM_FROM = """
    UPDATE deliveries d SET status = 'sending', attempts = d.attempts + 1,
           claimed_at = now(), updated_at = now()
    FROM (SELECT due.command_id
          FROM unnest($2::text[], $3::int[]) AS c(channel, room)
              CROSS JOIN LATERAL (
                  SELECT command_id, next_attempt_at FROM deliveries
                  WHERE status = 'pending' AND channel = c.channel AND next_attempt_at <= now()
                  ORDER BY next_attempt_at LIMIT c.room FOR UPDATE SKIP LOCKED) due
          ORDER BY due.next_attempt_at LIMIT $1) due
    WHERE d.command_id = due.command_id
    RETURNING d.command, d.attempts
"""
"""The claim while some channels have little room: up to each channel's room of its due
rows, channel by channel (``deliveries_due_by_channel``), so a paced backlog is never
walked past."""
_CHANNELS = tuple(channel.value for channel in Channel)


def retry_delay(
    base_s: float, attempt: int, uniform: Callable[[float, float], float] = random.uniform
) -> float:
    """Seconds before retrying after failed ``attempt`` (1 for the first): ``base_s``
    doubled per attempt, times a jitter factor in [0.5, 1.5] so that the retries of a
    burst spread out instead of hitting the server together again."""
    return base_s * 2.0 ** (attempt - 1) * uniform(0.5, 1.5)


@dataclass(frozen=True, slots=True)
class _Claimed:
    """A claimed delivery, rendered: its envelope or payload, or why it cannot be."""

    command: DeliveryCommand
    attempt: int
    message: Envelope | RenderedPayload | Exception


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
        self._sender = settings.smtp_sender
        self._pacer = Pacer(settings.rate_limits(), default=DEFAULT_RATE)
        # Claimed messages waiting for a sender, by channel, in claim order (with their
        # place in the claims: a sender takes the oldest whose channel has its turn), and
        # those that will not be sent (not paced).
        self._waiting: dict[str, deque[tuple[int, _Claimed]]] = {}
        self._unsent: deque[_Claimed] = deque()
        self._claims = 0
        self._arrived = asyncio.Event()  # for the senders: new messages, or stopping
        self._room = asyncio.Event()  # for the claims: a message left its channel's queue
        self._records = SendRecords(pool, topics.outcomes)
        self._recording: set[asyncio.Task[None]] = set()
        self._crashed: BaseException | None = None
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
        """``delivery_concurrency`` senders, each handing off one message after the other
        as an SMTP client would, take the claimed messages, rendered ahead, from their
        channels' queues: a sender done with one message starts the next at once."""
        senders = [
            asyncio.create_task(self._send_from())
            for _ in range(self._settings.delivery_concurrency)
        ]
        try:
            await self._fill(poll_s)
            await self._give_back_waiting()  # stopping: what waits goes back
            self._arrived.set()
            await asyncio.gather(*senders)  # the sends under way finish
        except asyncio.CancelledError:
            for recording in self._recording:
                recording.cancel()
            raise
        finally:
            for sender in senders:
                sender.cancel()
            await asyncio.gather(*senders, return_exceptions=True)
            if self._recording:
                await asyncio.wait(self._recording)
        if self._crashed is not None:
            raise self._crashed

    async def _fill(self, poll_s: float) -> None:
        """Claims and renders the due deliveries; recovers abandoned claims."""
        loop = asyncio.get_running_loop()
        batch = self._settings.delivery_concurrency * 2
        next_recovery = 0.0
        while not self._stopping:
            if loop.time() >= next_recovery:
                try:
                    await self.recover()
                except (OSError, asyncpg.PostgresError):
                    log.exception("recovering abandoned deliveries failed; retrying")
                next_recovery = loop.time() + RECOVER_EVERY_S
            self._room.clear()  # before the rooms are counted: no wake-up is lost
            try:
                claimed = await self.claim(batch, self._rooms(batch))
            except (OSError, asyncpg.PostgresError):
                log.exception("claiming deliveries failed; retrying")
                claimed = []
            if not claimed:
                if not self._unsent and not any(self._waiting.values()):
                    await self._smtp.expire()
                # Nothing due, or no room: claim again when a message leaves a queue.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), poll_s)
                continue
            for index, (command, attempt) in enumerate(claimed):
                if self._stopping:  # claimed, not started: another worker sends them now
                    for left in claimed[index:]:
                        await self._give_back(*left)
                    break
                claim = _Claimed(command, attempt, self._prepare(command))
                if isinstance(claim.message, Exception):
                    self._unsent.append(claim)  # not sent: takes no turn
                else:
                    self._claims += 1
                    queue = self._waiting.setdefault(command.channel.value, deque())
                    queue.append((self._claims, claim))
            self._arrived.set()

    def _rooms(self, batch: int) -> dict[str, int] | None:
        """How many more messages of each channel may be claimed: None when every channel
        has room for a whole batch (the plain claim)."""
        quarter = self._settings.delivery_lease_s / 4
        rooms = {}
        for channel in _CHANNELS:
            # The turns its pace gives within a quarter of the lease, from its next one.
            turns = 1 + int((quarter - self._pacer.delay(channel)) * self._pacer.rate(channel))
            ahead = min(max(PACING_AHEAD, batch), turns)
            rooms[channel] = max(0, ahead - len(self._waiting.get(channel, ())))
        return None if min(rooms.values()) >= batch else rooms

    async def _next(self) -> _Claimed | None:
        """The next message for a free sender: one that will not be sent, else the oldest
        waiting one whose channel has its turn now (the turn is taken). Waits for one;
        None once stopping with none left."""
        while True:
            if self._unsent:
                return self._unsent.popleft()
            oldest: str | None = None
            wait: float | None = None
            for channel, queue in self._waiting.items():
                if not queue:
                    continue
                delay = self._pacer.delay(channel)
                if delay > 0:
                    wait = delay if wait is None else min(wait, delay)
                elif oldest is None or queue[0][0] < self._waiting[oldest][0][0]:
                    oldest = channel
            if oldest is not None:
                if self._pacer.ready(oldest):
                    self._room.set()
                    return self._waiting[oldest].popleft()[1]
                wait = 0.001  # another sender took the turn first
            if self._stopping and wait is None:
                return None
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), wait)

    async def _give_back_waiting(self) -> None:
        """Stopping: the claimed messages no sender took go back to be claimed again."""
        waiting = [claim for queue in self._waiting.values() for _, claim in queue]
        waiting += self._unsent
        for queue in self._waiting.values():
            queue.clear()
        self._unsent.clear()
        for claim in waiting:
            await self._give_back(claim.command, claim.attempt)

    async def _send_from(self) -> None:
        while (claimed := await self._next()) is not None:
            try:
                if self._stopping:
                    await self._give_back(claimed.command, claimed.attempt)
                else:
                    await self._send(claimed)
            except Exception as exc:
                self._crash(exc)

    def _crash(self, exc: Exception) -> None:
        """Something unforeseen: stop claiming and let ``run`` raise it once the queued
        deliveries are given back (the process then exits, see ``supervised``)."""
        self._crashed = self._crashed or exc
        self._stopping = True

    async def _send(self, claimed: _Claimed) -> None:
        command, attempt = claimed.command, claimed.attempt
        try:
            result, marked_at = await self._hand_off(command, attempt, claimed.message)
        except (OSError, asyncpg.PostgresError):
            # The row stays claimed; recovery retries it after the lease.
            log.exception("handing off delivery %s failed", command.command_id)
            return
        # Recording what happened needs no sender: the next message starts meanwhile.
        recording = asyncio.create_task(self._record_safely(claimed, result, marked_at))
        self._recording.add(recording)
        recording.add_done_callback(self._recording.discard)

    async def _record_safely(
        self, claimed: _Claimed, result: str | Exception, marked_at: float
    ) -> None:
        try:
            await self._record(claimed.command, claimed.attempt, result, marked_at)
        except (OSError, asyncpg.PostgresError):
            # The row stays claimed; recovery retries it after the lease.
            log.exception("recording delivery %s failed", claimed.command.command_id)
        except Exception as exc:
            self._crash(exc)

    async def _give_back(self, command: DeliveryCommand, attempt: int) -> None:
        try:
            await self._release(command, attempt)
        except (OSError, asyncpg.PostgresError):
            log.exception("giving back delivery %s failed", command.command_id)

    async def claim(
        self, limit: int, rooms: Mapping[str, int] | None = None
    ) -> list[tuple[DeliveryCommand, int]]:
        """Claims up to ``limit`` due deliveries, oldest first; with ``rooms``, at most
        that many of each channel (none of a channel it does not name)."""
        if rooms is None:
            rows = await self._pool.fetch(_CLAIM, limit)
        else:
            open_rooms = {channel: room for channel, room in rooms.items() if room > 0}
            if not open_rooms:
                return []
            rows = await self._pool.fetch(
                _CLAIM_FROM, limit, list(open_rooms), list(open_rooms.values())
            )
        return [(DeliveryCommand.model_validate_json(r["command"]), r["attempts"]) for r in rows]

    async def recover(self) -> None:
        """Claims left by a worker that died: retry the unsent, report the in-doubt.

        A claim is abandoned once older than ``delivery_lease_s``, counted from the claim
        for a row not yet handed off and from the hand-off mark for one being handed off
        (a row may wait for its channel's pace between the two); a live worker finishes a
        hand-off well within it (SMTP and webhook calls time out after 30 s).
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

    async def _release(self, command: DeliveryCommand, attempt: int) -> None:
        await self._pool.execute(
            "UPDATE deliveries SET status = 'pending', attempts = attempts - 1,"
            " updated_at = now() WHERE command_id = $1 AND status = 'sending' AND attempts = $2",
            command.command_id,
            attempt,
        )

    def _prepare(self, command: DeliveryCommand) -> Envelope | RenderedPayload | Exception:
        """What to hand off for ``command``: the email's envelope, the webhook's payload,
        or why it cannot be rendered."""
        try:
            rendered = self._render(command, datetime.now(UTC))
        except Exception as exc:  # a template error or bad content is not retried
            return _Unrenderable(f"cannot render: {exc}")
        if isinstance(rendered, RenderedPayload):  # social posts and the webhook channel
            return rendered
        return Envelope.of(rendered, self._sender)

    async def _hand_off(
        self,
        command: DeliveryCommand,
        attempt: int,
        message: Envelope | RenderedPayload | Exception,
    ) -> tuple[str | Exception, float]:
        """The server's answer, or why the message was not handed off (or may not have
        been); and when the hand-off mark was asked for (the loop's clock; its lease runs
        from then). Nothing is recorded yet but the hand-off mark."""
        loop = asyncio.get_running_loop()
        marked_at = loop.time()
        if isinstance(message, Exception):
            return message, marked_at

        async def mark_handoff() -> None:
            nonlocal marked_at
            marked_at = loop.time()
            await self._records.mark_handoff(command, attempt)

        try:
            if isinstance(message, RenderedPayload):
                answer = await post_webhook(self._settings, message, mark_handoff)
            else:
                answer = await self._smtp.hand_off(message, mark_handoff)
        except (Withdrawn, TransientFailure, PermanentFailure, InDoubt) as exc:
            return exc, marked_at
        self._handoffs += 1
        if self.after_handoff is not None:
            await self.after_handoff(self._handoffs)
        return answer, marked_at

    async def _record(
        self, command: DeliveryCommand, attempt: int, result: str | Exception, marked_at: float
    ) -> None:
        match result:
            case str():
                await self._record_sent(command, attempt, result, marked_at)
            case Suppressed():
                await self._finish(
                    command, attempt, "skipped", DeliveryStatus.SKIPPED, result.reason
                )
            case TransientFailure():
                await self._retry(command, attempt, str(result))
            case PermanentFailure():
                status = DeliveryStatus.BOUNCED if result.bounced else DeliveryStatus.FAILED
                bounce = result.bounced
                await self._finish(
                    command, attempt, status.value, status, str(result), bounce=bounce
                )
            case InDoubt():
                await self._finish(command, attempt, "in_doubt", DeliveryStatus.FAILED, str(result))
            case _Unrenderable():
                # A suppressed recipient is skipped whatever the content: "unsubscribed"
                # says more than a template error about a message that was never due.
                reason = await self._records.suppression(command)
                if reason is not None:
                    await self._finish(command, attempt, "skipped", DeliveryStatus.SKIPPED, reason)
                else:
                    await self._dead(command, attempt, str(result))
            case _:  # the claim was lost (Withdrawn)
                log.warning(
                    "delivery %s was claimed again elsewhere; not sending", command.command_id
                )

    async def _record_sent(
        self, command: DeliveryCommand, attempt: int, answer: str, marked_at: float
    ) -> None:
        """The server has the message: record it so, riding out a short database outage.

        Tries until half the lease has passed since the hand-off mark: recovery, which
        reports a hand-off older than the lease in doubt, cannot meanwhile. A longer
        outage leaves the delivery to recovery (in doubt, not resent).
        """
        loop = asyncio.get_running_loop()
        deadline = marked_at + self._settings.delivery_lease_s / 2
        while True:
            try:
                await self._finish(command, attempt, "sent", DeliveryStatus.SENT, answer)
                return
            except (OSError, asyncpg.PostgresError):
                if loop.time() + 1 >= deadline:
                    raise
                log.warning("recording sent delivery %s failed; retrying", command.command_id)
                await asyncio.sleep(1)

    async def _retry(self, command: DeliveryCommand, attempt: int, reason: str) -> None:
        if attempt >= self._settings.delivery_max_attempts:
            await self._dead(command, attempt, f"gave up after {attempt} attempts: {reason}")
            return
        delay = retry_delay(self._settings.delivery_retry_base_s, attempt)
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
        if not bounce:
            record = encode(self._outcome_message(command, status, attempt, reason))
            await self._records.finish(command.command_id, state, reason[:2000], record)
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
