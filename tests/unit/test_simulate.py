"""The campaign simulator without services: profile, decisions, link extraction, driver."""

from __future__ import annotations

import copy
import email
import email.policy
import json
import mailbox
from collections import Counter
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
import yaml
from pydantic import SecretStr

from services.delivery.content import load_catalogue
from services.delivery.render import RenderedMessage, render
from shared.contract import DeliveryCommand
from shared.settings import Settings
from shared.simulate import (
    Profile,
    ProfileError,
    choose_persona,
    extract_links,
    load_profile,
    parse_email,
    parse_profile,
    plan_prospect,
    react,
    simulate,
)
from shared.simulate.links import peek_claims
from shared.simulate.plan import awake_zones, milestones
from shared.simulate.profile import Trait
from shared.simulate.stats import Stats

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_YAML = ROOT / "shared" / "simulate" / "profiles" / "default.yaml"
PUBLIC = "http://ingest.test"
SETTINGS = Settings(public_url=PUBLIC, tracking_keys=SecretStr("simulate-test-key"))
CATALOGUE = load_catalogue(ROOT / "content")
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def default_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DEFAULT_YAML.read_text())
    return data


def rendered(content: str, prospect: str = "sim-t-000001", step: str = "a-step") -> EmailMessage:
    item = CATALOGUE.items[content]
    command = DeliveryCommand.model_validate(
        {
            "prospect_id": prospect,
            "command_id": uuid4(),
            "journey": "it-manager",
            "journey_version": 1,
            "step": step,
            "content": content,
            "content_type": item.type,
            "channel": "email",
            "recipient": {"prospect_id": prospect, "email": f"{prospect}@example.com"},
            "issued_at": NOW,
        }
    )
    message = render(command, CATALOGUE, SETTINGS, NOW)
    assert isinstance(message, RenderedMessage)
    data = message.to_email_message("Trayecto <hola@trayecto.localhost>").as_bytes()
    received = email.message_from_bytes(data, policy=email.policy.default)  # as captured
    assert isinstance(received, EmailMessage)
    return received


# ---------------------------------------------------------------- profile


def test_the_default_profile_loads_with_the_three_seed_personas() -> None:
    profile = load_profile()
    assert set(profile.personas) == {"smb-owner", "it-manager", "procurement-lead"}
    for persona in profile.personas.values():
        assert persona.weight > 0
        assert all(c.startswith(persona.journey_prefix) for c in persona.campaigns)
        assert persona.email_in("contact") is not None
    assert load_profile(DEFAULT_YAML) == profile


def test_the_seed_journeys_accept_the_default_campaigns() -> None:
    journeys = {
        yaml.safe_load(path.read_text())["persona"]["id"]: yaml.safe_load(path.read_text())
        for path in (ROOT / "journeys").glob("*.yaml")
    }
    for name, persona in load_profile().personas.items():
        entry = json.dumps(journeys[name]["entry"])
        assert f'"startswith": "{persona.journey_prefix}"' in entry, name


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("smb-owner.email.contact.open", 1.5),
        ("it-manager.visit.probability", -0.1),
        ("procurement-lead.lead.identify", 2),
        ("smb-owner.email.contact.overrides.trial-reminder.feedback", 1.01),
        ("smb-owner.conversions.0.probability", -1),
    ],
)
def test_bad_probabilities_are_refused_with_their_field_path(where: str, value: float) -> None:
    data = default_data()
    node: Any = data["personas"]
    parts: list[Any] = [int(p) if p.isdigit() else p for p in where.split(".")]
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    with pytest.raises(ProfileError) as error:
        parse_profile(data, "p.yaml")
    assert f"personas.{where}: Input should be" in str(error.value)
    assert str(error.value).startswith("p.yaml: invalid profile")


