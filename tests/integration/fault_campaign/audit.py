"""After the flow: wait until the platform is idle, then account for every effect.

Everything is read back from where it ended up (the topics from the beginning,
PostgreSQL, the SMTP server's counts, the metrics service's ``/metrics``) and compared
with what should be there: each accepted event processed, each transition and delivery
command once, each recorded send received once, each counter equal to what the topics
hold. A *copy* is a second record of the same event id on a topic (a producer that died
after the broker's ack and before recording it publishes again); consumers drop copies
by id, so they are reported, not counted as duplicates. A *duplicate* is an effect that
happened twice: two ids for one logical transition or send, a message received twice,
a counter above what the topics hold.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from services.ingest.normalise import event_id
from services.orchestrator.topics import OrchestratorTopics
from shared.contract import (
    DeliveryCommand,
    DeliveryOutcome,
    DeliveryStatus,
    StageTransition,
    TouchpointEvent,
    WireMessage,
)
from shared.kafka import decode, topic_partitions
from shared.settings import Settings

from .client import Ledger
from .server import group

Position = tuple[str, int]
Series = tuple[str, frozenset[tuple[str, str]]]
CHECKED_SERIES = frozenset(
    {
        "trayecto_journey_entries_total",
        "trayecto_journey_exits_total",
        "trayecto_stage_entries_total",
        "trayecto_step_entries_total",
        "trayecto_touchpoints_total",
        "trayecto_deliveries_total",
    }
)
"""The counters compared with the topics (the others are worked out from the same messages)."""
_MESSAGE_ID = re.compile(r"^<([0-9a-f-]{36})@trayecto>$")
UNSETTLED = ("pending", "sending", "handing_off")


# ------------------------------------------------------------------------- reading


async def end_offsets(settings: Settings, topics: Iterable[str]) -> dict[Position, int]:
    counts = await topic_partitions(settings, topics)
    partitions = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap.split(","))
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return {(tp.topic, tp.partition): int(offset) for tp, offset in ends.items()}


async def committed(settings: Settings, group_id: str) -> dict[Position, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap.split(","))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_id)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): int(meta.offset) for tp, meta in offsets.items()}


async def read_topic(settings: Settings, topic: str) -> list[WireMessage]:
    """Every record of the topic, from the beginning to its current end, decoded."""
    ends = {p: n for (t, p), n in (await end_offsets(settings, [topic])).items() if n > 0}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[WireMessage] = []
    try:
        partitions = [TopicPartition(topic, p) for p in ends]
        if not partitions:
            return found
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        done: set[int] = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while len(done) < len(ends):
            assert loop.time() < deadline, f"could not read {topic} to its end"
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for r in records:
                    headers = {k: v.decode() for k, v in r.headers}
                    found.append(decode(r.value or b"", headers))
                    if r.offset + 1 >= ends[tp.partition]:
                        done.add(tp.partition)
    finally:
        await consumer.stop()
    return found


async def _fetch(dsn: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


# ------------------------------------------------------------------------- draining


async def pending_work(settings: Settings, dsn: str, prefix: str) -> dict[str, int]:
    """What is still to be done; empty when the platform is idle."""
    topics = OrchestratorTopics.prefixed(prefix)
    [row] = await _fetch(
        dsn,
        """
        SELECT (SELECT count(*) FROM timers) AS timers,
               (SELECT count(*) FROM outbox WHERE published_at IS NULL) AS outbox,
               (SELECT count(*) FROM deliveries WHERE status = ANY($1::text[])) AS deliveries
        """,
        list(UNSETTLED),
    )
    left = {name: int(row[name]) for name in ("timers", "outbox", "deliveries")}
    ends = await end_offsets(settings, topics.all)
    consumers = {
        "orchestrator": (await committed(settings, group(prefix, "orchestrator")), topics.inputs),
        "delivery": (await committed(settings, group(prefix, "delivery")), [topics.commands]),
    }
    for name, (done, inputs) in consumers.items():
        left[f"{name} lag"] = sum(
            n - done.get(position, 0) for position, n in ends.items() if position[0] in inputs
        )
    counted = {
        (r["topic"], r["partition"]): r["next_offset"]
        for r in await _fetch(dsn, "SELECT topic, partition, next_offset FROM metric_offsets")
    }
    watched = (topics.transitions, topics.touchpoints, topics.outcomes)
    left["metrics lag"] = sum(
        n - counted.get(position, 0) for position, n in ends.items() if position[0] in watched
    )
    return {name: n for name, n in left.items() if n}


async def wait_until_idle(
    settings: Settings, dsn: str, prefix: str, timeout_s: float
) -> dict[str, int]:
    """Poll until nothing is left twice in a row; returns what was left at the timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    idle_once = False
    while True:
        left = await pending_work(settings, dsn, prefix)
        if not left and idle_once:
            return left
        idle_once = not left
        if loop.time() > deadline:
            return left
        await asyncio.sleep(1.0)


