"""Topic administration and broker health, over aiokafka's admin client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Iterator

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from ..settings import Settings
from ..topics import ALL_TOPICS


async def _admin(bootstrap: str, timeout_s: float) -> AIOKafkaAdminClient:
    client = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap.split(","), request_timeout_ms=int(timeout_s * 1000)
    )
    await client.start()
    return client


@contextlib.contextmanager
def _quiet_client_logs() -> Iterator[None]:
    # A probe expects refused connections while the broker starts; the client would
    # log each of them as an error.
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


async def kafka_ready(bootstrap: str, timeout_s: float = 3.0) -> bool:
    """True when the broker answers a metadata request."""
    with _quiet_client_logs():
        return await _probe(bootstrap, timeout_s)


async def _probe(bootstrap: str, timeout_s: float) -> bool:
    try:
        client = await asyncio.wait_for(_admin(bootstrap, timeout_s), timeout_s)
    except (KafkaError, OSError, TimeoutError):
        return False
    try:
        await asyncio.wait_for(client.list_topics(), timeout_s)
        return True
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await client.close()


HEALTH_TOPIC = "trayecto.health"
"""One partition that the stack's start-up probe writes to."""


async def kafka_stores(bootstrap: str, timeout_s: float = 5.0) -> bool:
    """True when the broker acknowledges a record (``acks=all``) on :data:`HEALTH_TOPIC`.

    A restarted broker answers metadata requests before it has loaded its partitions;
    until then, topics created meanwhile are not served and every send waits.
    """
    with _quiet_client_logs():
        try:
            client = await asyncio.wait_for(_admin(bootstrap, timeout_s), timeout_s)
        except (KafkaError, OSError, TimeoutError):
            return False
        try:
            with contextlib.suppress(TopicAlreadyExistsError):
                if HEALTH_TOPIC not in await client.list_topics():
                    await client.create_topics([NewTopic(HEALTH_TOPIC, 1, 1)])
        except (KafkaError, OSError, TimeoutError):
            return False
        finally:
            await client.close()
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap.split(","),
            acks="all",
            request_timeout_ms=int(timeout_s * 1000),
        )
        try:
            await asyncio.wait_for(producer.start(), timeout_s)
            await asyncio.wait_for(producer.send_and_wait(HEALTH_TOPIC, b"ok"), timeout_s)
            return True
        except (KafkaError, OSError, TimeoutError):
            return False
        finally:
            await producer.stop()


async def wait_for_kafka(bootstrap: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not await kafka_ready(bootstrap):
        if time.monotonic() > deadline:
            raise TimeoutError(f"Kafka at {bootstrap} did not answer within {timeout_s:.0f}s")
        await asyncio.sleep(0.5)


async def ensure_topics(
    settings: Settings, names: Iterable[str] = ALL_TOPICS, partitions: int | None = None
) -> list[str]:
    """Create the missing topics; returns the names created. Existing ones are kept."""
    client = await _admin(settings.kafka_bootstrap, 10.0)
    try:
        existing = set(await client.list_topics())
        missing = [name for name in names if name not in existing]
        if not missing:
            return []
        new = [
            NewTopic(
                name,
                num_partitions=partitions or settings.topic_partitions,
                replication_factor=settings.topic_replication,
            )
            for name in missing
        ]
        # Created concurrently by another process: the outcome is the same.
        with contextlib.suppress(TopicAlreadyExistsError):
            await client.create_topics(new)
        return missing
    finally:
        await client.close()


async def list_topics(settings: Settings) -> set[str]:
    client = await _admin(settings.kafka_bootstrap, 10.0)
    try:
        return set(await client.list_topics())
    finally:
        await client.close()


async def delete_topics(
    settings: Settings, names: Iterable[str], *, per_request: int = 500
) -> None:
    """Delete topics (throwaway ones of tests and benchmarks), a bounded number per request."""
    todo = list(names)
    client = await _admin(settings.kafka_bootstrap, 30.0)
    try:
        for start in range(0, len(todo), per_request):
            await client.delete_topics(todo[start : start + per_request])
    finally:
        await client.close()


async def topic_partitions(settings: Settings, names: Iterable[str]) -> dict[str, int]:
    """Partition count of each named topic that exists."""
    client = await _admin(settings.kafka_bootstrap, 10.0)
    try:
        described = await client.describe_topics(list(names))
        return {
            str(topic["topic"]): len(topic["partitions"])
            for topic in described
            if not topic.get("error_code")
        }
    finally:
        await client.close()