def test_other_profile_mistakes_are_refused(tmp_path: Path) -> None:
    data = default_data()
    data["personas"]["it-manager"]["email"]["contact"]["video"] = [[0, 0.5], [100, 0.4]]
    data["personas"]["smb-owner"]["traits"]["company_size"] = {"range": [1, 49], "value": 3}
    data["personas"]["smb-owner"]["typo"] = 1
    with pytest.raises(ProfileError) as error:
        parse_profile(data)
    message = str(error.value)
    assert "it-manager.email.contact.video" in message
    assert "add up to 1" in message
    assert "exactly one of value, range or choices" in message
    assert "personas.smb-owner.typo" in message
    data = default_data()
    data["personas"]["smb-owner"]["campaigns"] = ["it-wrong-prefix"]
    with pytest.raises(ProfileError, match=r"personas\.smb-owner: .* do not start with 'smb-'"):
        parse_profile(data)
    bad = tmp_path / "bad.yaml"
    bad.write_text("personas: [unclosed")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile(bad)


def test_awake_hours_keep_the_zones_where_it_is_daytime() -> None:
    trait = Trait(
        choices={"Europe/Madrid": 1, "America/Mexico_City": 1, "Asia/Tokyo": 1},
        awake_hours=(10, 18),
    )
    # 15:00 UTC: 16:00 in Madrid, 09:00 in Mexico City, 00:00 in Tokyo.
    assert set(awake_zones(trait, NOW)) == {"Europe/Madrid"}
    night = Trait(choices={"Asia/Tokyo": 1}, awake_hours=(10, 18))
    assert set(awake_zones(night, NOW)) == {"Asia/Tokyo"}  # none awake: all of them
    with pytest.raises(ValueError, match="not an IANA time zone"):
        Trait(choices={"Mars/Olympus": 1}, awake_hours=(10, 18))


# ---------------------------------------------------------------- decisions


def test_a_prospects_plan_is_the_same_for_the_same_seed() -> None:
    profile = load_profile()
    for index in range(50):
        first = plan_prospect(profile, seed=7, index=index, run_id="r1", now=NOW)
        again = plan_prospect(profile, seed=7, index=index, run_id="r1", now=NOW)
        assert first == again
        assert first.prospect_id == f"sim-r1-{index:06d}"
        assert first.traits["email"] == f"sim-r1-{index:06d}@example.com"
    plans = [plan_prospect(profile, seed=7, index=i, run_id="r1", now=NOW) for i in range(50)]
    others = [plan_prospect(profile, seed=8, index=i, run_id="r1", now=NOW) for i in range(50)]
    differ = sum(a != b for a, b in zip(plans, others, strict=True))
    assert differ >= 45, differ
    assert {p.persona for p in plans} == set(profile.personas)
    assert any(p.lead and p.conversions for p in plans)
    assert any(not p.pages for p in plans)  # some bounce after the ad click


def test_email_reactions_depend_on_seed_prospect_content_and_count_only() -> None:
    behaviour = load_profile().personas["it-manager"].email["contact"]
    args: dict[str, Any] = {"seed": 3, "index": 9, "content": "it-video-intro", "nth": 0}
    assert react(behaviour, **args) == react(behaviour, **args)
    draws = [react(behaviour, **{**args, "index": i}) for i in range(400)]
    opened = [r for r in draws if r.open]
    assert 0.65 < len(opened) / len(draws) < 0.85  # open: 0.75
    assert not any(r.click is not None or r.feedback for r in draws if not r.open)
    assert {r.video_percent for r in opened} == {0, 25, 50, 75, 100}
    assert all(r.register for r in opened if r.attend)
    assert {r.feedback for r in opened} == {None, "positive", "neutral", "negative"}
    override = behaviour.for_email("video-reinvite", "it-video-reinvite")
    assert override.video == [(0, 0.5), (50, 0.2), (100, 0.3)]
    assert behaviour.for_email("nope", None) is behaviour


def test_the_video_beacons_are_the_players_milestones() -> None:
    assert milestones(0) == []
    assert milestones(25) == [25]
    assert milestones(60) == [25, 50]
    assert milestones(99) == [25, 50, 75]
    assert milestones(100) == [25, 50, 75, 100]


def test_the_persona_mix_follows_the_weights() -> None:
    import random

    profile = load_profile()
    rng = random.Random(11)
    counts = Counter(choose_persona(rng, profile, None) for _ in range(1000))
    total = sum(p.weight for p in profile.personas.values())
    for name, persona in profile.personas.items():
        assert abs(counts[name] / 1000 - persona.weight / total) < 0.05, counts
    only = Counter(choose_persona(rng, profile, ["it-manager", "smb-owner"]) for _ in range(1000))
    assert set(only) == {"it-manager", "smb-owner"}
    assert abs(only["smb-owner"] / 1000 - 5 / 8) < 0.05, only
    plans = Counter(
        plan_prospect(profile, seed=5, index=i, run_id="m", now=NOW).persona for i in range(1000)
    )
    assert abs(plans["procurement-lead"] / 1000 - 0.2) < 0.05, plans


