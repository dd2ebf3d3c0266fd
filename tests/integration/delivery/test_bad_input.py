"""Hostile records on delivery.commands: dead-lettered with the reason, every valid
command around them stored once and sent once, the service alive."""

from __future__ import annotations

import json
from collections import Counter

from ..bad_records import Letter, check_dead_letters, plan, publish, read_all
from .conftest import Delivery

REASON = "trayecto-dlq-reason"
# Tracking links expire a while after the command was issued: one issued before 1970
# would need an expiry before the epoch, so rendering refuses it (a failed outcome).
UNSIGNABLE = "cannot render: content 'it-welcome', locale 'es': cannot sign a tracking link"


async def test_hostile_commands_are_dead_lettered_and_valid_ones_sent_once(
    delivery: Delivery,
) -> None:
    d = delivery
    commands = plan(d.commands_topic, ["delivery_command"])
    await publish(d.settings, [commands])
    valid = {str(case.fields["command_id"]): case for case in commands.valid if case.fields}
    assert len(valid) == len(commands.valid)
    early = {
        cid for cid, case in valid.items() if case.fields and case.fields["issued_at"] < "1970"
    }

    async def all_done() -> bool:
        rows = await d.fetch(
            "SELECT count(*) AS n FROM deliveries WHERE command_id = ANY($1::uuid[])"
            " AND status NOT IN ('pending', 'sending', 'handing_off')",
            list(valid),
        )
        return bool(rows[0]["n"] == len(valid))

    await d.until(all_done, timeout_s=40, what="every valid command stored and sent")
    rows = await d.fetch("SELECT command_id::text AS id, status, reason FROM deliveries")
    statuses = {
        valid[row["id"]].label: (row["status"], row["reason"][: len(UNSIGNABLE)]) for row in rows
    }
    assert statuses == {
        case.label: ("dead", UNSIGNABLE) if cid in early else ("sent", "250 2.0.0 queued")
        for cid, case in valid.items()
    }
    received = Counter(str(m["X-Trayecto-Command"]) for m in d.smtp.inbox.messages)
    assert received == Counter(set(valid) - early)

    expected = len(commands.invalid) + len(early)
    letters = await read_all(d.settings, d.topics.dead_letters, lambda f: len(f) >= expected)
    unsendable = [x for x in letters if x.headers.get(REASON, "").startswith(UNSIGNABLE)]
    assert sorted(_command_id(x) for x in unsendable) == sorted(early)
    check_dead_letters([commands], [x for x in letters if x not in unsendable], REASON)


def _command_id(letter: Letter) -> str:
    return str(json.loads(letter.value)["command_id"])
