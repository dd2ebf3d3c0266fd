"""The journey definition format (YAML), as pydantic models: the JSON Schema comes from here.

A journey is for one persona: who enters (entry), the funnel stages and the goals that
move a prospect to a stage from anywhere, the decision tree of steps, and the policies
every send obeys. ``docs/journeys.md`` documents the format with examples.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from shared.contract.enums import Channel, ContentType, Emotion, Stage, TouchpointType

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,99}$")]
StepId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,99}$")]
DEFAULT_STAGES: tuple[str, ...] = tuple(s.value for s in Stage)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _duration(value: Any) -> Any:
    """``90s``, ``15m``, ``2h``, ``3d``, ``1w`` (or an ISO 8601 duration / seconds)."""
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    Field(gt=timedelta(0)),
    WithJsonSchema(
        {
            "description": "90s, 15m, 2h, 3d, 1w, an ISO 8601 duration, or seconds",
            "anyOf": [
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[smhdw]\s*$"},
                {"type": "string", "format": "duration"},
                {"type": "number", "exclusiveMinimum": 0},
            ],
        }
    ),
]
Scalar = bool | int | float | str


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---------------------------------------------------------------- conditions


class Compare(_Model):
    """A comparison on one value: exactly one subject and one operator.

    Subjects: ``trait`` (prospect traits), ``fact`` (per-prospect aggregates, see
    docs/journeys.md), ``prop`` (the triggering event's properties, dotted paths) and
    ``field`` (the triggering event's own fields: type, name, channel, source,
    campaign.source, campaign.medium, campaign.name, emotion).
    """

    trait: str | None = None
    fact: str | None = None
    prop: str | None = None
    field: str | None = None
    eq: Scalar | None = None
    ne: Scalar | None = None
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    in_: list[Scalar] | None = Field(None, alias="in")
    not_in: list[Scalar] | None = None
    exists: bool | None = None
    contains: str | None = None
    startswith: str | None = None

    @model_validator(mode="after")
    def _one_subject_one_operator(self) -> Compare:
        subjects = [k for k in ("trait", "fact", "prop", "field") if getattr(self, k) is not None]
        if len(subjects) != 1:
            raise ValueError("a comparison needs exactly one of trait, fact, prop or field")
        operators = [k for k in OPERATORS if getattr(self, k) is not None]
        if len(operators) != 1:
            raise ValueError(
                "a comparison needs exactly one operator of "
                + ", ".join("in" if k == "in_" else k for k in OPERATORS)
            )
        return self

    @property
    def subject(self) -> tuple[str, str]:
        for kind in ("trait", "fact", "prop", "field"):
            value = getattr(self, kind)
            if value is not None:
                return kind, value
        raise AssertionError("validated: one subject")

    @property
    def operator(self) -> tuple[str, Any]:
        for name in OPERATORS:
            value = getattr(self, name)
            if value is not None:
                return ("in" if name == "in_" else name), value
        raise AssertionError("validated: one operator")


OPERATORS = (
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in_",
    "not_in",
    "exists",
    "contains",
    "startswith",
)


class All(_Model):
    all: list[Condition] = Field(min_length=1)


class AnyOf(_Model):
    any: list[Condition] = Field(min_length=1)


class Not(_Model):
    not_: Condition = Field(alias="not")


def _condition_kind(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("all", "any", "not"):
            if key in value:
                return key
        return "compare"
    if isinstance(value, BaseModel):
        kinds: dict[type[BaseModel], str] = {All: "all", AnyOf: "any", Not: "not"}
        return kinds.get(type(value), "compare")
    return "compare"


Condition = Annotated[
    Annotated[All, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[Not, Tag("not")]
    | Annotated[Compare, Tag("compare")],
    Discriminator(_condition_kind),
]


# ---------------------------------------------------------------- events


def _event_name(value: str) -> str:
    known = {t.value for t in TouchpointType}
    if value in known or value.startswith("custom:"):
        return value
    raise ValueError(
        f"unknown event {value!r}: use a touchpoint type ({', '.join(sorted(known))}) "
        "or custom:<event name as sent>"
    )


EventName = Annotated[str, Field(min_length=1, max_length=200)]


class EventMatch(_Model):
    """An event of one touchpoint type (or ``custom:<name>``), with optional conditions."""

    event: EventName
    when: Condition | None = None

    @field_validator("event")
    @classmethod
    def _known_event(cls, value: str) -> str:
        return _event_name(value)


# ---------------------------------------------------------------- annotations and steps


class Annotations(_Model):
    """What the journey map shows for a step or goal."""

    stage: str | None = Field(None, description="Stage the touchpoint belongs to on the map")
    channel: Channel | None = None
    emotion: Emotion | None = Field(None, description="Expected emotion")
    title: str | None = Field(None, max_length=200)


class _Step(_Model):
    id: StepId
    map: Annotations = Field(default_factory=Annotations)


class Variant(_Model):
    name: Slug
    content: Slug
    weight: float = Field(1.0, gt=0)


class SendAction(_Model):
    content: Slug = Field(description="Catalogue content id")
    type: ContentType = ContentType.EMAIL
    channel: Channel = Channel.EMAIL
    variants: list[Variant] = Field(default_factory=list, description="A/B/n content variants")
    params: dict[str, Scalar] = Field(default_factory=dict, description="Template parameters")


class SendStep(_Step):
    send: SendAction
    next: StepId | None = None


class WaitUntil(_Model):
    """Until the next local time of day in the prospect's time zone (optionally on given days)."""

    time: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=list
    )