# ---------------------------------------------------------------- links in emails


def test_every_kind_of_tracked_link_is_found_in_real_emails() -> None:
    message = extract_links(rendered("smb-pricing"))
    assert message.kinds() == {"open", "click", "feedback", "unsubscribe"}
    assert (message.open or "").startswith(f"{PUBLIC}/t/o/")
    assert all(c.startswith(f"{PUBLIC}/t/c/") for c in message.clicks)
    assert set(message.feedback) == {"positive", "neutral", "negative"}
    assert message.feedback["negative"].endswith("?emotion=negative")
    assert "/t/u/" in (message.unsubscribe or "")
    video = extract_links(rendered("it-video-intro"))
    assert (video.video or "").startswith(f"{PUBLIC}/t/v/")
    pdf = extract_links(rendered("it-pdf-summary"))
    assert (pdf.pdf or "").startswith(f"{PUBLIC}/t/d/")
    webinar = extract_links(rendered("it-webinar-invite"))
    assert (webinar.register or "").endswith("/register")
    assert (webinar.attend or "").endswith("/attend")


def test_the_join_link_is_found_in_the_calendar_attachment_alone() -> None:
    full = rendered("it-webinar-invite")
    ics = next(p for p in full.walk() if p.get_content_type() == "text/calendar")
    only_ics = EmailMessage(policy=email.policy.default)
    only_ics["To"] = "x@example.com"
    only_ics.set_content("no links here")
    payload = ics.get_content()
    data = payload if isinstance(payload, bytes) else payload.encode()
    only_ics.add_attachment(data, maintype="text", subtype="calendar", filename="invite.ics")
    links = extract_links(only_ics)
    assert links.attend == extract_links(full).attend
    assert links.attend is not None


def test_a_delivered_email_is_read_with_its_recipient_content_and_step() -> None:
    message = rendered("it-video-reinvite", prospect="sim-AB-000042", step="video-reinvite")
    received = parse_email("key-1", message.as_bytes())
    assert received is not None
    assert received.to == "sim-ab-000042@example.com"
    assert received.content == "it-video-reinvite"
    assert received.step == "video-reinvite"
    assert received.links.video is not None
    claims = peek_claims(received.links.video)
    assert claims is not None
    assert claims[1] == "sim-AB-000042"
    assert peek_claims("https://elsewhere.example/t/x") is None


# ---------------------------------------------------------------- the driver


class FakeIngest:
    """Answers like ingest; a lead gets a video, a PDF and a webinar email in the Maildir."""

    def __init__(self, maildir: Path) -> None:
        self.box = mailbox.Maildir(maildir, create=True)
        self.calls: Counter[str] = Counter()
        self.beacons: list[int] = []
        self.failures = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        if path.startswith("/v1/"):
            if self.failures:
                self.failures -= 1
                return httpx.Response(503, headers={"Retry-After": "0"})
            body = json.loads(request.content)
            self.calls[body.get("event", path)] += 1
            if body.get("event") in ("lead_captured", "form_submitted"):
                for content in ("it-video-intro", "it-pdf-summary", "it-webinar-invite"):
                    self.box.add(rendered(content, prospect=body["userId"]).as_bytes())
            return httpx.Response(200, json={"success": True, "published": 1, "duplicates": 0})
        kind = path.split("/")[2]
        self.calls[f"{method} {kind}"] += 1
        if kind == "v" and method == "POST":
            self.beacons.append(json.loads(request.content)["percent"])
        if kind in ("c", "d") or path.endswith("/attend"):
            return httpx.Response(302, headers={"Location": "https://trayecto.example/"})
        return httpx.Response(200, text="ok")


