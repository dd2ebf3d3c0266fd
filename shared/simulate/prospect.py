"""One simulated prospect: the ad click, the visit, the lead, then reacting to emails.

The prospect acts through ingest's public API and the tracked links in its emails
only. Its decisions come from its :class:`~shared.simulate.plan.ProspectPlan` and, per
email, from :func:`~shared.simulate.plan.react`; timing never changes a decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

from pydantic import JsonValue

from services.ingest.normalise import touchpoint_type

from .api import Api
from .links import ReceivedEmail
from .maildir import Mailbox
from .plan import ProspectPlan, milestones, react
from .profile import Profile, Stage
from .stats import Stats

POLL_S = 0.25


@dataclass(frozen=True, slots=True)
class Context:
    """What every prospect of a run shares."""

    api: Api
    profile: Profile
    seed: int
    stats: Stats
    stop: asyncio.Event
    mailbox: Mailbox | None


class Prospect:
    """Runs one :class:`ProspectPlan` to its end, or until the run stops."""

    def __init__(self, ctx: Context, plan: ProspectPlan) -> None:
        self.ctx = ctx
        self.plan = plan
        self.persona = ctx.profile.personas[plan.persona]
        stitch = ctx.profile.stitch_identity
        self.anonymous_id = f"anon-{plan.prospect_id}" if stitch else plan.prospect_id
        self.identified = False
        self.stage: Stage = "stranger"
        self._received: Counter[str] = Counter()
        # Only timing comes from this generator, never a decision.
        self._timing = random.Random(f"{ctx.seed}:{plan.index}:timing")

    # ---------------------------------------------------------------- helpers

    def _who(self) -> dict[str, JsonValue]:
        if self.identified:
            return {"userId": self.plan.prospect_id}
        return {"anonymousId": self.anonymous_id}

    def _campaign(self) -> dict[str, JsonValue]:
        p = self.plan
        return {"name": p.campaign, "source": p.source, "medium": p.medium}

    def _landing(self) -> str:
        p = self.plan
        query = urlencode(
            {"utm_source": p.source, "utm_medium": p.medium, "utm_campaign": p.campaign}
        )
        parts = urlsplit(p.landing_url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))

    async def _pause(self, seconds: float) -> bool:
        """Sleep unless the run stops first; True when it is still going."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ctx.stop.wait(), seconds)
        return not self.ctx.stop.is_set()

    async def _think_a_moment(self) -> bool:
        return await self._pause(self._timing.uniform(*self.ctx.profile.think_s))

    async def _track(
        self, event: str, properties: dict[str, JsonValue], touchpoint: str, key: str
    ) -> bool:
        body: dict[str, JsonValue] = {
            **self._who(),
            "event": event,
            "properties": properties,
            "context": {"campaign": self._campaign()},
            "messageId": f"{self.plan.prospect_id}:{key}",
        }
        return await self.ctx.api.call("/v1/track", body, event, touchpoint)

    # ---------------------------------------------------------------- the funnel

    async def run(self) -> None:
        """The whole life of the prospect; never raises (failures are counted)."""
        stats, plan = self.ctx.stats, self.plan
        stats.started += 1
        stats.personas[plan.persona] += 1
        box = self.ctx.mailbox
        try:
            await self._arrive()
            if plan.lead and not self.ctx.stop.is_set():
                queue = box.watch(plan.email) if box is not None and plan.email else None
                await self._leave_details()
                if self.stage == "contact":  # the lead was accepted
                    await self._engage(queue)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one prospect's bug must not end the run
            stats.errors[type(exc).__name__] += 1
        finally:
            stats.finished += 1
            if box is not None and plan.email:
                box.forget(plan.email)

    async def _arrive(self) -> None:
        """The ad click, then the page views (stranger → visitor)."""
        landing = self._landing()
        await self._track("ad_click", {"url": landing}, "ad_click", "ad_click")
        self.stage = "stranger"
        referrer = None
        for n, path in enumerate(self.plan.pages):
            if not await self._think_a_moment():
                return
            parts = urlsplit(self.plan.landing_url)
            url = landing if n == 0 else urlunsplit((parts.scheme, parts.netloc, path, "", ""))
            properties: dict[str, JsonValue] = {"url": url, "path": path, "title": path}
            if referrer:
                properties["referrer"] = referrer
            body: dict[str, JsonValue] = {
                "anonymousId": self.anonymous_id,
                "name": path,
                "properties": properties,
                "messageId": f"{self.plan.prospect_id}:page:{n}",
            }
            if n == 0:
                body["context"] = {"campaign": self._campaign()}
            if await self.ctx.api.call("/v1/page", body, "page", "page_view"):
                self.stage = "visitor"
            referrer = url

    async def _leave_details(self) -> None:
        """The lead form: an identify with the traits, then the lead event (→ contact)."""
        plan = self.plan
        if not await self._think_a_moment():
            return
        if plan.identify:
            body: dict[str, JsonValue] = {
                "userId": plan.prospect_id,
                "anonymousId": self.anonymous_id,
                "traits": dict(plan.traits),
                "messageId": f"{plan.prospect_id}:identify",
            }
            self.identified = await self.ctx.api.call("/v1/identify", body, "identify", None)
        touchpoint = _touchpoint(plan.lead_event)
        if await self._track(plan.lead_event, dict(plan.lead_properties), touchpoint, "lead"):
            self.stage = "contact"

    async def _engage(self, queue: asyncio.Queue[ReceivedEmail] | None) -> None:
        """Emails until quiet for ``patience_s``, then the stage's conversion, and again."""
        for n, step in enumerate((*self.plan.conversions, None)):
            if not await self._read_until_quiet(queue):
                return
            if step is None:
                return
            if await self._track(
                step.event, dict(step.properties), _touchpoint(step.event), f"conversion:{n}"
            ):
                self.stage = step.to

    async def _read_until_quiet(self, queue: asyncio.Queue[ReceivedEmail] | None) -> bool:
        loop = asyncio.get_running_loop()
        quiet_at = loop.time() + self.ctx.profile.patience_s
        while not self.ctx.stop.is_set():
            left = quiet_at - loop.time()
            if left <= 0:
                return True
            if queue is None:
                await self._pause(min(left, POLL_S))
                continue
            try:
                message = await asyncio.wait_for(queue.get(), min(left, POLL_S))
            except TimeoutError:
                continue
            self.ctx.stats.emails += 1
            await self._handle(message)
            quiet_at = loop.time() + self.ctx.profile.patience_s
        return False

    async def _handle(self, message: ReceivedEmail) -> None:
        """Open, click, watch, download, register, attend, rate, unsubscribe: as drawn."""
        behaviour = self.persona.email_in(self.stage)
        if behaviour is None:
            return
        behaviour = behaviour.for_email(message.step, message.content)
        nth = self._received[message.content]
        self._received[message.content] += 1
        r = react(
            behaviour, seed=self.ctx.seed, index=self.plan.index, content=message.content, nth=nth
        )
        links, api = message.links, self.ctx.api
        if not r.open or links.open is None:
            return
        await api.follow(links.open, "open")
        actions: list[tuple[bool, str | None, str]] = [
            (
                r.click is not None and bool(links.clicks),
                links.clicks[(r.click or 0) % len(links.clicks)] if links.clicks else None,
                "click",
            ),
            (r.pdf, links.pdf, "pdf"),
            (r.register, links.register, "register"),
            (r.attend and links.register is not None, links.attend, "attend"),
            (r.feedback is not None, links.feedback.get(r.feedback or ""), "feedback"),
        ]
        if r.video_percent > 0 and links.video is not None:
            if not await self._think_a_moment():
                return
            await self._watch(links.video, r.video_percent)
        for wanted, url, kind in actions:
            if wanted and url is not None:
                if not await self._think_a_moment():
                    return
                await api.follow(url, kind)
        if r.unsubscribe and links.unsubscribe is not None:
            # RFC 8058 one-click: a POST with this body, as mail clients send it.
            await api.follow(
                links.unsubscribe, "unsubscribe", "POST", data={"List-Unsubscribe": "One-Click"}
            )

    async def _watch(self, url: str, percent: int) -> None:
        """The video page, then its player's beacons up to ``percent`` (as its script does)."""
        api = self.ctx.api
        if not await api.follow(url, "video_page"):
            return
        # The page's script POSTs {"percent": m} to its own path, once per milestone.
        parts = urlsplit(url)
        beacon_url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        for milestone in milestones(percent):
            if not await self._pause(self.ctx.profile.video_beacon_s):
                return
            await api.follow(beacon_url, "video_progress", "POST", json={"percent": milestone})


def _touchpoint(event: str) -> str:
    """The touchpoint type ingest makes of an event name (unknown names: ``custom``)."""
    return touchpoint_type(event).value