# ------------------------------------------------------------------------- figures


@dataclass
class Figures:
    """One run of the campaign, as ``docs/reliability.md`` reports it."""

    seed: int
    faults: dict[str, int]
    """SIGKILLs per service."""
    kills: list[str]
    """Each SIGKILL in order: ``service@seconds`` since the flow started."""
    flow_s: float
    """How long the flow ran."""
    idle_s: float
    """How long the platform took to be idle after the flow."""
    events_sent: int
    accepted: int
    ingested: int
    accounted: int
    effects: dict[str, int] = field(default_factory=dict)
    """Distinct effects: transitions, delivery commands, emails handed off..."""
    duplicates: dict[str, int] = field(default_factory=dict)
    """Effects that happened more than once (each must be 0)."""
    lost: dict[str, int] = field(default_factory=dict)
    """Effects that should have happened and did not (each must be 0)."""
    copies: dict[str, int] = field(default_factory=dict)
    """Second records of an event id per topic, dropped by id by their consumers."""
    steps: dict[str, int] = field(default_factory=dict)
    """Runs entering each step of the journey: the paths the flow took."""
    retries: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _distinct(messages: Iterable[WireMessage]) -> tuple[dict[uuid.UUID, WireMessage], int]:
    """The first record of each event id, and how many copies came after it."""
    first: dict[uuid.UUID, WireMessage] = {}
    copies = 0
    for m in messages:
        if m.event_id in first:
            copies += 1
        else:
            first[m.event_id] = m
    return first, copies


def _extra(keys: Iterable[object]) -> int:
    """How many keys repeat an earlier one."""
    counts = Counter(keys)
    return sum(n - 1 for n in counts.values())


_TRANSITION = ("run_id", "reason", "from_stage", "to_stage", "step")
"""One logical transition: the campaign's journey has no loops and no way back."""


def _published_key(t: StageTransition) -> tuple[object, ...]:
    return tuple(getattr(t, k) for k in _TRANSITION)


def _recorded_key(row: asyncpg.Record) -> tuple[object, ...]:
    return tuple(row[k] for k in _TRANSITION)


def expected_series(
    transitions: Iterable[StageTransition],
    touchpoints: Iterable[TouchpointEvent],
    outcomes: Iterable[DeliveryOutcome],
) -> Counter[Series]:
    """Counters worked out from the distinct messages of the topics."""
    expected: Counter[Series] = Counter()

    def add(name: str, **labels: str) -> None:
        expected[(name, frozenset(labels.items()))] += 1

    for t in transitions:
        run = {"journey": t.journey, "version": str(t.journey_version), "persona": t.persona}
        if t.reason == "step":
            add("trayecto_step_entries_total", **run, step=t.step or "", variant=t.variant or "")
            continue
        if t.reason == "entered":
            add("trayecto_journey_entries_total", **run)
        if t.reason == "exited":
            add("trayecto_journey_exits_total", **run, stage=t.from_stage or "")
        if t.to_stage is not None and t.to_stage != t.from_stage:
            add("trayecto_stage_entries_total", **run, stage=t.to_stage)
    for tp in touchpoints:
        add("trayecto_touchpoints_total", type=tp.type.value, channel=tp.channel.value)
    for o in outcomes:
        add(
            "trayecto_deliveries_total",
            journey=o.journey or "",
            channel=o.channel.value,
            content=o.content,
            variant=o.variant or "",
            status=o.status.value,
        )
    return expected


