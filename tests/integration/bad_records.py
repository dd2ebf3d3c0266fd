"""Hostile Kafka records for the consumers' bad-input tests, drawn by hypothesis.

Each :class:`Case` is one record and what must become of it: a valid one is processed
once (whatever extreme but legal values it carries); an invalid one is dead-lettered
(or, by a reader, counted as undecodable) with a reason matching ``reason``. Cases are
drawn deterministically (``derandomize``), a bounded number per topic, then published
in one partition in order, interleaved with plain valid records, so that every poison
record has valid ones after it.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from shared.contract import (
    MESSAGE_TYPES,
    Channel,
    ContentType,
    DeliveryCommand,
    DeliveryOutcome,
    DeliveryStatus,
    IdentifyEvent,
    StageTransition,
    TimerFired,
    TouchpointEvent,
    TouchpointType,
    WireMessage,
)
from shared.kafka import topic_partitions
from shared.kafka.codec import TYPE_HEADER
from shared.settings import Settings

Headers = tuple[tuple[str, bytes | None], ...]
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
# Where each message keeps free-form JSON (the place for extreme but legal values).
FREE_FORM = {
    "touchpoint": "properties",
    "identify": "traits",
    "delivery_command": "params",
    "timer_fired": "payload",
}
TIMESTAMP = {
    "touchpoint": "occurred_at",
    "identify": "occurred_at",
    "delivery_command": "issued_at",
    "delivery_outcome": "occurred_at",
    "stage_transition": "occurred_at",
    "timer_fired": "due_at",
}
# Bounded strings, and the largest length the contract accepts.
BOUNDED = {
    "touchpoint": ("name", 200),
    "identify": ("source", 100),
    "delivery_command": ("step", 200),
    "delivery_outcome": ("reason", 2000),
    "stage_transition": ("persona", 200),
    "timer_fired": ("step", 200),
}


@dataclass(frozen=True)
class Case:
    """One record to publish: invalid (``reason`` is set) or valid (``fields`` is set)."""

    label: str
    kind: str
    reason: str | None = None
    """A regular expression the dead-letter reason must match; None: a valid record."""
    value: bytes = b""
    fields: dict[str, Any] | None = None
    headers: Headers = ()

    @property
    def valid(self) -> bool:
        return self.reason is None

    def identified(self, n: int) -> Case:
        """A valid case with ids of its own (dedupe must not hide a second effect)."""
        assert self.fields is not None
        fields = {**self.fields, "event_id": str(uuid.uuid4()), "prospect_id": f"valid-{n}"}
        if "command_id" in fields:
            fields["command_id"] = str(uuid.uuid4())
        return replace(self, fields=fields, value=json.dumps(fields).encode())

    @property
    def event_id(self) -> str:
        assert self.fields is not None
        return str(self.fields["event_id"])

    @property
    def prospect_id(self) -> str:
        assert self.fields is not None
        return str(self.fields["prospect_id"])


def base(kind: str) -> dict[str, Any]:
    """A valid message of ``kind``, as the JSON object on the wire."""
    ids = {"prospect_id": "p", "event_id": uuid.UUID(int=1)}
    message: WireMessage
    if kind == "touchpoint":
        message = TouchpointEvent(
            **ids, type=TouchpointType.LEAD_CAPTURED, name="lead_captured", channel=Channel.WEB,
            occurred_at=T0, source="test", properties={"form": "demo"},
        )  # fmt: skip
    elif kind == "identify":
        message = IdentifyEvent(**ids, occurred_at=T0, source="test", traits={"plan": "pro"})
    elif kind == "delivery_command":
        message = DeliveryCommand(
            **ids, command_id=uuid.UUID(int=2), journey="test", journey_version=1, step="send",
            content="it-welcome", content_type=ContentType.EMAIL, channel=Channel.EMAIL,
            recipient={"email": "ana@example.com", "first_name": "Ana"}, issued_at=T0,
        )  # fmt: skip
    elif kind == "delivery_outcome":
        message = DeliveryOutcome(
            **ids, command_id=uuid.UUID(int=2), status=DeliveryStatus.SENT, channel=Channel.EMAIL,
            content="it-welcome", content_type=ContentType.EMAIL, journey="test", occurred_at=T0,
        )  # fmt: skip
    elif kind == "stage_transition":
        message = StageTransition(
            **ids, journey="test", journey_version=1, persona="tester", run_id=uuid.UUID(int=3),
            reason="entered", to_stage="visitor", occurred_at=T0, run_entered_at=T0,
        )  # fmt: skip
    elif kind == "timer_fired":
        message = TimerFired(
            **ids, timer_id=uuid.UUID(int=4), run_id=uuid.UUID(int=3), journey="test",
            journey_version=1, step="wait", due_at=T0, payload={"n": 1},
        )  # fmt: skip
    else:
        raise ValueError(kind)
    data: dict[str, Any] = json.loads(message.model_dump_json())
    return data


def _type_headers(kind: str) -> Headers:
    return (("content-type", b"application/json"), (TYPE_HEADER, kind.encode()))


def _field_error(name: str) -> str:
    """How pydantic names a field in its message: the location on a line of its own."""
    return rf"(^|\n){re.escape(name)}(\.[^\n]*)?\n  "


def _invalid(label: str, kind: str, reason: str, value: bytes, headers: Headers = ()) -> Case:
    return Case(label, kind, reason, value, None, headers or _type_headers(kind))


def _valid(label: str, kind: str, fields: dict[str, Any], headers: Headers = ()) -> Case:
    return Case(label, kind, None, b"", fields, headers or _type_headers(kind))


def _json(data: object) -> bytes:
    return json.dumps(data).encode()


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_json_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _nested(depth: int) -> Any:
    """``depth`` levels of lists and objects (for depths JSON parsers accept)."""
    value: Any = "bottom"
    for level in range(depth):
        value = {"level": level, "inner": value} if level % 2 else [value]
    return value


def _too_deep(good: dict[str, Any], depth: int) -> bytes:
    """``good`` with an extra field ``depth`` levels deep (built as text: no recursion)."""
    deep = '{"a":' * depth + "0" + "}" * depth
    return _json({**good, "deep": "__DEEP__"}).replace(b'"__DEEP__"', deep.encode())


def invalid_cases(kind: str) -> list[st.SearchStrategy[Case]]:
    """Records no consumer may process, each with the reason it must give, by category."""
    good = base(kind)
    required = sorted(
        name for name, info in MESSAGE_TYPES[kind].model_fields.items() if info.is_required()
    )
    fields = sorted(good)
    bounded, longest = BOUNDED[kind]
    stamp = TIMESTAMP[kind]
    not_json = r"Invalid JSON|Input should be (an object|a valid dictionary)"
    strategies: list[st.SearchStrategy[Case]] = [
        st.binary(max_size=64).map(lambda b: _invalid("arbitrary bytes", kind, not_json, b)),
        st.sampled_from(fields).map(
            lambda name: _invalid(
                "invalid UTF-8",
                kind,
                "Invalid JSON",
                _json({**good, name: "__BAD__"}).replace(b"__BAD__", b"\xff\xfe\xc3"),
            )
        ),
        st.one_of(
            st.integers(), st.text(max_size=20), st.lists(_scalars, max_size=3), st.none()
        ).map(lambda v: _invalid("JSON, not an object", kind, not_json, _json(v))),
        st.sampled_from(required).map(
            lambda name: _invalid(
                f"missing {name}",
                kind,
                _field_error(name) + "Field required",
                _json({k: v for k, v in good.items() if k != name}),
            )
        ),
        # No field of the contract is a list: a list is the wrong type for each of them.
        st.tuples(st.sampled_from(fields), st.sampled_from([[], [1, 2], [["x"]], [{}]])).map(
            lambda pair: _invalid(
                f"{pair[0]} of a wrong type",
                kind,
                _field_error(pair[0]),
                _json({**good, pair[0]: pair[1]}),
            )
        ),
        st.sampled_from([0, -1, 2, 99, 2**70, 1.5, "one", None, [1]]).map(
            lambda v: _invalid(
                f"schema_version {v!r}",
                kind,
                _field_error("schema_version"),
                _json({**good, "schema_version": v}),
            )
        ),
        st.integers(longest + 1, 20_000).map(
            lambda n: _invalid(
                f"{bounded} of {n} characters",
                kind,
                _field_error(bounded) + "String should have at most",
                _json({**good, bounded: "x" * n}),
            )
        ),
        st.integers(300, 10_000).map(
            lambda depth: _invalid(
                f"{depth} levels of nesting",
                kind,
                "recursion limit exceeded",
                _too_deep(good, depth),
            )
        ),
        st.sampled_from(["9999-12-31T23:59:59-01:00", "9999-12-31T23:00:00-14:00"]).map(
            lambda when: _invalid(
                f"{stamp} beyond year 9999 in UTC",
                kind,
                "out of range in UTC",
                _json({**good, stamp: when}),
            )
        ),
        st.sampled_from([None, b"", b"nope", b"\xff\xfe", kind.upper().encode()]).map(
            lambda header: _invalid(
                f"type header {header!r}",
                kind,
                "trayecto-type",
                _json(good),
                (("content-type", b"application/json"), (TYPE_HEADER, header)),
            )
        ),
        # The dead letter keeps the record's headers: they must be storable too.
        st.sampled_from([b"a\x00b", b"\x00\xff"]).map(
            lambda header: _invalid(
                f"undecodable, with a header {header!r}",
                kind,
                not_json,
                b"{",
                (*_type_headers(kind), ("x-foreign", header)),
            )
        ),
        st.sampled_from(["prospect_id", bounded]).map(
            lambda name: _invalid(
                f"NUL in {name}", kind, "NUL character", _json({**good, name: "a\x00b"})
            )
        ),
    ]
    if "journey_version" in required:
        strategies.append(
            st.sampled_from([0, -(2**70), 1.5, "v2"]).map(
                lambda v: _invalid(
                    f"journey_version {v!r}",
                    kind,
                    _field_error("journey_version"),
                    _json({**good, "journey_version": v}),
                )
            )
        )
    if kind in FREE_FORM:
        free = FREE_FORM[kind]
        strategies += [
            st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-2e999"]).map(
                lambda literal: _invalid(
                    f"{literal.decode()} in {free}",
                    kind,
                    "not a JSON number",
                    _json({**good, free: {"x": "__NUMBER__"}}).replace(b'"__NUMBER__"', literal),
                )
            ),
            st.sampled_from(["a\x00", "\x00"]).map(
                lambda text: _invalid(
                    f"NUL in a {free} key",
                    kind,
                    "NUL character",
                    _json({**good, free: {text: 1}}),
                )
            ),
        ]
    return strategies


def valid_cases(kind: str) -> list[st.SearchStrategy[Case]]:
    """Records that must be processed: legal, some of them extreme, by category."""
    good = base(kind)
    names = set(MESSAGE_TYPES[kind].model_fields)
    extra_keys = st.text(min_size=1, max_size=12).filter(lambda k: k not in names)
    strategies: list[st.SearchStrategy[Case]] = [
        st.just(_valid("plain", kind, good)),
        st.dictionaries(extra_keys, _json_values, min_size=1, max_size=4).map(
            lambda extra: _valid("extra fields", kind, {**extra, **good})
        ),
        st.sampled_from(
            ["0001-01-01T00:00:00Z", "1900-01-01T00:00:00+01:00", "9999-12-31T23:59:59Z"]
        ).map(
            lambda when: _valid(f"{TIMESTAMP[kind]} {when}", kind, {**good, TIMESTAMP[kind]: when})
        ),
        st.sampled_from([None, b"\xff\xfe", b"\x00"]).map(
            lambda header: _valid(
                f"a foreign header {header!r}",
                kind,
                good,
                (*_type_headers(kind), ("x-foreign", header)),
            )
        ),
    ]
    if "journey_version" in good:
        # Beyond PostgreSQL's int and Kafka's int64: legal on the wire, and harmless.
        strategies.append(
            st.sampled_from([2**31, 2**63, 2**70]).map(
                lambda v: _valid(f"journey_version {v}", kind, {**good, "journey_version": v})
            )
        )
    bounded, longest = BOUNDED[kind]
    strategies.append(
        st.just(
            _valid(f"{bounded} at {longest} characters", kind, {**good, bounded: "y" * longest})
        )
    )
    if kind in FREE_FORM:
        free = FREE_FORM[kind]
        strategies += [
            st.sampled_from([2**70, -(2**70), 10**30, 1e308, -1e-308]).map(
                lambda number: _valid(f"{number} in {free}", kind, {**good, free: {"n": number}})
            ),
            st.integers(40, 150).map(
                lambda depth: _valid(
                    f"{depth} levels in {free}", kind, {**good, free: {"deep": _nested(depth)}}
                )
            ),
            st.integers(10_000, 60_000).map(
                lambda n: _valid(f"{n} characters in {free}", kind, {**good, free: {"s": "z" * n}})
            ),
            st.sampled_from(
                ["'; DROP TABLE prospect_state; --", "{{ 7*7 }}", "\u202e\ufeff🙂", "\\u0000"]
            ).map(lambda text: _valid(f"{text!r} in {free}", kind, {**good, free: {text: text}})),
        ]
    return strategies


def draw(strategy: st.SearchStrategy[Case], count: int) -> list[Case]:
    """``count`` examples of ``strategy``, the same ones on every run."""
    found: list[Case] = []

    @given(strategy)
    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def collect(case: Case) -> None:
        found.append(case)

    collect()
    return found[:count]


@dataclass
class Plan:
    """The records of one topic, in publishing order."""

    topic: str
    cases: list[Case] = field(default_factory=list)

    @property
    def invalid(self) -> list[Case]:
        return [c for c in self.cases if not c.valid]

    @property
    def valid(self) -> list[Case]:
        return [c for c in self.cases if c.valid]


def plan(topic: str, kinds: Sequence[str], per_category: int = 2, start: int = 0) -> Plan:
    """``per_category`` cases of each category and kind, with valid records between them.

    A plain valid record follows every third drawn case and ends the plan, so every
    poison record has records after it in the partition that must still be processed.
    """
    drawn: list[Case] = []
    for kind in kinds:
        for strategy in invalid_cases(kind) + valid_cases(kind):
            drawn += draw(strategy, per_category)
    ordered: list[Case] = []
    for index, case in enumerate(drawn):
        ordered.append(case)
        if index % 3 == 2:
            kind = kinds[index % len(kinds)]
            ordered.append(_valid("plain, after poison", kind, base(kind)))
    ordered.append(_valid("plain, last", kinds[0], base(kinds[0])))
    cases: list[Case] = []
    for case in ordered:
        cases.append(case.identified(start + len(cases)) if case.valid else case)
    return Plan(topic, cases)


async def publish(settings: Settings, plans: Sequence[Plan]) -> None:
    """Every plan's records, in order, into partition 0 of its topic (raw bytes, raw headers)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap.split(","), acks="all", max_request_size=2**21
    )
    await producer.start()
    try:
        for p in plans:
            for case in p.cases:
                key = case.prospect_id.encode() if case.valid else b"poison"
                await producer.send(
                    p.topic, case.value, key=key, partition=0, headers=list(case.headers)
                )
        await producer.flush()
    finally:
        await producer.stop()


