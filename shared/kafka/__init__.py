"""Kafka helpers: broker factory, record codec, topic administration."""

from .admin import (
    delete_topics,
    ensure_topics,
    kafka_ready,
    list_topics,
    topic_partitions,
    wait_for_kafka,
)
from .broker import make_broker, publish
from .codec import EVENT_ID_HEADER, TYPE_HEADER, VERSION_HEADER, Record, decode, encode

__all__ = [
    "EVENT_ID_HEADER",
    "TYPE_HEADER",
    "VERSION_HEADER",
    "Record",
    "decode",
    "delete_topics",
    "encode",
    "ensure_topics",
    "kafka_ready",
    "list_topics",
    "make_broker",
    "publish",
    "topic_partitions",
    "wait_for_kafka",
]
