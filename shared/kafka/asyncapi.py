"""The AsyncAPI document of Trayecto's topics, generated from a FastStream broker."""

from __future__ import annotations

import yaml
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from .. import topics
from ..contract import TOPIC_MESSAGES

_DESCRIPTIONS: dict[str, str] = {
    topics.TOUCHPOINTS: "Normalised touchpoints and identify calls, published by ingest.",
    topics.DELIVERY_COMMANDS: "Sends requested by the orchestrator, one per command id.",
    topics.DELIVERY_OUTCOMES: "Every delivery result, published by delivery.",
    topics.JOURNEY_TRANSITIONS: "Stage and step transitions, published by the orchestrator.",
    topics.TIMERS_FIRED: "Durable timers that came due, on the per-prospect path.",
}
_DEAD_LETTERS: dict[str, str] = {
    topics.TOUCHPOINTS_DLQ: "Records the orchestrator could not process (from touchpoints, "
    "timers.fired or delivery.outcomes): the original key, value and headers unchanged, plus "
    "the headers trayecto-dlq-reason (why) and trayecto-dlq-source-topic (where it came from). "
    "The value may not be a valid contract message: that can be the reason.",
    topics.DELIVERY_DLQ: "Delivery commands that gave up after the last attempt, or could not "
    "be decoded: the original key, value and headers unchanged, plus the header "
    "trayecto-dlq-reason (e.g. 'gave up after 5 attempts: 451 ...').",
}

VERSION = "0.1.0"


def contract_broker(bootstrap: str = "kafka:9092") -> KafkaBroker:
    """A broker declaring one publisher per (topic, message type) of the contract."""
    broker = KafkaBroker(bootstrap, description="Apache Kafka; every topic keyed by prospect id")
    for topic, models in TOPIC_MESSAGES.items():
        for model in models:
            broker.publisher(
                topic,
                title=f"{topic}:{model.__name__}",
                description=f"{_DESCRIPTIONS[topic]} Key: prospect id. Header "
                f"trayecto-type: {model.model_fields['kind'].default}.",
                schema=model,
            )
    for topic, description in _DEAD_LETTERS.items():
        broker.publisher(topic, title=f"{topic}:DeadLetter", description=description)
    return broker


def asyncapi_yaml() -> str:
    spec = AsyncAPI(
        contract_broker(),
        title="Trayecto",
        version=VERSION,
        description="Topics and messages of the Trayecto customer-journey platform.",
    )
    # Re-dumped with sorted keys: the generator's channel order varies between runs,
    # and the committed document must be byte-stable for the staleness check.
    document = yaml.safe_load(spec.to_specification().to_yaml())
    return yaml.safe_dump(document, sort_keys=True, allow_unicode=True, width=100)
