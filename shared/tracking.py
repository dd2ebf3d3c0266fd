"""Signed tracking links: who clicked what, carried in the link itself.

A token is the compact JSON of :class:`LinkClaims`, HMAC-SHA256-signed with the first of
``TRAYECTO_TRACKING_KEYS``; every key in the list verifies, so keys rotate without
breaking links already sent: put the new key first, keep the old one second until the
links it signed have expired, then remove it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Annotated, Any, Literal

from itsdangerous import BadSignature, URLSafeSerializer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .contract.enums import Channel
from .settings import Settings

SALT = "trayecto.link"
MAX_TOKEN_CHARS = 4096
FORMAT = 1
"""First element of every payload; a later format gets a new number, old links keep working."""

LinkKind = Literal["o", "c", "v", "d", "w/register", "w/attend", "u", "f"]
"""Open pixel, click, video page, PDF download, webinar registration/attendance,
unsubscribe, feedback."""

Keys = Settings | str | Sequence[str]
"""Settings, a comma-separated string as in the setting, or the keys (signing key first)."""

_Text = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")]


class InvalidToken(Exception):
    """A tracking token that must not be honoured."""


class ForgedToken(InvalidToken):
    """Not signed by any current key, or not a token at all."""


class ExpiredToken(InvalidToken):
    """Genuine, but past its ``expires_at``."""


class LinkClaims(BaseModel):
    """What a tracking link says about the prospect and the message it was sent in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prospect_id: _Text
    journey: _Text
    journey_version: int = Field(ge=1)
    step: _Text
    content: _Text
    command_id: str | None = Field(None, max_length=200)
    channel: Channel = Channel.EMAIL
    url: str | None = Field(None, max_length=2000, description="Click, PDF or webinar target")
    expires_at: int = Field(ge=0, description="Epoch seconds")
    kind: LinkKind | None = Field(
        None, description="The one endpoint the link is for (links signed before it: any)"
    )

    @field_validator("url")
    @classmethod
    def _http_only(cls, value: str | None) -> str | None:
        # Pages embed it and handlers redirect to it: never javascript:, data:, etc.
        if value is not None and not value.lower().startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value


# Positional payload (after FORMAT): new fields are only ever appended, with defaults.
_FIELDS = tuple(LinkClaims.model_fields)


def keys_of(keys: Keys) -> tuple[str, ...]:
    """The keys in the setting's order (the signing key first); at least one."""
    if isinstance(keys, Settings):
        keys = keys.tracking_keys.get_secret_value()
    if isinstance(keys, str):
        keys = keys.split(",")
    found = tuple(k.strip() for k in keys if k.strip())
    if not found:
        raise ValueError("no tracking key configured (TRAYECTO_TRACKING_KEYS)")
    return found


@lru_cache(maxsize=8)
def _serializer(keys: tuple[str, ...]) -> URLSafeSerializer:
    # itsdangerous signs with the LAST key of its list (and verifies with all of them),
    # while our setting names the signing key FIRST: hand it the list reversed.
    return URLSafeSerializer(
        list(reversed(keys)), salt=SALT, signer_kwargs={"digest_method": hashlib.sha256}
    )


def expiry(settings: Settings, now: float) -> int:
    """``expires_at`` for a link issued at ``now`` (epoch seconds)."""
    return int(now) + settings.tracking_ttl_days * 86_400


def sign_link(keys: Keys, claims: LinkClaims) -> str:
    """A URL-safe token carrying ``claims``, signed with the first key."""
    values = claims.model_dump(mode="json")
    payload: str = _serializer(keys_of(keys)).dumps([FORMAT, *(values[f] for f in _FIELDS)])
    return payload


def verify_link(keys: Keys, token: str, now: float) -> LinkClaims:
    """The claims of a genuine, unexpired token; raises ForgedToken or ExpiredToken."""
    if len(token) > MAX_TOKEN_CHARS:
        raise ForgedToken("token too long")
    try:
        data: Any = _serializer(keys_of(keys)).loads(token)
    except BadSignature as exc:
        raise ForgedToken("bad signature") from exc
    if not isinstance(data, list) or not data or data[0] != FORMAT:
        raise ForgedToken("unknown payload format")
    try:
        # Values past the known fields come from a newer signer: ignored, like unknown
        # fields on the wire, so links keep working during a rolling upgrade.
        claims = LinkClaims.model_validate(dict(zip(_FIELDS, data[1:], strict=False)))
    except ValidationError as exc:
        raise ForgedToken("invalid claims") from exc
    if now >= claims.expires_at:
        raise ExpiredToken(f"expired at {claims.expires_at}")
    return claims


_PATHS: dict[LinkKind, str] = {
    "o": "/t/o/{}",
    "c": "/t/c/{}",
    "v": "/t/v/{}",
    "d": "/t/d/{}",
    "w/register": "/t/w/{}/register",
    "w/attend": "/t/w/{}/attend",
    "u": "/t/u/{}",
    "f": "/t/f/{}",
}


def link_url(settings: Settings, kind: LinkKind, claims: LinkClaims) -> str:
    """The public URL of a tracking link, e.g. ``{public_url}/t/c/{token}``."""
    token = sign_link(settings, claims.model_copy(update={"kind": kind}))
    return settings.public_url.rstrip("/") + _PATHS[kind].format(token)
