"""Running one journey run: from a step, execute instantly until it pauses or exits."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.trusted import replace

from ..journey.model import (
    BranchStep,
    ExitStep,
    GotoStep,
    SendStep,
    SplitStep,
    Step,
    UpdateStep,
    WaitForStep,
    WaitStep,
)
from . import timing
from .compiled import CompiledJourney
from .facts import add_score
from .sending import check, send
from .state import RunState
from .turn import Reason, SendOutcome, Turn, weighted_choice

MAX_STEPS = 200
"""Steps one run may take on one input before it exits with reason ``loop_limit``."""


def run_from(turn: Turn, c: CompiledJourney, run: RunState, step_id: str | None) -> RunState:
    """Execute from ``step_id`` (None: past the last step) until the run pauses or exits."""
    taken = 0
    while step_id is not None:
        if taken == MAX_STEPS:
            return exit_run(turn, run, "loop_limit")
        taken += 1
        step = c.steps[step_id]
        # A send's policy check comes first: its step transition says what it did.
        outcome = check(turn, c, step) if isinstance(step, SendStep) else None
        run = _enter(turn, c, run, step, outcome)
        run, step_id = _execute(turn, c, run, step, outcome)
        if run.waiting is not None or run.status == "exited":
            return run
    return exit_run(turn, run, "completed")


def move_stage(
    turn: Turn, run: RunState, stage: str | None, reason: Reason, step: str | None = None
) -> RunState:
    turn.emit(run, reason, run.stage, stage, step)
    return replace(run, {"stage": stage, "stage_entered_at": turn.now})


def exit_run(turn: Turn, run: RunState, reason: str) -> RunState:
    turn.emit(run, "exited", run.stage, None, run.step, exit_reason=reason)
    update = {"status": "exited", "waiting": None, "exit_reason": reason, "exited_at": turn.now}
    return replace(run, update)


def retry_send(turn: Turn, c: CompiledJourney, run: RunState, step: SendStep) -> RunState:
    """A deferred send whose timer fired: check the policies again, then go on.

    The check is a ``retried`` transition (the same stage): the history shows whether
    the send went, was deferred again or skipped."""
    run = replace(run, {"waiting": None})
    outcome = check(turn, c, step)
    turn.emit(run, "retried", run.stage, run.stage, step.id, run.variants.get(step.id), outcome)
    run, after = send(turn, c, run, step, outcome)
    return run if run.waiting is not None else run_from(turn, c, run, after)


def _enter(
    turn: Turn, c: CompiledJourney, run: RunState, step: Step, outcome: SendOutcome | None
) -> RunState:
    visits = {**run.visits, step.id: run.visits.get(step.id, 0) + 1}
    update: dict[str, Any] = {"step": step.id, "step_entered_at": turn.now, "visits": visits}
    variant = _variant(turn, c, step)
    if variant is not None:
        update["variants"] = {**run.variants, step.id: variant}
    run = replace(run, update)
    before, stage = run.stage, step.map.stage
    after = stage if stage is not None and c.moves(before, stage) else before
    turn.emit(run, "step", before, after, step.id, variant, outcome)
    return move_stage(turn, run, after, "advanced", step.id) if after != before else run


def _variant(turn: Turn, c: CompiledJourney, step: Step) -> str | None:
    """The split arm or content variant of this prospect: the same on every run."""
    if isinstance(step, SplitStep):
        names, weights = [a.variant for a in step.split], [a.weight for a in step.split]
    elif isinstance(step, SendStep) and step.send.variants:
        names = [v.name for v in step.send.variants]
        weights = [v.weight for v in step.send.variants]
    else:
        return None
    return names[weighted_choice(f"{turn.prospect_id}:{c.id}:{step.id}", weights)]


def _execute(
    turn: Turn, c: CompiledJourney, run: RunState, step: Step, outcome: SendOutcome | None
) -> tuple[RunState, str | None]:
    """Run one step; returns the run and the step to go to next."""
    if isinstance(step, SendStep):
        assert outcome is not None
        return send(turn, c, run, step, outcome)
    if isinstance(step, WaitStep):
        if isinstance(step.wait, timedelta):
            due = turn.now + step.wait
        else:
            zone = timing.zone_of(turn.traits, c.journey.policies)
            due = timing.next_local(turn.now, zone, timing.clock(step.wait.time), step.wait.days)
        return turn.pause(run, step.id, due, "wait"), None
    if isinstance(step, WaitForStep):
        return turn.pause(run, step.id, turn.now + step.wait_for.timeout, "wait_for"), None
    if isinstance(step, BranchStep):
        facts = turn.conditions()
        cases = zip(step.branch, c.predicates[step.id], strict=True)
        return run, next((case.next for case, holds in cases if holds(facts)), step.else_)
    if isinstance(step, SplitStep):
        arm = next(a for a in step.split if a.variant == run.variants[step.id])
        return run, arm.next
    if isinstance(step, UpdateStep):
        for key, value in step.update.set.items():
            if value is None:
                turn.traits.pop(key, None)
            else:
                turn.traits[key] = value
        turn.facts = add_score(turn.facts, step.update.score)
        return run, step.next or c.following(step.id)
    if isinstance(step, GotoStep):
        return run, step.goto
    assert isinstance(step, ExitStep)
    return exit_run(turn, run, step.exit), None
