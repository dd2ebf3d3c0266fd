"""The pure journey engine: ``decide(state, prospect, input, journeys, live, now)``.

No I/O and no clock: the runtime loads a prospect's state, calls ``decide`` and stores
the decision (state, commands, timers, transitions) in one transaction.
"""

from .compiled import CompiledJourney, compile_journey
from .engine import decide
from .state import Decision, Input, ProspectState, RunState, TimerRequest, Waiting

__all__ = [
    "CompiledJourney",
    "Decision",
    "Input",
    "ProspectState",
    "RunState",
    "TimerRequest",
    "Waiting",
    "compile_journey",
    "decide",
]
