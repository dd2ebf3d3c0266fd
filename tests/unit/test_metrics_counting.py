from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from services.metrics.counting import Known, Tally, count
from services.metrics.exporter import families
from services.metrics.series import BUCKETS, SERIES
from services.metrics.store import Stored
from services.metrics.zeros import zero_series
from shared.contract import (
    Channel,
    DeliveryCommand,
    Emotion,
    StageTransition,
    TouchpointEvent,
    TouchpointType,
)

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
RUN = {"journey": "j", "version": "2", "persona": "p"}
KNOWN = Known({"j": frozenset({"hello", "offer"})})


def _t(reason: str, **fields: object) -> StageTransition:
    return StageTransition(
        prospect_id="x", journey="j", journey_version=2, persona="p", run_id=uuid.uuid4(),
        reason=reason, occurred_at=fields.pop("occurred_at", T0), **fields,
    )  # fmt: skip


def _keys(tally: Tally) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return dict(tally.counters)


def _k(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple((key, labels[key]) for key in SERIES[name].labels)


def test_a_deferred_send_checked_again_counts_nothing() -> None:
    tally = Tally()
    count(tally, _t("retried", from_stage="contact", to_stage="contact", step="offer",
                    send_outcome="sent", held_by=None), KNOWN)  # fmt: skip
    count(tally, _t("retried", from_stage="contact", to_stage="contact", step="offer",
                    send_outcome="deferred", held_by="quiet_hours"), KNOWN)  # fmt: skip
    assert _keys(tally) == {}
    assert tally.histograms == {}


def test_an_advance_leaves_one_stage_enters_the_next_and_times_both() -> None:
    tally = Tally()
    later = T0 + timedelta(hours=2)
    count(tally, _t("advanced", from_stage="visitor", to_stage="contact", occurred_at=later,
                    stage_entered_at=T0 + timedelta(hours=1), run_entered_at=T0,
                    variants={"offer": "b"}), KNOWN)  # fmt: skip
    assert _keys(tally) == {
        _k("trayecto_stage_exits_total", **RUN, stage="visitor", outcome="converted"): 1,
        _k("trayecto_stage_conversions_total", **RUN, stage="visitor", to_stage="contact"): 1,
        _k("trayecto_stage_entries_total", **RUN, stage="contact"): 1,
        _k("trayecto_variant_stage_entries_total", journey="j", version="2", step="offer",
           variant="b", stage="contact"): 1,
    }  # fmt: skip
    in_stage = tally.histograms[_k("trayecto_time_in_stage_seconds", **RUN, stage="visitor")]
    assert (in_stage.count, in_stage.sum) == (1, 3600.0)
    assert in_stage.buckets[BUCKETS.index(3600.0)] == 1  # le is inclusive
    to_stage = tally.histograms[_k("trayecto_time_to_stage_seconds", **RUN, stage="contact")]
    assert (to_stage.count, to_stage.sum) == (1, 7200.0)


def test_entry_exit_steps_and_goals_in_the_same_stage() -> None:
    tally = Tally()
    count(tally, _t("entered", to_stage="stranger", run_entered_at=T0), KNOWN)
    count(tally, _t("step", step="hello", from_stage="stranger", to_stage="stranger"), KNOWN)
    count(tally, _t("goal", from_stage="stranger", to_stage="stranger"), KNOWN)
    count(tally, _t("exited", from_stage="stranger"), KNOWN)
    assert _keys(tally) == {
        _k("trayecto_journey_entries_total", **RUN): 1,
        _k("trayecto_stage_entries_total", **RUN, stage="stranger"): 1,
        _k("trayecto_step_entries_total", **RUN, step="hello", variant=""): 1,
        _k("trayecto_stage_exits_total", **RUN, stage="stranger", outcome="exited"): 1,
        _k("trayecto_journey_exits_total", **RUN, stage="stranger"): 1,
    }
    # Without stage_entered_at (messages of older orchestrators) no time is observed.
    assert _k("trayecto_time_in_stage_seconds", **RUN, stage="stranger") not in tally.histograms


@pytest.mark.parametrize(
    ("properties", "journey", "step"),
    [
        ({"journey": "j", "step": "hello"}, "j", "hello"),
        ({"journey": "j", "step": "made-up"}, "j", "other"),
        ({"journey": "nobody", "step": "hello"}, "other", "other"),
        ({"journey": ["j"], "step": 3}, "other", "other"),
        ({}, "", ""),
    ],
)
def test_touchpoint_labels_are_bounded_by_the_published_journeys(
    properties: dict[str, object], journey: str, step: str
) -> None:
    tally = Tally()
    event = TouchpointEvent(
        prospect_id="x", type=TouchpointType.FEEDBACK, name="feedback", channel=Channel.EMAIL,
        occurred_at=T0, source="s", properties=properties, emotion=Emotion.NEGATIVE,
    )  # fmt: skip
    count(tally, event, KNOWN)
    expected = {
        _k("trayecto_touchpoints_total", type="feedback", channel="email"): 1,
        _k("trayecto_feedback_total", journey=journey, step=step, emotion="negative"): 1,
    }
    if journey:
        expected[_k("trayecto_touchpoint_engagements_total", journey=journey, step=step,
                    type="feedback")] = 1  # fmt: skip
    assert _keys(tally) == expected


def test_messages_the_service_does_not_read_are_refused() -> None:
    command = DeliveryCommand(
        prospect_id="x", command_id=uuid.uuid4(), journey="j", journey_version=1, step="s",
        content="c", content_type="email", channel=Channel.EMAIL,
    )  # fmt: skip
    with pytest.raises(TypeError):
        count(Tally(), command, KNOWN)


def test_wrong_labels_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="takes labels"):
        Tally().inc("trayecto_touchpoints_total", type="x")


