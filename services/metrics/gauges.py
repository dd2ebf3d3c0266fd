"""Gauges read on scrape: prospects per stage, timers, outbox (PostgreSQL), lag (Kafka)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from shared.settings import Settings

log = logging.getLogger(__name__)

_STAGES = """
SELECT run ->> 'journey' AS journey, run ->> 'version' AS version,
       run ->> 'persona' AS persona, coalesce(run ->> 'stage', '') AS stage, count(*) AS n
FROM prospect_state, jsonb_each(state -> 'runs') AS r(journey_id, run)
WHERE run ->> 'status' = 'active'
GROUP BY 1, 2, 3, 4
"""
_PIPELINE = """
SELECT
    (SELECT count(*) FROM timers) AS timers,
    (SELECT count(*) FROM timers WHERE due_at < now() - interval '1 minute') AS overdue,
    (SELECT coalesce(extract(epoch FROM now() - min(due_at)), 0) FROM timers
      WHERE due_at < now()) AS overdue_s,
    (SELECT count(*) FROM outbox WHERE published_at IS NULL) AS outbox,
    (SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0) FROM outbox
      WHERE published_at IS NULL) AS outbox_s
"""


async def database_gauges(pool: asyncpg.Pool) -> list[Metric]:
    async with pool.acquire() as conn:
        stages = await conn.fetch(_STAGES)
        pipeline = await conn.fetchrow(_PIPELINE)
    in_stage = GaugeMetricFamily(
        "trayecto_prospects_in_stage",
        "Active runs currently in the stage",
        labels=["journey", "version", "persona", "stage"],
    )
    for r in stages:
        in_stage.add_metric([r["journey"], r["version"], r["persona"], r["stage"]], r["n"])
    assert pipeline is not None
    return [
        in_stage,
        _gauge("trayecto_timers_pending", "Durable timers not yet fired", pipeline["timers"]),
        _gauge(
            "trayecto_timers_overdue",
            "Pending timers due more than a minute ago",
            pipeline["overdue"],
        ),
        _gauge(
            "trayecto_timers_oldest_overdue_seconds",
            "How late the most overdue pending timer is",
            float(pipeline["overdue_s"]),
        ),
        _gauge("trayecto_outbox_backlog", "Outbox rows not yet relayed", pipeline["outbox"]),
        _gauge(
            "trayecto_outbox_oldest_seconds",
            "Age of the oldest unrelayed outbox row",
            float(pipeline["outbox_s"]),
        ),
    ]


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class KafkaGauges:
    """End offsets of the watched topics and the lag of the platform's consumer groups."""

    def __init__(self, settings: Settings, topics: Sequence[str], groups: Sequence[str]) -> None:
        self._bootstrap = settings.kafka_bootstrap.split(",")
        self._topics = list(topics)
        self._groups = list(groups)
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._consumer is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, request_timeout_ms=3000)
            consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, request_timeout_ms=3000)
            await admin.start()
            try:
                await consumer.start()
            except BaseException:
                await admin.close()
                raise
            self._admin, self._consumer = admin, consumer
        return self._admin, self._consumer

    async def collect(self) -> list[Metric]:
        try:
            return await self._collect()
        except (KafkaError, OSError, TimeoutError):
            log.warning("Kafka did not answer; topic sizes and lag are left out of this scrape")
            await self.close()
            return []

    async def _collect(self) -> list[Metric]:
        admin, consumer = await self._clients()
        described = await admin.describe_topics(self._topics)
        partitions = [
            TopicPartition(t["topic"], p["partition"])
            for t in described
            if t["error_code"] == 0
            for p in t["partitions"]
        ]
        ends = await consumer.end_offsets(partitions) if partitions else {}
        size = GaugeMetricFamily(
            "trayecto_topic_messages", "Sum of the end offsets of the topic", labels=["topic"]
        )
        totals: dict[str, int] = {}
        for tp, end in ends.items():
            totals[tp.topic] = totals.get(tp.topic, 0) + end
        for topic, total in sorted(totals.items()):
            size.add_metric([topic], total)
        lag = GaugeMetricFamily(
            "trayecto_consumer_lag",
            "End offset minus the group's committed offset",
            labels=["group", "topic", "partition"],
        )
        for group in self._groups:
            committed = await admin.list_consumer_group_offsets(group)
            for tp, meta in sorted(committed.items()):
                if tp in ends and meta.offset >= 0:
                    lag.add_metric([group, tp.topic, str(tp.partition)], ends[tp] - meta.offset)
        return [size, lag]

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()
        self._admin = self._consumer = None