async def scrape(
    url: str, names: frozenset[str], events: int, timeout_s: float = 20.0
) -> Counter[Series]:
    """The served counters once the metrics service has counted ``events`` records."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        while True:
            text = (await client.get("/metrics")).text
            samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
            counted = sum(s.value for s in samples if s.name == "trayecto_metrics_events_total")
            if counted >= events or loop.time() > deadline:
                return Counter(
                    {
                        (s.name, frozenset(s.labels.items())): int(s.value)
                        for s in samples
                        if s.name in names and s.value
                    }
                )
            await asyncio.sleep(1.0)


def _difference(expected: Mapping[Series, int], served: Mapping[Series, int]) -> tuple[int, int]:
    """(counted too often, counted too rarely) over every series."""
    over = under = 0
    for key in set(expected) | set(served):
        delta = served.get(key, 0) - expected.get(key, 0)
        over, under = over + max(delta, 0), under + max(-delta, 0)
    return over, under


async def account(
    settings: Settings,
    dsn: str,
    prefix: str,
    ledger: Ledger,
    smtp_counts: Mapping[str, int],
    metrics_url: str,
) -> tuple[Figures, list[str]]:
    """The run's figures, and a readable line for each problem found."""
    topics = OrchestratorTopics.prefixed(prefix)
    problems: list[str] = []

    # Accepted events → processed. The event id on the wire derives from the source and
    # the messageId, so ingest's rows say which id each accepted event must have.
    ingested = {
        event_id(r["source_id"], r["message_id"]): r["message_id"]
        for r in await _fetch(dsn, "SELECT source_id, message_id FROM ingest_messages")
    }
    processed = {
        r["event_id"]
        for r in await _fetch(
            dsn, "SELECT event_id FROM processed_events WHERE consumer = 'orchestrator'"
        )
    }
    not_ingested = ledger.accepted - set(ingested.values())
    unprocessed = [mid for eid, mid in ingested.items() if eid not in processed]
    if not_ingested:
        problems.append(f"accepted but not recorded by ingest: {sorted(not_ingested)[:5]}")
    if unprocessed:
        problems.append(f"ingested but never processed: {sorted(unprocessed)[:5]}")

    # Transitions: the topic, journey_history, and one id per logical transition.
    raw_transitions = [
        m for m in await read_topic(settings, topics.transitions) if isinstance(m, StageTransition)
    ]
    transitions, transition_copies = _distinct(raw_transitions)
    history = await _fetch(
        dsn, "SELECT event_id, run_id, reason, from_stage, to_stage, step FROM journey_history"
    )
    history_ids = {r["event_id"] for r in history}
    typed = [t for t in transitions.values() if isinstance(t, StageTransition)]
    transition_dupes = _extra(_published_key(t) for t in typed)
    history_dupes = _extra(_recorded_key(r) for r in history)
    unpublished = history_ids - set(transitions)
    unrecorded = set(transitions) - history_ids
    if transition_dupes or history_dupes:
        problems.append(
            f"transitions twice: {transition_dupes} on the topic, {history_dupes} in history"
        )
    if unpublished or unrecorded:
        problems.append(
            f"transitions in history only: {len(unpublished)}; on the topic only: {len(unrecorded)}"
        )

    # Delivery commands: one id per send step of a run, one deliveries row per id.
    commands, command_copies = _distinct(
        m for m in await read_topic(settings, topics.commands) if isinstance(m, DeliveryCommand)
    )
    typed_commands = [c for c in commands.values() if isinstance(c, DeliveryCommand)]
    command_dupes = _extra((c.prospect_id, c.journey, c.step) for c in typed_commands)
    deliveries = await _fetch(dsn, "SELECT command_id, status, channel FROM deliveries")
    rows = {r["command_id"]: r for r in deliveries}
    unstored = set(commands) - set(rows)
    if command_dupes:
        problems.append(f"delivery commands twice for one send step: {command_dupes}")
    if unstored:
        problems.append(f"delivery commands never stored by delivery: {len(unstored)}")
    if set(rows) - set(commands):
        problems.append("deliveries for commands that are not on the topic")

    # SMTP: every recorded send received once; an in-doubt one at most once; nothing else.
    received: Counter[uuid.UUID] = Counter()
    for message_id, n in smtp_counts.items():
        match = _MESSAGE_ID.match(message_id)
        if match is None:
            problems.append(f"a message with a foreign Message-ID: {message_id}")
            continue
        received[uuid.UUID(match.group(1))] += n
    smtp_dupes = sum(n - 1 for n in received.values() if n > 1)
    sent = {c for c, r in rows.items() if r["status"] == "sent" and r["channel"] == "email"}
    in_doubt = {c for c, r in rows.items() if r["status"] == "in_doubt"}
    never_received = {c for c in sent if received[c] == 0}
    unexpected = {c for c in received if c not in sent | in_doubt}
    if smtp_dupes:
        problems.append(f"messages received twice: {smtp_dupes}")
    if never_received:
        problems.append(f"sends recorded but never received: {len(never_received)}")
    if unexpected:
        problems.append(f"messages received for deliveries not recorded as sent: {len(unexpected)}")
    statuses = Counter(r["status"] for r in deliveries)

    # Outcomes: one "sent" per command.
    raw_outcomes = await read_topic(settings, topics.outcomes)
    outcomes, outcome_copies = _distinct(m for m in raw_outcomes if isinstance(m, DeliveryOutcome))
    typed_outcomes = [o for o in outcomes.values() if isinstance(o, DeliveryOutcome)]
    sent_twice = _extra(o.command_id for o in typed_outcomes if o.status is DeliveryStatus.SENT)
    if sent_twice:
        problems.append(f"commands reported sent twice: {sent_twice}")

    # Metrics: the served counters against the distinct messages of the topics.
    raw_touchpoints = await read_topic(settings, topics.touchpoints)
    touchpoints, touchpoint_copies = _distinct(raw_touchpoints)
    expected = expected_series(
        typed,
        [m for m in touchpoints.values() if isinstance(m, TouchpointEvent)],
        typed_outcomes,
    )
    records = len(raw_transitions) + len(raw_touchpoints) + len(raw_outcomes)
    served = await scrape(metrics_url, CHECKED_SERIES, records)
    over, under = _difference(expected, served)
    if over or under:
        wrong = sorted(
            (name, sorted(labels), served.get((name, labels), 0), expected.get((name, labels), 0))
            for name, labels in set(expected) | set(served)
            if served.get((name, labels), 0) != expected.get((name, labels), 0)
        )
        problems.append(f"metrics differ from the topics (served, expected): {wrong[:5]}")

    figures = Figures(
        seed=0,
        faults={},
        kills=[],
        flow_s=0.0,
        idle_s=0.0,
        events_sent=len(ledger.sent) + ledger.links_followed,
        accepted=len(ledger.accepted) + ledger.links_accepted,
        ingested=len(ingested),
        accounted=len(ingested) - len(unprocessed),
        effects={
            "transitions": len(transitions),
            "commands": len(commands),
            "sent": len(sent),
            "in_doubt": len(in_doubt),
            "smtp": sum(received.values()),
            "outcomes": len(outcomes),
            **{f"deliveries {s}": n for s, n in sorted(statuses.items())},
        },
        duplicates={
            "transitions": transition_dupes,
            "history": history_dupes,
            "commands": command_dupes,
            "sends": sent_twice,
            "smtp": smtp_dupes,
            "metrics": over,
        },
        lost={
            "events": len(not_ingested) + len(unprocessed),
            "transitions": len(unpublished) + len(unrecorded),
            "commands": len(unstored),
            "smtp": len(never_received),
            "metrics": under,
        },
        copies={
            "touchpoints": touchpoint_copies,
            "transitions": transition_copies,
            "commands": command_copies,
            "outcomes": outcome_copies,
        },
        steps=dict(sorted(Counter(t.step or "" for t in typed if t.reason == "step").items())),
        retries=dict(ledger.retried),
    )
    return figures, problems
