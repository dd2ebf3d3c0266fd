"""Decisions: who each prospect is and what it will do, drawn from the seed alone.

Everything a prospect decides up front (persona, campaign, traits, pages, lead,
conversions) comes from ``random.Random(f"{seed}:{index}")``; what it does with an email
comes from a generator of its own, keyed by the seed, the prospect and the email's
content (and how many of that content it got before), so the decisions do not depend
on the order or the moment emails arrive.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar
from zoneinfo import ZoneInfo

from pydantic import JsonValue

from .profile import EmailBehaviour, Persona, Profile, Stage, Trait

T = TypeVar("T")
MILESTONES = (25, 50, 75)


@dataclass(frozen=True, slots=True)
class Step:
    """A conversion the prospect will make: the event, its properties, the stage reached."""

    event: str
    properties: dict[str, JsonValue]
    to: Stage


@dataclass(frozen=True, slots=True)
class ProspectPlan:
    """Everything a prospect decided before its ad click."""

    index: int
    prospect_id: str
    persona: str
    campaign: str
    source: str
    medium: str
    landing_url: str
    pages: tuple[str, ...]
    """Paths of the page views after the ad click (none: the prospect bounced)."""
    lead: bool
    identify: bool
    lead_event: str
    lead_properties: dict[str, JsonValue]
    traits: dict[str, JsonValue]
    conversions: tuple[Step, ...]
    """In order; the chain stops at the first conversion the prospect does not make."""

    @property
    def email(self) -> str | None:
        value = self.traits.get("email")
        return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Reaction:
    """What a prospect does with one email (links it does not have are skipped)."""

    open: bool = False
    click: int | None = None
    """Which click link (an index, modulo how many the email has)."""
    video_percent: int = 0
    pdf: bool = False
    register: bool = False
    attend: bool = False
    feedback: str | None = None
    unsubscribe: bool = False


def weighted(rng: random.Random, options: Sequence[tuple[T, float]]) -> T:
    """One of ``options`` by weight (weights need not add up to 1; one must be positive)."""
    total = sum(w for _, w in options)
    point = rng.random() * total
    for option, w in options:
        point -= w
        if point < 0:
            return option
    return next(option for option, w in reversed(options) if w > 0)


def choose_persona(rng: random.Random, profile: Profile, personas: Sequence[str] | None) -> str:
    """A persona by the profile's weights, among ``personas`` when given."""
    names = list(personas) if personas else list(profile.personas)
    return weighted(rng, [(n, profile.personas[n].weight) for n in names])


def awake_zones(trait: Trait, now: datetime) -> dict[str, float]:
    """The trait's time zones whose local hour is within ``awake_hours`` (all if none)."""
    assert trait.choices is not None
    if trait.awake_hours is None:
        return dict(trait.choices)
    start, end = trait.awake_hours
    awake = {
        zone: w
        for zone, w in trait.choices.items()
        if start <= now.astimezone(ZoneInfo(zone)).hour < end and w > 0
    }
    return awake or dict(trait.choices)


def draw_value(rng: random.Random, trait: Trait, now: datetime) -> JsonValue:
    """One value of a trait or property."""
    if trait.range is not None:
        return rng.randint(*trait.range)
    if trait.choices is not None:
        choices = awake_zones(trait, now) if trait.awake_hours else trait.choices
        return weighted(rng, sorted(choices.items()))
    return trait.value


def _draw_all(
    rng: random.Random, specs: Mapping[str, Trait], now: datetime
) -> dict[str, JsonValue]:
    return {name: draw_value(rng, spec, now) for name, spec in specs.items()}


def prospect_id(run_id: str, index: int) -> str:
    """``sim-<run>-<index>``: also the local part of the prospect's email address."""
    return f"sim-{run_id}-{index:06d}"


def plan_prospect(
    profile: Profile,
    *,
    seed: int,
    index: int,
    run_id: str,
    personas: Sequence[str] | None = None,
    now: datetime | None = None,
) -> ProspectPlan:
    """The decisions of prospect ``index``: the same for the same seed, index and profile.

    ``now`` only matters for time-zone traits with ``awake_hours``.
    """
    rng = random.Random(f"{seed}:{index}")
    now = now or datetime.now(UTC)
    name = choose_persona(rng, profile, personas)
    persona = profile.personas[name]
    campaign = rng.choice(persona.campaigns)
    utm = weighted(rng, [(u, u.weight) for u in persona.utm])
    paths: tuple[str, ...] = ()
    if rng.random() < persona.visit.probability:
        count = rng.randint(*persona.visit.pages)
        paths = tuple(rng.choice(persona.visit.paths) for _ in range(count))
    lead = bool(paths) and rng.random() < persona.lead.probability
    identify = rng.random() < persona.lead.identify
    pid = prospect_id(run_id, index)
    traits = {**_draw_all(rng, persona.traits, now), "email": f"{pid}@{profile.email_domain}"}
    lead_properties = _draw_all(rng, persona.lead.properties, now)
    return ProspectPlan(
        index=index,
        prospect_id=pid,
        persona=name,
        campaign=campaign,
        source=utm.source,
        medium=utm.medium,
        landing_url=persona.landing_url,
        pages=paths,
        lead=lead,
        identify=identify,
        lead_event=persona.lead.event,
        lead_properties=lead_properties,
        traits=traits,
        conversions=_conversions(rng, persona, now) if lead else (),
    )


def _conversions(rng: random.Random, persona: Persona, now: datetime) -> tuple[Step, ...]:
    steps: list[Step] = []
    stage: Stage = "contact"
    while True:
        options = [c for c in persona.conversions if c.stage == stage]
        made = [c for c in options if rng.random() < c.probability]
        if not made:
            return tuple(steps)
        step = made[0]
        steps.append(Step(step.event, _draw_all(rng, step.properties, now), step.to))
        stage = step.to


def react(
    behaviour: EmailBehaviour,
    *,
    seed: int,
    index: int,
    content: str,
    nth: int,
) -> Reaction:
    """What prospect ``index`` does with its ``nth`` email of ``content`` (from 0)."""
    rng = random.Random(f"{seed}:{index}:{content}:{nth}")
    if rng.random() >= behaviour.open:
        return Reaction()
    click = rng.randrange(1 << 16) if rng.random() < behaviour.click else None
    video = weighted(rng, behaviour.video)
    pdf = rng.random() < behaviour.pdf
    register = rng.random() < behaviour.webinar_register
    attend = register and rng.random() < behaviour.webinar_attend
    feedback: str | None = None
    if rng.random() < behaviour.feedback:
        mood = rng.random()
        negative, neutral = behaviour.feedback_negative, behaviour.feedback_neutral
        feedback = "positive"
        if mood < negative:
            feedback = "negative"
        elif mood < negative + neutral:
            feedback = "neutral"
    unsubscribe = rng.random() < behaviour.unsubscribe
    return Reaction(True, click, video, pdf, register, attend, feedback, unsubscribe)


def milestones(percent: int) -> list[int]:
    """The beacons the video page's player sends for a prospect who watched ``percent``."""
    reached = [m for m in MILESTONES if percent >= m]
    return [*reached, 100] if percent >= 100 else reached
