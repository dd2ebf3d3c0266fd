"""Signed tracking links: who clicked what, carried in the link itself.

A token is the compact JSON of :class:`LinkClaims`, HMAC-SHA256-signed with the first of
``TRAYECTO_TRACKING_KEYS``; every other key verifies until the end of its grace period
(``KEY until 2026-06-30``, see :mod:`shared.tracking_keys`), so keys rotate in one
change without breaking links already sent: the new key first, the old one after it
with an end no earlier than the expiry of the links it signed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import zlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Annotated, Any, Literal

from itsdangerous import BadSignature, URLSafeSerializer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .contract.enums import Channel
from .settings import Settings
from .tracking_keys import TrackingKey, parse_keys, parse_setting

SALT = "trayecto.link"
MAX_TOKEN_CHARS = 4096
FORMAT = 1
"""First element of every payload; a later format gets a new number, old links keep working."""

LinkKind = Literal["o", "c", "v", "d", "w/register", "w/attend", "u", "f"]
"""Open pixel, click, video page, PDF download, webinar registration/attendance,
unsubscribe, feedback."""

Keys = Settings | str | Sequence[str]
"""Settings, a comma-separated string as in the setting, or its entries (signing key first)."""

_Text = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")]


class InvalidToken(Exception):
    """A tracking token that must not be honoured."""


class ForgedToken(InvalidToken):
    """Not signed by any current key, or not a token at all."""


class ExpiredToken(InvalidToken):
    """Genuine, but past its ``expires_at``."""


class RetiredKeyToken(ExpiredToken):
    """Genuine, but signed by a key whose grace period has ended (answered like expired)."""


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


def keys_of(keys: Keys) -> tuple[TrackingKey, ...]:
    """The keys in the setting's order (the signing key first), each with the end of its
    grace period; at least one. ValueError (naming the variable) for a bad entry."""
    if isinstance(keys, Settings):
        keys = keys.tracking_keys.get_secret_value()
    found = _parse_setting(keys) if isinstance(keys, str) else parse_keys(keys)
    if not found:
        raise ValueError("no tracking key configured (TRAYECTO_TRACKING_KEYS)")
    return found


@lru_cache(maxsize=8)
def _parse_setting(value: str) -> tuple[TrackingKey, ...]:
    return parse_setting(value)  # signing a link must not parse the setting each time


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


def _signed_by(keys: tuple[TrackingKey, ...], token: str) -> bool:
    try:
        _serializer(keys).loads(token)
    except BadSignature:
        return False
    return True


class _Signer:
    """``_serializer(keys).dumps`` (itsdangerous' URL-safe format, the tokens it verifies),
    with the key derivation and the HMAC's key set-up done once instead of per token."""

    def __init__(self, key: str) -> None:
        # itsdangerous' default "django-concat" derivation of the signing key.
        derived = hashlib.sha256(SALT.encode() + b"signer" + key.encode()).digest()
        self._mac = hmac.new(derived, digestmod=hashlib.sha256)

    def dumps(self, payload: list[Any]) -> str:
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        compressed = zlib.compress(data)
        shorter = len(compressed) < len(data) - 1  # as itsdangerous: compressed if shorter
        body = b"." + _b64(compressed) if shorter else _b64(data)
        mac = self._mac.copy()
        mac.update(body)
        return (body + b"." + _b64(mac.digest())).decode("ascii")


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@lru_cache(maxsize=8)
def _signer(key: str) -> _Signer:
    return _Signer(key)


def sign_link(keys: Keys, claims: LinkClaims) -> str:
    """A URL-safe token carrying ``claims``, signed with the first key."""
    return _sign(keys, claims.model_dump(mode="json"))


def _sign(keys: Keys, values: dict[str, Any]) -> str:
    return _signer(str(keys_of(keys)[0])).dumps([FORMAT, *(values[f] for f in _FIELDS)])


def verify_link(keys: Keys, token: str, now: float) -> LinkClaims:
    """The claims of a genuine, unexpired token; raises ForgedToken or ExpiredToken.

    A key verifies only while ``now`` is before the end of its grace period; a token
    signed only by a key past it raises :class:`RetiredKeyToken` (an ExpiredToken).
    """
    if len(token) > MAX_TOKEN_CHARS:
        raise ForgedToken("token too long")
    ring = keys_of(keys)
    live = tuple(k for k in ring if k.verifies_at(now))  # the signing key always is
    try:
        data: Any = _serializer(live).loads(token)
    except BadSignature as exc:
        retired = tuple(k for k in ring if not k.verifies_at(now))
        if retired and _signed_by(retired, token):
            # Nothing is honoured either way; 410 tells a prospect their old link has
            # lapsed, and keeps 403 for what no key of ours ever signed.
            raise RetiredKeyToken("signed by a key past its grace period") from exc
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
    token = _sign(settings, {**claims.model_dump(mode="json"), "kind": kind})
    return settings.public_url.rstrip("/") + _PATHS[kind].format(token)