def all_in_profile() -> Profile:
    data = default_data()
    persona = data["personas"]["it-manager"]
    persona["visit"]["probability"] = 1.0
    persona["lead"]["probability"] = 1.0
    persona["email"]["contact"] = {
        "open": 1.0,
        "click": 1.0,
        "video": [[100, 1.0]],
        "pdf": 1.0,
        "webinar_register": 1.0,
        "webinar_attend": 1.0,
        "feedback": 1.0,
        "feedback_negative": 1.0,
        "unsubscribe": 1.0,
    }
    data.update(patience_s=0.8, think_s=[0, 0.01], video_beacon_s=0)
    return parse_profile(data)


async def run_fake(tmp_path: Path, seed: int, failures: int = 0) -> tuple[Stats, FakeIngest]:
    fake = FakeIngest(tmp_path / f"mail-{seed}-{failures}")
    fake.failures = failures
    stats = await simulate(
        SETTINGS,
        prospects=4,
        rate=50,
        seed=seed,
        personas=["it-manager"],
        duration=20,
        ingest_url=PUBLIC,
        write_key="tk_test",
        maildir=Path(fake.box._path),
        profile=all_in_profile(),
        run_id="unit",
        now=NOW,
        transport=httpx.MockTransport(fake),
    )
    return stats, fake


async def test_prospects_click_leave_details_and_follow_every_link(tmp_path: Path) -> None:
    stats, fake = await run_fake(tmp_path, seed=1)
    assert (stats.started, stats.finished) == (4, 4)
    assert stats.events["ad_click"] == 4
    assert stats.events["identify"] == 4
    assert stats.events["form_submitted"] == 4
    assert stats.emails == 12
    for kind in ("open", "click", "feedback", "unsubscribe"):
        assert stats.links[kind] == 12, kind  # every email has these
    for kind in ("video_page", "pdf", "register", "attend"):
        assert stats.links[kind] == 4, kind  # one email each
    assert stats.links["video_progress"] == 16
    assert fake.beacons.count(100) == 4
    assert fake.calls["POST u"] == 12
    assert stats.touchpoints["email_opened"] == 12
    assert stats.touchpoints["unsubscribed"] == 12
    assert not stats.errors
    assert "prospects" in stats.summary()
    assert json.dumps(stats.to_dict())
    again, _ = await run_fake(tmp_path, seed=1)
    assert (again.events, again.links) == (stats.events, stats.links)


async def test_a_503_is_retried_once_and_errors_are_counted(tmp_path: Path) -> None:
    stats, _ = await run_fake(tmp_path, seed=2, failures=3)
    assert stats.retries == 2
    assert stats.errors == Counter({"HTTP 503": 1})
    assert stats.finished == 4


async def test_an_unreachable_ingest_is_counted_not_raised(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    stats = await simulate(
        SETTINGS,
        prospects=3,
        rate=100,
        seed=1,
        personas=None,
        duration=5,
        ingest_url=PUBLIC,
        write_key="k",
        maildir=None,
        profile=load_profile(),
        transport=httpx.MockTransport(refuse),
    )
    assert stats.finished == 3
    assert stats.errors["ConnectError"] >= 3
    assert not stats.events


async def test_duration_stops_the_run(tmp_path: Path) -> None:
    profile = copy.deepcopy(default_data())
    profile["patience_s"] = 60
    stats = await simulate(
        SETTINGS,
        prospects=1000,
        rate=20,
        seed=1,
        personas=None,
        duration=1.0,
        ingest_url=PUBLIC,
        write_key="k",
        maildir=tmp_path,
        profile=parse_profile(profile),
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json={})),
    )
    assert 5 <= stats.started <= 60
    assert stats.finished == stats.started
    assert stats.elapsed < 4


# ---------------------------------------------------------------- the command


def test_the_command_needs_a_running_ingest(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from shared.cli.main import app

    runner = CliRunner()
    # Port 9 (discard) on loopback: nothing listens there in a test environment.
    args = ["simulate", "--prospects", "1", "--ingest-url", "http://127.0.0.1:9"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "run `trayecto up` first" in result.output
    result = runner.invoke(app, [*args, "--personas", "smb-owner,astronaut"])
    assert result.exit_code == 2
    assert "unknown persona(s) astronaut" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"personas": {}}))
    result = runner.invoke(app, [*args, "--profile", str(bad)])
    assert result.exit_code == 1
    assert "personas" in result.output
