"""Foreign headers on a consumed record: readable by FastStream and storable in jsonb."""

from __future__ import annotations

from typing import Any

from aiokafka import ConsumerRecord
from faststream.kafka.message import KafkaMessage
from faststream.kafka.parser import AioKafkaBatchParser

from shared.kafka.consumer import _readable


def _record(headers: Any) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", 0, 7, 0, 0, b"k", b"{}", None, 1, 2, headers)


def test_plain_headers_are_left_as_they_are() -> None:
    record = _record((("trayecto-type", b"touchpoint"), ("content-type", b"application/json")))
    assert _readable(record) is record


async def test_null_undecodable_and_nul_headers_become_text_every_parser_reads() -> None:
    record = _record(
        (("a", None), ("b", b"\xff\xfeok"), ("c", b"x\x00y"), ("d\x00", b"caf\xc3\xa9"))
    )
    readable = _readable(record)
    assert readable.headers == (
        ("a", b""),
        ("b", "\ufffd\ufffdok".encode()),
        ("c", "x\ufffdy".encode()),
        ("d\ufffd", "café".encode()),
    )
    assert (readable.topic, readable.offset, readable.key, readable.value) == ("t", 7, b"k", b"{}")
    # FastStream's own batch parser decodes header values strictly: it reads these now.
    parsed = await AioKafkaBatchParser(KafkaMessage, None).parse_batch((readable,))
    assert parsed.batch_headers == [
        {"a": "", "b": "\ufffd\ufffdok", "c": "x\ufffdy", "d\ufffd": "café"}
    ]
