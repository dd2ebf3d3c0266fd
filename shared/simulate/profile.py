"""The simulation profile: who the prospects are and how they behave, per persona and stage.

A profile is a YAML file (``shared/simulate/profiles/default.yaml`` is the default, and
documents every field in comments); :func:`load_profile` parses it into the models below
and reports every problem with its field path (``personas.smb-owner.email.contact.open``).
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

Stage = Literal["stranger", "visitor", "contact", "prospect", "customer", "promoter"]
STAGES: tuple[Stage, ...] = ("stranger", "visitor", "contact", "prospect", "customer", "promoter")
Probability = Annotated[float, Field(ge=0, le=1)]
Weight = Annotated[float, Field(ge=0)]
Scalar = str | int | float | bool
DEFAULT_PROFILE = "default.yaml"


class ProfileError(ValueError):
    """A profile that cannot be used; the message names each bad field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Trait(_Model):
    """How one trait (or event property) is drawn: exactly one of value, range, choices."""

    value: Scalar | None = None
    range: tuple[int, int] | None = None
    choices: dict[str, Weight] | None = None
    awake_hours: tuple[int, int] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Trait:
        given = [k for k in ("value", "range", "choices") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of value, range or choices")
        if self.range is not None and self.range[0] > self.range[1]:
            raise ValueError("range: the first number must not be larger than the second")
        if self.choices is not None and not sum(self.choices.values()) > 0:
            raise ValueError("choices: at least one weight must be positive")
        if self.awake_hours is not None:
            start, end = self.awake_hours
            if not (0 <= start < end <= 24):
                raise ValueError("awake_hours: [start, end) with 0 <= start < end <= 24")
            for zone in self.choices or {}:
                try:
                    ZoneInfo(zone)
                except (ZoneInfoNotFoundError, ValueError) as exc:
                    raise ValueError(f"awake_hours: {zone!r} is not an IANA time zone") from exc
        return self


class Utm(_Model):
    """One ad placement: UTM source and medium, and how often it brings prospects."""

    source: str = Field(min_length=1, max_length=100)
    medium: str = Field(min_length=1, max_length=100)
    weight: Weight = 1.0


class Visit(_Model):
    """Stranger → visitor: page views after the ad click."""

    probability: Probability
    pages: tuple[int, int] = (1, 1)
    paths: list[str] = Field(default_factory=lambda: ["/"], min_length=1)

    @model_validator(mode="after")
    def _pages(self) -> Visit:
        if not 1 <= self.pages[0] <= self.pages[1] <= 50:
            raise ValueError("pages: [min, max] with 1 <= min <= max <= 50")
        return self


class Lead(_Model):
    """Visitor → contact: the lead form (an identify, then the lead event)."""

    probability: Probability
    event: str = Field("form_submitted", min_length=1, max_length=200)
    identify: Probability = 1.0
    properties: dict[str, Trait] = Field(default_factory=dict)


class Conversion(_Model):
    """A track event fired while in ``stage``; it moves the prospect to stage ``to``."""

    stage: Stage
    event: str = Field(min_length=1, max_length=200)
    probability: Probability
    to: Stage
    properties: dict[str, Trait] = Field(default_factory=dict)


class EmailOverride(_Model):
    """The fields of :class:`EmailBehaviour` to change for one step or content id."""

    open: Probability | None = None
    click: Probability | None = None
    video: list[tuple[int, Probability]] | None = None
    pdf: Probability | None = None
    webinar_register: Probability | None = None
    webinar_attend: Probability | None = None
    feedback: Probability | None = None
    feedback_negative: Probability | None = None
    feedback_neutral: Probability | None = None
    unsubscribe: Probability | None = None

    @field_validator("video")
    @classmethod
    def _video(cls, value: list[tuple[int, float]] | None) -> list[tuple[int, float]] | None:
        if value is not None:
            _check_depths(value)
        return value

    @model_validator(mode="after")
    def _shares(self) -> EmailOverride:
        if (self.feedback_negative or 0) + (self.feedback_neutral or 0) > 1 + 1e-9:
            raise ValueError("feedback_negative + feedback_neutral must not exceed 1")
        return self


class EmailBehaviour(EmailOverride):
    """What a prospect does with one email, in one stage. All but ``open`` need an open."""

    open: Probability = 0.0
    click: Probability = 0.0
    video: list[tuple[int, Probability]] = Field(default_factory=lambda: [(0, 1.0)])
    pdf: Probability = 0.0
    webinar_register: Probability = 0.0
    webinar_attend: Probability = 0.0
    feedback: Probability = 0.0
    feedback_negative: Probability = 0.0
    feedback_neutral: Probability = 0.0
    unsubscribe: Probability = 0.0
    overrides: dict[str, EmailOverride] = Field(default_factory=dict)

    def for_email(self, *keys: str | None) -> EmailBehaviour:
        """This behaviour with the overrides of the first key (step or content id) found."""
        for key in keys:
            if key is not None and key in self.overrides:
                changes = self.overrides[key].model_dump(exclude_none=True)
                return self.model_copy(update=changes)
        return self


def _check_depths(depths: list[tuple[int, float]]) -> None:
    if not depths:
        raise ValueError("give at least one [percent, probability]")
    for percent, _ in depths:
        if not 0 <= percent <= 100:
            raise ValueError(f"percent {percent} is not within 0-100")
    if not math.isclose(sum(p for _, p in depths), 1.0, abs_tol=1e-6):
        raise ValueError("the probabilities must add up to 1")


class Persona(_Model):
    """One buyer persona: its share of the campaign mix, who they are and what they do."""

    weight: Weight
    journey_prefix: str = Field(min_length=1, max_length=100)
    campaigns: list[str] = Field(min_length=1)
    utm: list[Utm] = Field(min_length=1)
    landing_url: str = Field(pattern=r"^https?://")
    traits: dict[str, Trait] = Field(default_factory=dict)
    visit: Visit
    lead: Lead
    conversions: list[Conversion] = Field(default_factory=list)
    email: dict[Stage, EmailBehaviour] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Persona:
        wrong = [c for c in self.campaigns if not c.startswith(self.journey_prefix)]
        if wrong:
            raise ValueError(f"campaigns {wrong} do not start with {self.journey_prefix!r}")
        if not sum(u.weight for u in self.utm) > 0:
            raise ValueError("utm: at least one weight must be positive")
        for c in self.conversions:
            if STAGES.index(c.to) <= STAGES.index(c.stage):
                raise ValueError(f"conversion {c.event!r}: 'to' must be a later stage")
        return self

    def email_in(self, stage: Stage) -> EmailBehaviour | None:
        """The behaviour of ``stage``, else of the nearest earlier stage that has one."""
        for earlier in reversed(STAGES[: STAGES.index(stage) + 1]):
            if earlier in self.email:
                return self.email[earlier]
        return None


class Profile(_Model):
    """A whole simulation profile."""

    email_domain: str = Field("example.com", pattern=r"^[a-z0-9.-]+\.[a-z]{2,}$")
    stitch_identity: bool = True
    patience_s: float = Field(20.0, gt=0, le=3600)
    think_s: tuple[float, float] = (0.1, 0.8)
    video_beacon_s: float = Field(0.3, ge=0, le=60)
    concurrency: int = Field(200, ge=1, le=10_000)
    personas: dict[str, Persona] = Field(min_length=1)

    @model_validator(mode="after")
    def _positive_mix(self) -> Profile:
        if not sum(p.weight for p in self.personas.values()) > 0:
            raise ValueError("personas: at least one weight must be positive")
        if not 0 <= self.think_s[0] <= self.think_s[1]:
            raise ValueError("think_s: [min, max] with 0 <= min <= max")
        return self


def parse_profile(data: object, source: str = "<profile>") -> Profile:
    """Validate already-parsed YAML; raises ProfileError naming every bad field."""
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        ]
        raise ProfileError(f"{source}: invalid profile\n" + "\n".join(lines)) from exc


def load_profile(path: Path | None = None) -> Profile:
    """The profile in ``path``, or the default one shipped with the package."""
    if path is None:
        text = resources.files(__package__).joinpath("profiles", DEFAULT_PROFILE).read_text()
        source = f"<default profile {DEFAULT_PROFILE}>"
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProfileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        source = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{source}: not valid YAML: {exc}") from exc
    return parse_profile(data, source)
