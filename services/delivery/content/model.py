"""The catalogue file format (``content/catalogue.yaml``), as pydantic models.

Copy (subjects, headings, paragraphs...) is written per locale; every copy string is a
Jinja2 text template rendered with the recipient, the params and the item's facts, then
escaped by the HTML layout. Type-specific data (video, pdf, event, social) sits in a
block named after the type.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)

from shared.contract.enums import ContentType

ContentId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,99}$")]
Locale = Annotated[str, Field(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")]
TemplateName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
HttpUrl = Annotated[str, Field(pattern=r"^https?://[^\s<>\"']+$", max_length=1500)]
FileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
Copy = Annotated[str, Field(min_length=1, max_length=5000)]
_DURATION = re.compile(r"^\s*(?:(\d+)h)?\s*(?:(\d+)m(?:in)?)?\s*$")
_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{2})$")


def _minutes(value: Any) -> Any:
    """``45m``, ``1h``, ``1h30m`` or a number of minutes."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(minutes=value)
    if isinstance(value, str) and (match := _DURATION.match(value)) and any(match.groups()):
        return timedelta(hours=int(match.group(1) or 0), minutes=int(match.group(2) or 0))
    return value


def _seconds(value: Any) -> Any:
    """``4:12``, ``1:02:30`` or a number of seconds."""
    if isinstance(value, str) and (match := _CLOCK.match(value.strip())):
        hours, minutes, seconds = (int(g or 0) for g in match.groups())
        return hours * 3600 + minutes * 60 + seconds
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Link(_Model):
    label: Copy
    url: HttpUrl


class LocaleText(_Model):
    """The copy of one item in one locale."""

    subject: Annotated[str, Field(min_length=1, max_length=200)]
    preheader: Annotated[str, Field(max_length=300)] = ""
    heading: Copy | None = None
    body: list[Copy] = Field(default_factory=list, description="Paragraphs")
    bullets: list[Copy] = Field(default_factory=list)
    highlight: Copy | None = Field(None, description="A boxed key message (an offer, a date)")
    cta: Annotated[str, Field(max_length=100)] | None = Field(None, description="Button label")
    url: HttpUrl | None = Field(None, description="This locale's target of the button")
    links: list[Link] = Field(default_factory=list, description="Secondary links")
    signature: Copy | None = None
    text: Copy | None = Field(None, description="Short form: social posts and webhooks")
    event_title: Copy | None = Field(None, description="Calendar title in this locale")
    file: FileName | None = Field(None, description="This locale's PDF in content/files")


class LocaleOverride(_Model):
    """What a variant changes in one locale: any field of :class:`LocaleText`."""

    subject: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    preheader: Annotated[str, Field(max_length=300)] | None = None
    heading: Copy | None = None
    body: list[Copy] | None = None
    bullets: list[Copy] | None = None
    highlight: Copy | None = None
    cta: Annotated[str, Field(max_length=100)] | None = None
    url: HttpUrl | None = None
    links: list[Link] | None = None
    signature: Copy | None = None
    text: Copy | None = None


class Variant(_Model):
    template: TemplateName | None = None
    locales: dict[Locale, LocaleOverride] = Field(default_factory=dict)


class Video(_Model):
    file: FileName | None = Field(None, description="A WebM or MP4 file in content/files")
    video_url: HttpUrl | None = Field(None, description="Or an absolute URL")
    duration: Annotated[int, BeforeValidator(_seconds), Field(gt=0, description="Seconds")]
    poster: HttpUrl | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Video:
        if (self.file is None) == (self.video_url is None):
            raise ValueError("a video needs exactly one of file or video_url")
        return self


class Pdf(_Model):
    file: FileName | None = Field(None, description="A file in content/files")
    url: HttpUrl | None = Field(None, description="Or an absolute URL")
    pages: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> Pdf:
        if (self.file is None) == (self.url is None):
            raise ValueError("a pdf needs exactly one of file or url")
        return self


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class Weekly(_Model):
    """A recurring session: the next one at least ``notice_days`` after the send."""

    day: Weekday
    time: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    notice_days: int = Field(2, ge=0, le=60)


