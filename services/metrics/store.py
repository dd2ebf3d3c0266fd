"""The counted series in PostgreSQL: added to with the batch's offsets, read on scrape."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shared.db.pool import Connection

from .counting import Labels, Tally
from .zeros import zero_series

Position = tuple[str, int]  # topic, partition


async def counted_up_to(
    conn: Connection, consumer: str, positions: Iterable[Position]
) -> dict[Position, int]:
    """The next offset to count per partition, row-locked until the transaction ends.

    The lock makes a zombie instance (one that lost the partition in a rebalance but
    still finishes its batch) wait, then see the offsets its successor stored.
    """
    wanted = sorted(set(positions))
    topics, partitions = [t for t, _ in wanted], [p for _, p in wanted]
    await conn.execute(
        """
        INSERT INTO metric_offsets (consumer, topic, partition, next_offset)
        SELECT $1, t, p, 0 FROM unnest($2::text[], $3::int[]) AS u(t, p)
        ON CONFLICT DO NOTHING
        """,
        consumer,
        topics,
        partitions,
    )
    rows = await conn.fetch(
        """
        SELECT topic, partition, next_offset FROM metric_offsets
        WHERE consumer = $1 AND (topic, partition) IN
              (SELECT * FROM unnest($2::text[], $3::int[]))
        ORDER BY topic, partition
        FOR UPDATE
        """,
        consumer,
        topics,
        partitions,
    )
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}


async def add(
    conn: Connection, consumer: str, tally: Tally, next_offsets: Mapping[Position, int]
) -> None:
    """Add a batch's tally and move its offsets, inside the caller's transaction."""
    if tally.counters:
        await conn.executemany(
            """
            INSERT INTO metric_counters (name, labels, value) VALUES ($1, $2::jsonb, $3)
            ON CONFLICT (name, labels) DO UPDATE SET value = metric_counters.value + $3
            """,
            [(name, _json(labels), value) for (name, labels), value in tally.counters.items()],
        )
    if tally.histograms:
        await conn.executemany(
            """
            INSERT INTO metric_histograms (name, labels, buckets, sum, count)
            VALUES ($1, $2::jsonb, $3, $4, $5)
            ON CONFLICT (name, labels) DO UPDATE SET
                buckets = ARRAY(SELECT a + b FROM unnest(metric_histograms.buckets, $3) AS u(a, b)),
                sum = metric_histograms.sum + $4,
                count = metric_histograms.count + $5
            """,
            [
                (name, _json(labels), h.buckets, h.sum, h.count)
                for (name, labels), h in tally.histograms.items()
            ],
        )
    await conn.executemany(
        "UPDATE metric_offsets SET next_offset = $4"
        " WHERE consumer = $1 AND topic = $2 AND partition = $3",
        [(consumer, t, p, offset) for (t, p), offset in next_offsets.items()],
    )


def _json(labels: Labels) -> str:
    return json.dumps(dict(labels), sort_keys=True)


@dataclass(frozen=True, slots=True)
class Stored:
    counters: list[tuple[str, dict[str, str], float]]
    histograms: list[tuple[str, dict[str, str], list[int], float, int]]
    zeros: set[tuple[str, Labels]] = field(default_factory=set)
    """Series of the live journey versions, served at 0 until counted."""


async def read(conn: Connection) -> Stored:
    counters = await conn.fetch("SELECT name, labels::text, value FROM metric_counters")
    histograms = await conn.fetch(
        "SELECT name, labels::text, buckets, sum, count FROM metric_histograms"
    )
    published = await conn.fetch(
        "SELECT journey, version, definition::text FROM journey_versions WHERE retired_at IS NULL"
    )
    zeros = {
        series
        for r in published
        for series in zero_series(r["journey"], r["version"], json.loads(r["definition"]))
    }
    return Stored(
        [(r["name"], json.loads(r["labels"]), r["value"]) for r in counters],
        [
            (r["name"], json.loads(r["labels"]), list(r["buckets"]), r["sum"], r["count"])
            for r in histograms
        ],
        zeros,
    )
