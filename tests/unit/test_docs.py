from pathlib import Path

import yaml

from shared.kafka.asyncapi import asyncapi_yaml
from shared.topics import ALL_TOPICS, DEAD_LETTER_TOPICS

ROOT = Path(__file__).resolve().parents[2]


def test_asyncapi_document_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "asyncapi.yaml").read_text()
    assert committed == asyncapi_yaml(), (
        "docs/asyncapi.yaml is stale: run `trayecto docs asyncapi --out docs/asyncapi.yaml`"
    )


def test_asyncapi_document_describes_every_topic_and_message() -> None:
    document = yaml.safe_load(asyncapi_yaml())
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == set(ALL_TOPICS)
    # A dead letter keeps the original record; the document says which header tells why.
    for channel in document["channels"].values():
        if channel["address"] in DEAD_LETTER_TOPICS:
            assert "trayecto-dlq-reason" in channel["description"], channel["address"]
    schemas = document["components"]["schemas"]
    for name in (
        "TouchpointEvent",
        "IdentifyEvent",
        "DeliveryCommand",
        "DeliveryOutcome",
        "StageTransition",
        "TimerFired",
    ):
        assert "schema_version" in schemas[name]["properties"], name
        assert "prospect_id" in schemas[name]["required"], name