class Organizer(_Model):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    email: Annotated[str, Field(pattern=r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")]


class Event(_Model):
    """A webinar or an in-person event."""

    title: Annotated[str, Field(min_length=1, max_length=200)]
    starts_at: AwareDatetime | None = Field(None, description="ISO 8601 with an offset")
    weekly: Weekly | None = None
    timezone: str = Field(description="IANA time zone shown to the reader, e.g. Europe/Madrid")
    duration: Annotated[timedelta, BeforeValidator(_minutes), Field(gt=timedelta(0))]
    location: Annotated[str, Field(min_length=1, max_length=300)]
    join_url: HttpUrl | None = Field(None, description="Online events: where to connect")
    register_url: HttpUrl | None = Field(None, description="Default: ingest's confirmation")
    organizer: Organizer

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _one_date(self) -> Event:
        if (self.starts_at is None) == (self.weekly is None):
            raise ValueError("an event needs exactly one of starts_at or weekly")
        return self


class Social(_Model):
    url: HttpUrl | None = None


_BLOCKS: dict[ContentType, str | None] = {
    ContentType.EMAIL: None,
    ContentType.VIDEO: "video",
    ContentType.PDF: "pdf",
    ContentType.WEBINAR_INVITE: "event",
    ContentType.EVENT_INVITE: "event",
    ContentType.SOCIAL_POST: "social",
}
DEFAULT_TEMPLATES: dict[ContentType, str | None] = {
    ContentType.EMAIL: "message",
    ContentType.VIDEO: "video",
    ContentType.PDF: "download",
    ContentType.WEBINAR_INVITE: "invitation",
    ContentType.EVENT_INVITE: "invitation",
    ContentType.SOCIAL_POST: None,
}


class ContentItem(_Model):
    """One piece of content, in every locale it is written in."""

    id: ContentId
    type: ContentType
    title: Annotated[str, Field(min_length=1, max_length=200, description="Internal name")]
    template: TemplateName | None = Field(None, description="Default: by type")
    url: HttpUrl | None = Field(None, description="Target of the button (emails, posts)")
    params: dict[str, JsonValue] = Field(default_factory=dict, description="Param defaults")
    locales: dict[Locale, LocaleText]
    variants: dict[TemplateName, Variant] = Field(default_factory=dict)
    video: Video | None = None
    pdf: Pdf | None = None
    event: Event | None = None
    social: Social | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ContentItem:
        if "es" not in self.locales:
            raise ValueError("locales: 'es' is required")
        wanted = _BLOCKS[self.type]
        for block in ("video", "pdf", "event", "social"):
            present = getattr(self, block) is not None
            if block == wanted and not present:
                raise ValueError(f"a {self.type.value} needs a {block!r} block")
            if block != wanted and present:
                raise ValueError(f"a {self.type.value} has no {block!r} block")
        if self.type is ContentType.SOCIAL_POST:
            missing = [loc for loc, text in self.locales.items() if text.text is None]
            if missing:
                raise ValueError(f"a social_post needs 'text' in every locale ({missing})")
        return self

    @property
    def template_name(self) -> str | None:
        return self.template or DEFAULT_TEMPLATES[self.type]


class Brand(_Model):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    website: HttpUrl
    address: Annotated[str, Field(min_length=1, max_length=300, description="Postal address")]
    color: str = Field("#0f766e", pattern=r"^#[0-9a-fA-F]{6}$")


class Strings(_Model):
    """The words of the shared layout in one locale (Jinja2 text, like item copy)."""

    greeting: Copy
    greeting_anonymous: Copy
    signature: Copy
    feedback: Copy
    positive: Copy
    neutral: Copy
    negative: Copy
    unsubscribe: Copy
    why: Copy
    more: Copy
    watch: Copy
    minutes: Copy
    download: Copy
    pages: Copy
    reserve: Copy
    join: Copy
    when: Copy
    where: Copy
    calendar: Copy
    ics_filename: FileName
    date_format: Copy = Field(description="{weekday} {day} {month} {year} {time} {zone}")
    weekdays: list[Copy] = Field(min_length=7, max_length=7, description="Monday first")
    months: list[Copy] = Field(min_length=12, max_length=12)


class CatalogueFile(_Model):
    """The top level of ``catalogue.yaml`` (items are checked one by one)."""

    brand: Brand
    strings: dict[Locale, Strings]
    items: list[dict[str, Any]] = Field(min_length=1)

    @model_validator(mode="after")
    def _both_languages(self) -> CatalogueFile:
        missing = [loc for loc in ("es", "en") if loc not in self.strings]
        if missing:
            raise ValueError(f"strings: missing locale(s) {missing}")
        return self
