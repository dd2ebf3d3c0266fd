"""The engine's deterministic ids are uuid5 ids, and the models it builds without
validation are exactly what validation and ``model_copy`` would make."""

from __future__ import annotations

from uuid import UUID, uuid5

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.orchestrator.engine.turn import NAMESPACE, stable_id
from shared.contract import TouchpointType
from shared.trusted import replace

from . import Prospect, compiled

parts = st.lists(
    st.one_of(st.text(), st.integers(), st.uuids(), st.none(), st.floats(allow_nan=False)),
    max_size=5,
)


@given(parts)
def test_stable_ids_are_the_uuid5_of_the_joined_parts(values: list[object]) -> None:
    # Runs, timers and commands already stored hold ids made this way: a replay must
    # compute the same ones.
    expected = uuid5(NAMESPACE, ":".join(str(v) for v in values))
    made = stable_id(*values)
    assert made == expected
    assert str(made) == str(expected)
    assert (made.version, made.variant) == (5, expected.variant)


JOURNEY = """
journey: ids
title: Ids
persona: {id: anyone}
entry: {event: lead_captured}
steps:
  - {id: hello, send: {content: welcome}, map: {stage: visitor}}
  - {id: later, wait: 1d, map: {stage: contact}}
"""


def test_transition_ids_derive_from_the_input_event_and_their_order() -> None:
    p = Prospect.of(compiled(JOURNEY))
    decision = p.touch(TouchpointType.LEAD_CAPTURED)
    cause = p.inputs[0].event_id
    assert len(decision.transitions) == 4
    for number, transition in enumerate(decision.transitions):
        assert transition.event_id == stable_id(cause, "transition", number)
    run = decision.state.runs["ids"]
    assert run.run_id == uuid5(NAMESPACE, "p-1:ids:1")
    [command] = decision.commands
    assert command.command_id == uuid5(NAMESPACE, f"{run.run_id}:hello:1")
    [timer] = decision.timers
    assert timer.timer_id == uuid5(NAMESPACE, f"{run.run_id}:later:1")


def test_replace_is_model_copy_with_an_update() -> None:
    p = Prospect.of(compiled(JOURNEY))
    run = p.touch(TouchpointType.LEAD_CAPTURED).state.runs["ids"]
    before = run.model_dump()
    update = {"stage": "customer", "waiting": None, "visits": {"hello": 2}}
    copied, replaced = run.model_copy(update=update), replace(run, update)
    assert replaced == copied
    assert replaced.model_fields_set == copied.model_fields_set
    assert replaced.model_dump_json() == copied.model_dump_json()
    assert run.model_dump() == before  # the original is left as it was
    with pytest.raises(ValidationError, match="frozen"):
        replaced.__setattr__("stage", "x")


PARAMS = """
journey: params
title: Params
persona: {id: anyone}
entry: {event: lead_captured}
steps:
  - {id: hello, send: {content: welcome, params: {ratio: .nan}}}
"""
TRAITS = """
journey: traits
title: Traits
persona: {id: anyone}
entry: {event: lead_captured}
steps:
  - {id: tag, update: {set: {email: "ana\\0@example.com"}}}
  - {id: hello, send: {content: welcome}}
"""


@pytest.mark.parametrize("journey", [PARAMS, TRAITS], ids=["nan-param", "nul-trait"])
def test_a_command_no_consumer_could_store_is_refused(journey: str) -> None:
    # As validating the command refused it: the input goes to the dead-letter topic.
    p = Prospect.of(compiled(journey))
    with pytest.raises(ValueError, match=r"NUL|not a JSON number"):
        p.touch(TouchpointType.LEAD_CAPTURED)


def test_stable_id_of_no_parts_is_the_uuid5_of_nothing() -> None:
    assert stable_id() == uuid5(NAMESPACE, "") != UUID(int=0)
