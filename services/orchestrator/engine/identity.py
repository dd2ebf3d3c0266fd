"""An anonymous prospect identifies: its journeys go on as the known prospect.

Journeys usually start anonymously (an ad click); the lead form then identifies the
visitor, and from then on its events carry the user id, a different prospect key. Without
a hand-over the run would wait under the anonymous id for ever.
"""

from __future__ import annotations

from uuid import UUID

from .facts import merge_facts
from .state import ProspectState, RunState


def adopt(
    user: ProspectState | None, anonymous: ProspectState | None, user_id: str
) -> tuple[ProspectState | None, ProspectState | None, list[UUID]]:
    """(user, anonymous, ids of the runs moved): the anonymous prospect's active runs move
    to the user, in each journey where the user has no active run of its own, with the
    traits (the user's win), facts (added up), recent sends and suppressed channels.

    Runs the user already has stay as they are; so do the anonymous prospect's other
    runs. Adopting twice moves nothing the second time.
    """
    if anonymous is None or not anonymous.runs:
        return user, anonymous, []
    user = user or ProspectState(prospect_id=user_id)
    moved = {
        journey: _numbered_after(run, user.runs.get(journey))
        for journey, run in anonymous.runs.items()
        if run.status == "active"
        and (journey not in user.runs or user.runs[journey].status != "active")
    }
    if not moved:
        return user, anonymous, []
    user = user.model_copy(
        update={
            "runs": {**user.runs, **moved},
            "traits": {**anonymous.traits, **user.traits},
            "facts": merge_facts(anonymous.facts, user.facts),
            "sends": sorted([*anonymous.sends, *user.sends]),
            "suppressed": sorted({*anonymous.suppressed, *user.suppressed}),
        }
    )
    kept = {j: r for j, r in anonymous.runs.items() if j not in moved}
    anonymous = anonymous.model_copy(update={"runs": kept})
    return user, anonymous, [run.run_id for run in moved.values()]


def _numbered_after(run: RunState, users_last: RunState | None) -> RunState:
    """The moved run, numbered after the user's last run of the journey.

    A run's id is derived from its prospect, journey and number, and so are its
    commands' and timers' ids: the user's next run must not take a number the user
    already used, or its sends would be dropped as duplicates of that earlier run's.
    """
    if users_last is None or run.number > users_last.number:
        return run
    return run.model_copy(update={"number": users_last.number + 1})