@dataclass(frozen=True)
class Letter:
    value: bytes
    headers: dict[str, str]


async def read_all(
    settings: Settings,
    topic: str,
    done: Callable[[list[Letter]], bool],
    timeout_s: float = 30.0,
) -> list[Letter]:
    """Every record of ``topic`` once ``done`` says enough arrived (or the time is up)."""
    count = (await topic_partitions(settings, [topic]))[topic]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap.split(","), enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: list[Letter] = []
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                found += [
                    Letter(
                        r.value or b"",
                        {k: (v or b"").decode(errors="replace") for k, v in r.headers},
                    )
                    for r in records
                ]
            if done(found):
                break
        return found
    finally:
        await consumer.stop()


def check_dead_letters(
    plans: Sequence[Plan], letters: Sequence[Letter], reason_header: str
) -> None:
    """Each invalid record is dead-lettered once, from its topic, with a matching reason."""
    remaining = list(letters)
    problems = []
    for p in plans:
        for case in p.invalid:
            match = next(
                (
                    letter
                    for letter in remaining
                    if letter.value == case.value
                    and letter.headers.get("trayecto-dlq-source-topic", p.topic) == p.topic
                ),
                None,
            )
            if match is None:
                problems.append(f"{case.label} ({case.kind}): not dead-lettered")
                continue
            remaining.remove(match)
            reason = match.headers.get(reason_header, "")
            if not re.search(case.reason or "", reason):
                problems.append(f"{case.label} ({case.kind}): reason {reason[:300]!r}")
    assert not problems, "\n".join(problems)
    valid = {c.value for p in plans for c in p.valid}
    assert not [letter for letter in remaining if letter.value in valid], (
        "a valid record was dead-lettered"
    )
    assert not remaining, f"{len(remaining)} unexpected dead letters"


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values: PostgreSQL keeps 1e308 as the exact number 10**308."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float) and type(a) is not type(b):
        return float(a) == float(b)
    return type(a) is type(b) and a == b
