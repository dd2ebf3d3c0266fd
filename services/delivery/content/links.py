"""The signed tracking links of one message (see ``shared.tracking``, served by ingest).

Every link carries the prospect, journey, version, step, content and command id, and
expires ``TRAYECTO_TRACKING_TTL_DAYS`` after the command was issued (so a retried send
carries the same links). Each distinct link is signed once per
message.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from shared.contract import DeliveryCommand
from shared.contract.enums import Channel, Emotion
from shared.settings import Settings
from shared.tracking import LinkClaims, LinkKind, expiry, link_url

from .templates import Where


class Links:
    """Link factory for one command; ``track`` is the templates' helper."""

    def __init__(self, command: DeliveryCommand, settings: Settings, where: Where) -> None:
        self._settings = settings
        self._where = where
        self._claims: dict[str, Any] = {
            "prospect_id": command.prospect_id,
            "journey": command.journey,
            "journey_version": command.journey_version,
            "step": command.step,
            "content": command.content,
            "command_id": str(command.command_id),
            "channel": command.channel,
            # From the command, not the send: a retried send carries the same links.
            "expires_at": expiry(settings, command.issued_at.timestamp()),
        }
        self.tracked_prefix = settings.public_url.rstrip("/") + "/t/"
        self._signed: dict[tuple[LinkKind, str | None, Channel | None], str] = {}

    def link(self, kind: LinkKind, url: str | None = None, channel: Channel | None = None) -> str:
        """A ``kind`` link to ``url`` (its target), on ``channel`` if not the send's."""
        key = (kind, url, channel)
        if key not in self._signed:
            claims = dict(self._claims, url=url)
            if channel is not None:
                claims["channel"] = channel
            try:
                signed = LinkClaims.model_validate(claims)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                    for e in exc.errors(include_url=False)
                )
                raise self._where.error(f"cannot sign a tracking link: {problems}") from exc
            self._signed[key] = link_url(self._settings, kind, signed)
        return self._signed[key]

    def track(self, url: str) -> str:
        """A click link redirecting to ``url``; tracking links and non-web URLs (mailto:,
        tel:, #anchors) are returned unchanged."""
        if url.startswith(self.tracked_prefix) or not url.lower().startswith(
            ("https://", "http://")
        ):
            return url
        return self.link("c", url)

    @property
    def open_pixel(self) -> str:
        return self.link("o")

    @property
    def unsubscribe(self) -> str:
        # The send's own channel: unsubscribing suppresses that channel.
        return self.link("u")

    def feedback(self) -> dict[str, str]:
        """One-click ratings: ``/t/f/{token}?emotion=positive|neutral|negative``."""
        base = self.link("f")
        return {emotion.value: f"{base}?emotion={emotion.value}" for emotion in Emotion}