class WaitStep(_Step):
    wait: Duration | WaitUntil
    next: StepId | None = None


class WaitForAction(EventMatch):
    timeout: Duration


class WaitForStep(_Step):
    wait_for: WaitForAction
    next: StepId | None = Field(None, description="Where to go when the event comes")
    on_timeout: StepId = Field(description="Where to go when it does not come in time")


class BranchCase(_Model):
    when: Condition
    next: StepId


class BranchStep(_Step):
    branch: list[BranchCase] = Field(min_length=1)
    else_: StepId = Field(alias="else")


class SplitArm(_Model):
    variant: Slug
    weight: float = Field(gt=0)
    next: StepId


class SplitStep(_Step):
    split: list[SplitArm] = Field(min_length=2)


class UpdateAction(_Model):
    set: dict[str, Scalar | None] = Field(default_factory=dict)
    score: float = 0


class UpdateStep(_Step):
    update: UpdateAction
    next: StepId | None = None


class GotoStep(_Step):
    goto: StepId


class ExitStep(_Step):
    exit: str = Field("completed", min_length=1, max_length=100, description="Exit reason")


STEP_KINDS = ("send", "wait", "wait_for", "branch", "split", "update", "goto", "exit")


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        found = [k for k in STEP_KINDS if k in value]
        return found[0] if len(found) == 1 else None
    return _STEP_TYPES.get(type(value))


_STEP_TYPES: dict[type, str] = {
    SendStep: "send",
    WaitStep: "wait",
    WaitForStep: "wait_for",
    BranchStep: "branch",
    SplitStep: "split",
    UpdateStep: "update",
    GotoStep: "goto",
    ExitStep: "exit",
}

Step = Annotated[
    Annotated[SendStep, Tag("send")]
    | Annotated[WaitStep, Tag("wait")]
    | Annotated[WaitForStep, Tag("wait_for")]
    | Annotated[BranchStep, Tag("branch")]
    | Annotated[SplitStep, Tag("split")]
    | Annotated[UpdateStep, Tag("update")]
    | Annotated[GotoStep, Tag("goto")]
    | Annotated[ExitStep, Tag("exit")],
    Discriminator(
        _step_kind,
        custom_error_type="step_kind",
        custom_error_message="a step needs exactly one of " + ", ".join(STEP_KINDS),
    ),
]


# ---------------------------------------------------------------- journey


class Persona(_Model):
    id: Slug
    title: str | None = Field(None, max_length=200)
    when: Condition | None = Field(None, description="Which prospects (conditions on traits)")


class Entry(EventMatch):
    reentry: Literal["never", "after_exit", "always"] = "never"
    map: Annotations = Field(default_factory=Annotations, description="The entry touchpoint")


class Goal(EventMatch):
    stage: str
    map: Annotations = Field(default_factory=Annotations)


class FrequencyCap(_Model):
    max_sends: int = Field(ge=1)
    per: Duration
    when_capped: Literal["defer", "skip"] = "defer"


class QuietHours(_Model):
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="Local time, e.g. 21:00")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="Local time, e.g. 08:00")
    when_quiet: Literal["defer", "skip"] = "defer"


class Policies(_Model):
    frequency_cap: FrequencyCap | None = None
    quiet_hours: QuietHours | None = None
    timezone_trait: str = Field("timezone", description="Trait holding an IANA time zone")
    default_timezone: str = Field("UTC", description="When the prospect has none")


class Journey(_Model):
    """One journey definition file."""

    journey: Slug = Field(description="Journey id; publishing it again makes a new version")
    title: str = Field(max_length=200)
    description: str | None = Field(None, max_length=4000)
    persona: Persona
    entry: Entry
    stages: list[Slug] = Field(default_factory=lambda: list(DEFAULT_STAGES), min_length=2)
    allow_backward: bool = Field(False, description="Whether goals may move a prospect back")
    goals: list[Goal] = Field(default_factory=list)
    policies: Policies = Field(default_factory=Policies)
    locale_trait: str = Field("locale", description="Trait holding the prospect's locale")
    default_locale: Literal["es", "en"] = "es"
    steps: list[Step] = Field(min_length=1)

    @property
    def first_step(self) -> str:
        return self.steps[0].id


All.model_rebuild()
AnyOf.model_rebuild()
Not.model_rebuild()
