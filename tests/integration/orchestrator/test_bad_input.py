"""Hostile records on every topic the orchestrator reads: dead-lettered with a reason
naming the problem, valid ones around them processed exactly once, the consumer alive."""

from __future__ import annotations

from collections import Counter
from urllib.parse import quote

from prometheus_client.parser import text_string_to_metric_families

from services.orchestrator.processor import REASON_HEADER
from shared.contract import DeliveryCommand

from ..bad_records import check_dead_letters, plan, publish, read_all, same_json
from .conftest import Start
from .test_poison import ONE_SEND


async def test_hostile_records_are_dead_lettered_and_the_rest_processed_once(
    start_orchestrator: Start,
) -> None:
    o = await start_orchestrator(ONE_SEND)
    plans = [
        plan(o.topics.touchpoints, ["touchpoint", "identify"], start=0),
        plan(o.topics.outcomes, ["delivery_outcome"], start=1000),
        plan(o.topics.timers, ["timer_fired"], start=2000),
    ]
    await publish(o.settings, plans)
    valid = [case for p in plans for case in p.valid]
    invalid = [case for p in plans for case in p.invalid]

    async def all_processed() -> bool:
        rows = await o.rows(
            "SELECT count(*) AS n FROM processed_events"
            " WHERE consumer = 'orchestrator' AND event_id = ANY($1::uuid[])",
            [case.event_id for case in valid],
        )
        return bool(rows[0]["n"] == len(valid))

    await o.wait_for(all_processed, timeout_s=40, what="every valid record processed")
    letters = await read_all(o.settings, o.topics.dead_letters, lambda f: len(f) >= len(invalid))
    check_dead_letters(plans, letters, REASON_HEADER)

    # Exactly once: one delivery command per lead, whatever else the partition carried.
    leads = Counter(case.prospect_id for case in valid if case.kind == "touchpoint")
    commands = await o.messages(o.topics.commands, sum(leads.values()), timeout_s=20)
    sent = Counter(c.prospect_id for c in commands if isinstance(c, DeliveryCommand))
    assert sent == leads

    # Extreme but legal traits read back as sent, through PostgreSQL and the API.
    for case in valid:
        if case.kind == "identify":
            assert case.fields is not None
            answer = await o.client.get(f"/v1/prospects/{quote(case.prospect_id, safe='')}")
            assert answer.status_code == 200, (case.label, answer.text)
            assert same_json(answer.json()["traits"], case.fields["traits"]), case.label

    # The consumer is alive and counted every record once.
    assert (await o.client.get("/healthz")).status_code == 200
    counted = {
        s.labels["outcome"]: s.value
        for family in text_string_to_metric_families((await o.client.get("/metrics")).text)
        for s in family.samples
        if s.name == "trayecto_orchestrator_events_total"
    }
    assert counted == {"processed": len(valid), "duplicate": 0, "dead_letter": len(invalid)}
