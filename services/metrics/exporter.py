"""The exposition of the counted series and the gauges, refreshed at most every few seconds.

prometheus_client asks collectors synchronously; the values come from PostgreSQL and
Kafka, so ``/metrics`` awaits :meth:`Exporter.refresh` first and the collector then
hands out the snapshot it left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator

import asyncpg
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from . import store
from .series import BUCKETS, SERIES

log = logging.getLogger(__name__)
Source = Callable[[], Awaitable[list[Metric]]]


class Exporter(Collector):
    def __init__(self, ttl_s: float = 5.0) -> None:
        self._ttl_s = ttl_s
        self._pool: asyncpg.Pool | None = None
        self._sources: list[Source] = []
        self._snapshot: list[Metric] = []
        self._taken_at = float("-inf")
        self._lock = asyncio.Lock()

    def attach(self, pool: asyncpg.Pool, *sources: Source) -> None:
        self._pool = pool
        self._sources = list(sources)

    def collect(self) -> Iterator[Metric]:
        yield from self._snapshot

    async def refresh(self) -> None:
        async with self._lock:
            if self._pool is None or time.monotonic() - self._taken_at < self._ttl_s:
                return
            try:
                async with self._pool.acquire() as conn:
                    stored = await store.read(conn)
                gauges = [m for source in self._sources for m in await source()]
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                # The previous snapshot stays: counters never go back, gauges get stale.
                log.warning("reading the series failed; serving the previous snapshot")
                return
            self._snapshot = families(stored) + gauges
            self._taken_at = time.monotonic()


def families(stored: store.Stored) -> list[Metric]:
    """Every counted series (empty families included, so each appears with its HELP)."""
    out: dict[str, CounterMetricFamily | HistogramMetricFamily] = {}
    for s in SERIES.values():
        if s.kind == "counter":
            out[s.name] = CounterMetricFamily(s.name, s.help, labels=list(s.labels))
        else:
            out[s.name] = HistogramMetricFamily(s.name, s.help, labels=list(s.labels))
    bounds = [*(repr(float(b)) for b in BUCKETS), "+Inf"]
    zeros = set(stored.zeros)
    for name, labels, value in stored.counters:
        family = out.get(name)
        if isinstance(family, CounterMetricFamily):
            values = [labels[k] for k in SERIES[name].labels]
            zeros.discard((name, tuple(zip(SERIES[name].labels, values, strict=True))))
            family.add_metric(values, value)
    for name, labels, buckets, total, _count in stored.histograms:
        family = out.get(name)
        if isinstance(family, HistogramMetricFamily) and len(buckets) == len(bounds):
            values = [labels[k] for k in SERIES[name].labels]
            zeros.discard((name, tuple(zip(SERIES[name].labels, values, strict=True))))
            cumulative, running = [], 0
            for bound, n in zip(bounds, buckets, strict=True):
                running += n
                cumulative.append((bound, float(running)))
            family.add_metric(values, cumulative, total)
    for name, zero_labels in sorted(zeros):
        family = out.get(name)
        values = [value for _, value in zero_labels]
        if isinstance(family, CounterMetricFamily):
            family.add_metric(values, 0.0)
        elif isinstance(family, HistogramMetricFamily):
            family.add_metric(values, [(bound, 0.0) for bound in bounds], 0.0)
    return list(out.values())