def test_docs_list_every_series() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"`(trayecto_[a-z_]+)`", docs))
    assert set(SERIES) <= documented


def test_a_published_journey_has_its_series_at_zero_and_counted_ones_replace_them() -> None:
    definition = yaml.safe_load((ROOT / "journeys" / "smb-owner.yaml").read_text())
    zeros = set(zero_series("smb-owner", 3, definition))
    run = {"journey": "smb-owner", "version": "3", "persona": "smb-owner"}
    for key in (
        _k("trayecto_stage_entries_total", **run, stage="promoter"),
        _k("trayecto_stage_conversions_total", **run, stage="stranger", to_stage="promoter"),
        _k("trayecto_step_entries_total", **run, step="offer-test", variant="trial"),
        _k("trayecto_step_entries_total", **run, step="await-visit", variant=""),
        _k("trayecto_variant_stage_entries_total", journey="smb-owner", version="3",
           step="offer-test", variant="discount", stage="customer"),
        _k("trayecto_feedback_total", journey="smb-owner", step="care-message",
           emotion="negative"),
        _k("trayecto_time_in_stage_seconds", **run, stage="contact"),
    ):  # fmt: skip
        assert key in zeros
    assert not any(dict(labels).get("stage") == "lead" for _, labels in zeros)

    entries = _k("trayecto_stage_entries_total", **run, stage="visitor")
    stored = Stored([(entries[0], dict(entries[1]), 7.0)], [], zeros)
    samples = [
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in families(stored)
        for s in family.samples
    ]
    keys = [(name, labels) for name, labels, _ in samples]
    assert len(keys) == len(set(keys))
    visitor = ("trayecto_stage_entries_total", tuple(sorted(entries[1])))
    assert [v for n, labels, v in samples if (n, labels) == visitor] == [7.0]
    time_in_contact = [
        v for n, labels, v in samples
        if n == "trayecto_time_in_stage_seconds_count" and ("stage", "contact") in labels
    ]  # fmt: skip
    assert time_in_contact == [0.0]
