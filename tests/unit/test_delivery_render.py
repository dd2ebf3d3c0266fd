"""Content catalogue and rendering: every item in es and en, links that verify, escaping,
the sandbox, strict variables, locale fallback, variants, headers, the .ics and MIME."""

from __future__ import annotations

import email
import email.generator
import email.policy
import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import icalendar
import pytest
import yaml
from jinja2.exceptions import SecurityError
from pydantic import SecretStr

from services.delivery.content import (
    Catalogue,
    CatalogueError,
    Links,
    RenderedMessage,
    RenderedPayload,
    RenderError,
    Where,
    load_catalogue,
    make_environment,
)
from services.delivery.render import render
from shared.contract import DeliveryCommand
from shared.contract.enums import Channel, ContentType
from shared.settings import Settings
from shared.tracking import LinkClaims, verify_link

ROOT = Path(__file__).resolve().parents[2]
CONTENT = ROOT / "content"
PUBLIC = "https://go.trayecto.example"
SETTINGS = Settings(
    public_url=PUBLIC, tracking_keys=SecretStr("render-test-key"), tracking_ttl_days=30
)
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # a Wednesday
ANA = {
    "prospect_id": "p-ana",
    "email": "ana@example.com",
    "name": "Ana García",
    "first_name": "Ana",
}
CATALOGUE = load_catalogue(CONTENT)
ITEMS = sorted(CATALOGUE.items)


def command(content: str, **changes: Any) -> DeliveryCommand:
    item = CATALOGUE.items.get(content)
    fields: dict[str, Any] = {
        "prospect_id": "p-ana",
        "command_id": uuid4(),
        "journey": "it-manager",
        "journey_version": 3,
        "step": "send-video",
        "content": content,
        "content_type": item.type if item else ContentType.EMAIL,
        "channel": Channel.EMAIL,
        "recipient": ANA,
        "issued_at": NOW,
        **changes,
    }
    return DeliveryCommand.model_validate(fields)


def message(content: str, catalogue: Catalogue = CATALOGUE, **changes: Any) -> RenderedMessage:
    rendered = render(command(content, **changes), catalogue, SETTINGS, NOW)
    assert isinstance(rendered, RenderedMessage)
    return rendered


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.hrefs.append(values["href"] or "")
        if tag == "img" and values.get("src"):
            self.images.append(values["src"] or "")


def links_of(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


def claims_of(url: str) -> tuple[str, LinkClaims]:
    """The kind (o, c, v, d, w/register, u, f...) and verified claims of a tracking link."""
    assert url.startswith(f"{PUBLIC}/t/"), url
    path = urlsplit(url).path.removeprefix("/t/")
    kind, _, rest = path.partition("/")
    token, _, action = rest.partition("/")
    return f"{kind}/{action}" if action else kind, verify_link(SETTINGS, token, NOW.timestamp())


# ---------------------------------------------------------------- every item


@pytest.mark.parametrize("content", ITEMS)
def test_every_item_has_es_and_en(content: str) -> None:
    assert {"es", "en"} <= set(CATALOGUE.items[content].locales)


@pytest.mark.parametrize("locale", ["es", "en"])
@pytest.mark.parametrize("content", ITEMS)
def test_every_item_renders_with_verifying_links(content: str, locale: str) -> None:
    sent = command(content, locale=locale)
    rendered = render(sent, CATALOGUE, SETTINGS, NOW)
    item = CATALOGUE.items[content]
    if isinstance(rendered, RenderedPayload):
        assert item.type is ContentType.SOCIAL_POST
        assert rendered.text
        assert rendered.url
        assert rendered.locale == locale
        kind, claims = claims_of(rendered.url)
        assert kind == "c"
        assert claims.url == (item.social.url if item.social else None)
        json.dumps(rendered.to_dict())
        return
    assert rendered.subject == " ".join(rendered.subject.split())
    assert f'<html lang="{locale}">' in rendered.html
    found = links_of(rendered.html)
    assert found.hrefs
    # The open pixel is the last thing in the body.
    assert rendered.html.rindex("<img") > rendered.html.rindex("</table>")
    expected = {
        "prospect_id": "p-ana",
        "journey": "it-manager",
        "journey_version": 3,
        "step": "send-video",
        "content": content,
        "command_id": str(sent.command_id),
        "expires_at": int(NOW.timestamp()) + 30 * 86_400,
    }
    kinds = set()
    for url in [*found.hrefs, found.images[-1]]:
        kind, claims = claims_of(url.partition("?")[0])
        kinds.add(kind)
        assert claims.model_dump(include=set(expected)) == expected
        assert url in rendered.text or kind in {"o", "c"}, f"{kind} link missing in the text part"
    assert {"o", "u", "f"} <= kinds
    primary = {
        ContentType.VIDEO: "v",
        ContentType.PDF: "d",
        ContentType.WEBINAR_INVITE: "w/register",
        ContentType.EVENT_INVITE: "w/register",
    }.get(item.type)
    assert primary is None or primary in kinds
    assert found.images[-1].startswith(f"{PUBLIC}/t/o/")
    assert rendered.html.rstrip().endswith("</html>")
    assert bool(rendered.attachments) == (item.event is not None)


def test_video_pdf_and_webinar_links_carry_their_targets() -> None:
    video = links_of(message("it-video-intro").html).hrefs
    _, claims = claims_of(next(u for u in video if "/t/v/" in u))
    assert claims.url == f"{PUBLIC}/content/files/trayecto-intro.webm"
    assert claims.channel is Channel.VIDEO
    pdf = links_of(message("ent-security-whitepaper", locale="en").html).hrefs
    _, claims = claims_of(next(u for u in pdf if "/t/d/" in u))
    assert claims.url == f"{PUBLIC}/content/files/ent-security-whitepaper-en.pdf"
    webinar = links_of(message("it-webinar-invite").html).hrefs
    kinds = {claims_of(u.partition("?")[0])[0]: claims_of(u.partition("?")[0])[1] for u in webinar}
    assert kinds["w/register"].url is None
    assert kinds["w/attend"].url == "https://live.trayecto.example/webinar/arquitectura"
    assert kinds["w/attend"].channel is Channel.WEBINAR
    assert kinds["c"].url == "https://trayecto.example"


def test_a_hosted_video_links_to_its_url(tmp_path: Path) -> None:
    hosted = "https://media.example.com/videos/intro.mp4"

    def host(data: dict[str, Any], root: Path) -> None:
        _item(data, "smb-video-first-steps")["video"] = {"video_url": hosted, "duration": "3:05"}

    html = message("smb-video-first-steps", _copy(tmp_path, host)).html
    _, claims = claims_of(next(u for u in links_of(html).hrefs if "/t/v/" in u))
    assert claims.url == hosted


def test_files_come_from_the_content_base_url_when_one_is_set(tmp_path: Path) -> None:
    store = "https://cdn.example.com/trayecto/files/"
    settings = SETTINGS.model_copy(update={"content_base_url": store})
    hosted_pdf = "https://docs.example.com/hosted.pdf"

    def host(data: dict[str, Any], root: Path) -> None:
        _item(data, "ent-proposal-pack")["pdf"] = {"url": hosted_pdf, "pages": 2}
        for text in _item(data, "ent-proposal-pack")["locales"].values():
            text.pop("file", None)

    catalogue = _copy(tmp_path, host)

    def main_link(content: str, kind: str, **changes: Any) -> LinkClaims:
        rendered = render(command(content, **changes), catalogue, settings, NOW)
        assert isinstance(rendered, RenderedMessage)
        url = next(u for u in links_of(rendered.html).hrefs if f"/t/{kind}/" in u)
        return claims_of(url)[1]

    assert main_link("it-pdf-summary", "d").url == f"{store}it-video-summary-es.pdf"
    assert main_link("it-pdf-summary", "d", locale="en").url == f"{store}it-video-summary-en.pdf"
    assert main_link("it-video-intro", "v").url == f"{store}trayecto-intro.webm"
    assert main_link("ent-proposal-pack", "d").url == hosted_pdf  # a hosted file stays


def test_track_rewrites_web_links_only() -> None:
    links = Links(command("it-welcome"), SETTINGS, Where("it-welcome", "es"))
    already = f"{PUBLIC}/t/v/some-token"
    assert links.track(already) == already
    assert links.track("mailto:hola@trayecto.example") == "mailto:hola@trayecto.example"
    click = links.track("https://trayecto.example/precios?plan=pro&utm_source=email")
    kind, claims = claims_of(click)
    assert kind == "c"
    assert claims.url == "https://trayecto.example/precios?plan=pro&utm_source=email"
    assert links.track("https://trayecto.example/precios?plan=pro&utm_source=email") == click


def test_feedback_row_and_unsubscribe_in_both_parts() -> None:
    rendered = message("it-welcome")
    for emotion in ("positive", "neutral", "negative"):
        assert f"?emotion={emotion}" in rendered.html
        assert f"?emotion={emotion}" in rendered.text
    assert "😀" in rendered.html
    assert "😐" in rendered.html
    assert "☹" in rendered.html
    unsubscribe = rendered.headers["List-Unsubscribe"].strip("<>")
    assert unsubscribe in rendered.html
    assert unsubscribe in rendered.text


# ---------------------------------------------------------------- journeys


def _sends(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = [node["send"]] if isinstance(node.get("send"), dict) else []
        return found + [s for value in node.values() for s in _sends(value)]
    if isinstance(node, list):
        return [s for value in node for s in _sends(value)]
    return []


@pytest.mark.parametrize("journey", sorted((ROOT / "journeys").glob("*.yaml")), ids=str)
def test_every_content_a_journey_sends_is_in_the_catalogue(journey: Path) -> None:
    sends = _sends(yaml.safe_load(journey.read_text(encoding="utf-8")))
    assert sends
    for send in sends:
        wanted = ContentType(send.get("type", "email"))
        for content in [send["content"], *(v["content"] for v in send.get("variants", []))]:
            assert content in CATALOGUE, f"{journey.name}: {content} is not in the catalogue"
            assert CATALOGUE.items[content].type is wanted, content


# ---------------------------------------------------------------- escaping and sandbox


def test_recipient_and_params_are_escaped_in_html_not_in_text() -> None:
    evil = "<script>alert(1)</script>"
    recipient = {**ANA, "first_name": evil, "name": f"{evil} & co"}
    rendered = message("smb-offer-discount", recipient=recipient, params={"discount_percent": evil})
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert evil in rendered.text
    assert f"-{evil} %" in rendered.text
    assert rendered.to.display_name == f"{evil} & co"


def test_the_sandbox_refuses_python_internals() -> None:
    for env in (make_environment(), CATALOGUE.env):
        for source in ["{{ ''.__class__.__mro__ }}", "{{ track.__globals__ }}", "{{ d.clear() }}"]:
            with pytest.raises(SecurityError):
                env.from_string(source).render(track=lambda: None, d={})


def test_html_templates_escape_and_text_templates_do_not() -> None:
    env = make_environment(CONTENT / "templates")
    assert env.autoescape("message.html.j2") is True  # type: ignore[operator]
    assert env.autoescape("message.txt.j2") is False  # type: ignore[operator]
    assert env.from_string("{{ x }}").render(x="<b>") == "<b>"


def _copy(tmp_path: Path, change: Any) -> Catalogue:
    root = tmp_path / "content"
    shutil.copytree(CONTENT, root)
    data = yaml.safe_load((root / "catalogue.yaml").read_text(encoding="utf-8"))
    change(data, root)
    (root / "catalogue.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    return load_catalogue(root)


def _item(data: dict[str, Any], content: str) -> dict[str, Any]:
    item: dict[str, Any] = next(i for i in data["items"] if i["id"] == content)
    return item


def test_a_sandbox_escape_in_a_template_fails_the_render(tmp_path: Path) -> None:
    def evil(data: dict[str, Any], root: Path) -> None:
        (root / "templates" / "evil.html.j2").write_text("{{ ''.__class__.__mro__ }}")
        (root / "templates" / "evil.txt.j2").write_text("x")
        _item(data, "it-welcome")["template"] = "evil"

    with pytest.raises(RenderError, match=r"it-welcome.*'es'.*evil\.html\.j2.*SecurityError"):
        message("it-welcome", _copy(tmp_path, evil))


def test_a_missing_variable_names_content_locale_and_variable(tmp_path: Path) -> None:
    def typo(data: dict[str, Any], root: Path) -> None:
        _item(data, "it-onboarding")["locales"]["en"]["body"].append("{{ params.sla_hours }}")

    catalogue = _copy(tmp_path, typo)
    assert message("it-onboarding", catalogue).subject  # es does not use it
    with pytest.raises(RenderError) as failed:
        message("it-onboarding", catalogue, locale="en")
    assert (failed.value.content, failed.value.locale) == ("it-onboarding", "en")
    assert "body[1]" in str(failed.value)
    assert "sla_hours" in str(failed.value)


def test_copy_that_only_uses_the_brand_renders_once_and_its_failures_still_name_it(
    tmp_path: Path,
) -> None:
    def brand_only(data: dict[str, Any], root: Path) -> None:
        data["brand"]["name"] = "Marca <Nueva>"
        data["strings"]["es"]["why"] = "Te escribe {{ brand.name }}."
        data["strings"]["en"]["why"] = "From {{ brand.nope }}."  # fails at every send

    catalogue = _copy(tmp_path, brand_only)
    assert catalogue.copies["Te escribe {{ brand.name }}."] == "Te escribe Marca <Nueva>."
    rendered = message("it-welcome", catalogue)
    assert "Te escribe Marca <Nueva>." in rendered.text
    assert "Te escribe Marca &lt;Nueva&gt;." in rendered.html  # escaped where HTML uses it
    with pytest.raises(RenderError) as failed:
        message("it-welcome", catalogue, locale="en")
    assert "strings.why" in str(failed.value)
    assert "nope" in str(failed.value)


def test_a_template_typo_names_the_template(tmp_path: Path) -> None:
    def typo(data: dict[str, Any], root: Path) -> None:
        path = root / "templates" / "survey.txt.j2"
        path.write_text(path.read_text().replace("strings.positive", "strings.positve"))

    with pytest.raises(RenderError, match=r"it-nps-survey.*'es'.*survey\.txt\.j2.*positve"):
        message("it-nps-survey", _copy(tmp_path, typo))


def test_catalogue_problems_name_item_and_field(tmp_path: Path) -> None:
    def broken(data: dict[str, Any], root: Path) -> None:
        del _item(data, "it-welcome")["locales"]["es"]["subject"]
        _item(data, "smb-pricing")["locales"]["en"]["heading"] = "{{ oops"
        _item(data, "it-pdf-summary")["pdf"]["file"] = "missing.pdf"
        _item(data, "smb-offer-trial")["template"] = "nowhere"
        data["items"].append(dict(_item(data, "smb-pricing"), type="video"))

    with pytest.raises(CatalogueError) as failed:
        _copy(tmp_path, broken)
    text = str(failed.value)
    assert "item 'it-welcome': locales.es.subject: Field required" in text
    assert "item 'smb-pricing': locales.en.heading: TemplateSyntaxError" in text
    assert "item 'it-pdf-summary': pdf.file: files/missing.pdf is missing or not a PDF" in text
    assert "item 'smb-offer-trial': template: nowhere.html.j2: TemplateNotFound" in text
    assert "a video needs a 'video' block" in text
    assert len(failed.value.problems) == 6  # the duplicate id is reported too


def test_video_sources_are_checked(tmp_path: Path) -> None:
    def broken(data: dict[str, Any], root: Path) -> None:
        (root / "files" / "not-a-video.webm").write_bytes(b"<html></html>")
        _item(data, "it-video-intro")["video"] = {"file": "missing.webm", "duration": 60}
        _item(data, "it-video-reinvite")["video"] = {"file": "not-a-video.webm", "duration": 60}
        _item(data, "it-webinar-recording")["video"] = {"duration": 60}
        both = {"file": "trayecto-intro.webm", "video_url": "https://a.example/v.mp4"}
        _item(data, "smb-video-first-steps")["video"] = {**both, "duration": 60}

    with pytest.raises(CatalogueError) as failed:
        _copy(tmp_path, broken)
    text = str(failed.value)
    assert "item 'it-video-intro': video.file: files/missing.webm is missing or not a" in text
    assert "item 'it-video-reinvite': video.file: files/not-a-video.webm is missing" in text
    assert "item 'it-webinar-recording': video: Value error, a video needs exactly one" in text
    assert "item 'smb-video-first-steps': video: Value error, a video needs exactly one" in text
    assert len(failed.value.problems) == 4


# ---------------------------------------------------------------- locale and variants


def test_locale_fallback(tmp_path: Path) -> None:
    assert message("it-welcome", locale="en").subject == "Your Trayecto technical guide is here"
    assert message("it-welcome", locale="en-GB").subject.startswith("Your Trayecto")
    assert message("it-welcome", locale="fr").subject.startswith("Tu guía técnica")

    def spanish_only(data: dict[str, Any], root: Path) -> None:
        del _item(data, "it-referral-thanks")["locales"]["en"]

    rendered = message("it-referral-thanks", _copy(tmp_path, spanish_only), locale="en")
    assert rendered.subject == "¡Gracias por tu recomendación!"
    assert '<html lang="es">' in rendered.html


def test_variant_overrides_template_and_copy() -> None:
    base = message("it-demo-offer", locale="en")
    plain = message("it-demo-offer", locale="en", variant="plain")
    assert base.subject == "A 30-minute technical demo with your own data?"
    assert plain.subject == "30 minutes to talk?"
    assert "<h1" in base.html
    assert "<h1" not in plain.html
    assert "Marcos Ruiz" in plain.text
    assert "Marcos Ruiz" not in base.text
    assert plain.headers["X-Trayecto-Content"] == "it-demo-offer; variant=plain"
    unknown = message("it-demo-offer", locale="en", variant="guide")
    assert unknown.subject == base.subject
    # A journey's variant that is a separate content item changes nothing here.
    assert unknown.headers["X-Trayecto-Content"] == "it-demo-offer; variant=guide"


def test_command_params_override_item_defaults() -> None:
    assert message("smb-offer-trial").subject == "Pruébalo 14 días gratis, sin tarjeta"
    assert message("smb-offer-trial", params={"trial_days": 30}).subject.startswith("Pruébalo 30")


def test_greeting_without_a_first_name() -> None:
    rendered = message("it-welcome", recipient={"prospect_id": "p-ana", "email": "a@example.com"})
    assert "Hola:" in rendered.text
    assert not rendered.to.display_name


# ---------------------------------------------------------------- headers and MIME


def test_message_id_is_stable_per_command() -> None:
    sent = command("it-welcome")
    first = render(sent, CATALOGUE, SETTINGS, NOW)
    again = render(sent, CATALOGUE, SETTINGS, NOW + timedelta(minutes=5))
    other = render(command("it-welcome"), CATALOGUE, SETTINGS, NOW)
    assert isinstance(first, RenderedMessage)
    assert isinstance(again, RenderedMessage)
    assert isinstance(other, RenderedMessage)
    assert (
        first.headers["Message-ID"]
        == again.headers["Message-ID"]
        == f"<{sent.command_id}@trayecto>"
    )
    assert other.headers["Message-ID"] != first.headers["Message-ID"]
    assert re.fullmatch(r"<[A-Za-z0-9.-]+@[A-Za-z0-9.-]+>", first.headers["Message-ID"])


def _wire(rendered: RenderedMessage) -> email.message.EmailMessage:
    """What the delivery service hands to SMTP (its bytes, in CRLF lines) parsed back."""
    data = rendered.to_email_message("Trayecto <hola@trayecto.example>").as_bytes()
    wire = re.sub(rb"\r?\n", b"\r\n", data)  # as aiosmtplib sends DATA
    assert all(len(line) <= 998 for line in wire.split(b"\r\n"))
    parsed = email.message_from_bytes(wire, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def test_list_unsubscribe_headers_survive_the_wire() -> None:
    rendered = message("smb-pricing")
    parsed = _wire(rendered)
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    value = str(parsed["List-Unsubscribe"])
    assert value == rendered.headers["List-Unsubscribe"]
    assert "=?" not in value
    kind, claims = claims_of(value.strip("<>"))
    assert kind == "u"
    assert claims.channel is Channel.EMAIL
    assert claims.prospect_id == "p-ana"
    assert parsed["Message-ID"] == rendered.headers["Message-ID"]
    assert parsed["To"].addresses[0].addr_spec == "ana@example.com"
    assert str(parsed["Subject"]) == "Planes y precios de Trayecto, sin letra pequeña"


def _parts(message: email.message.EmailMessage) -> list[email.message.EmailMessage]:
    parts = list(message.iter_parts())
    assert all(isinstance(part, email.message.EmailMessage) for part in parts)
    return [part for part in parts if isinstance(part, email.message.EmailMessage)]


def test_email_has_text_and_html_parts() -> None:
    parsed = _wire(message("it-video-intro", locale="en"))
    assert parsed.get_content_type() == "multipart/alternative"
    text, html = _parts(parsed)
    assert text.get_content_type() == "text/plain"
    assert "Watch the video" in text.get_content()
    assert html.get_content_type() == "text/html"
    assert "<h1" in html.get_content()


def test_invitation_email_has_both_parts_and_the_ics() -> None:
    parsed = _wire(message("it-webinar-invite"))
    assert parsed.get_content_type() == "multipart/mixed"
    alternative, calendar = _parts(parsed)
    assert [p.get_content_type() for p in _parts(alternative)] == ["text/plain", "text/html"]
    assert calendar.get_content_type() == "text/calendar"
    assert calendar.get_param("method") == "REQUEST"
    assert calendar.get_filename() == "invitacion.ics"
    assert "METHOD:REQUEST" in calendar.get_content()


def _event(rendered: RenderedMessage) -> tuple[icalendar.Calendar, icalendar.Event]:
    (_, content_type, data), *_ = rendered.attachments
    assert content_type.startswith("text/calendar; method=REQUEST")
    calendar = icalendar.Calendar.from_ical(data)
    (event,) = calendar.walk("VEVENT")
    assert isinstance(event, icalendar.Event)
    return calendar, event


def test_ics_fixed_date_event() -> None:
    sent = command("ent-executive-briefing", locale="en")
    rendered = render(sent, CATALOGUE, SETTINGS, NOW)
    assert isinstance(rendered, RenderedMessage)
    calendar, event = _event(rendered)
    assert calendar["METHOD"] == "REQUEST"
    assert calendar.walk("VTIMEZONE")
    assert event["UID"] == f"{sent.command_id}@trayecto"
    start, end = event.decoded("DTSTART"), event.decoded("DTEND")
    assert start == datetime(2027, 2, 17, 9, 30, tzinfo=ZoneInfo("Europe/Madrid"))
    assert start.tzinfo is not None
    assert str(event["DTSTART"].params["TZID"]) == "Europe/Madrid"
    assert end - start == timedelta(hours=2, minutes=30)
    assert str(event["ATTENDEE"]) == "mailto:ana@example.com"
    assert event["ATTENDEE"].params["CN"] == "Ana García"
    assert str(event["ORGANIZER"]) == "mailto:ejecutivos@trayecto.example"
    assert str(event["SUMMARY"]) == "Trayecto executive briefing — Madrid"
    assert "Hotel Urban" in str(event["LOCATION"])
    _, claims = claims_of(str(event["URL"]))
    assert claims.command_id == str(sent.command_id)
    again = render(sent, CATALOGUE, SETTINGS, NOW + timedelta(hours=1))
    assert isinstance(again, RenderedMessage)
    assert _event(again)[1]["UID"] == event["UID"]


def test_ics_weekly_webinar_takes_the_next_session_after_the_notice() -> None:
    rendered = message("it-webinar-invite")
    _, event = _event(rendered)
    # Issued Wednesday 25 November, three days' notice: Thursday 3 December, 17:00 Madrid.
    assert event.decoded("DTSTART") == datetime(
        2026, 12, 3, 17, 0, tzinfo=ZoneInfo("Europe/Madrid")
    )
    assert "jueves, 3 de diciembre de 2026, 17:00 (hora de Madrid)" in rendered.text
    kind, claims = claims_of(str(event["URL"]))
    assert kind == "w/attend"
    assert claims.url == "https://live.trayecto.example/webinar/arquitectura"


# ---------------------------------------------------------------- payloads and failures


def test_webhook_channel_and_social_posts_render_a_payload() -> None:
    post = render(command("it-webinar-social", locale="en"), CATALOGUE, SETTINGS, NOW)
    assert isinstance(post, RenderedPayload)
    assert post.text.startswith("Evaluating marketing automation tools?")
    body = post.to_dict()
    assert body["content"] == "it-webinar-social"
    assert body["prospect"] == "p-ana"
    assert claims_of(body["url"])[1].url == "https://trayecto.example/webinars/arquitectura"
    sms = render(command("smb-pricing", channel=Channel.WEBHOOK), CATALOGUE, SETTINGS, NOW)
    assert isinstance(sms, RenderedPayload)
    assert sms.text == "Planes y precios de Trayecto, sin letra pequeña"
    assert sms.recipient["email"] == "ana@example.com"
    assert claims_of(sms.url or "")[1].url == "https://trayecto.example/precios"


@pytest.mark.parametrize(
    ("recipient", "reason"),
    [
        ({"prospect_id": "p-ana"}, "no email address"),
        ({"prospect_id": "p-ana", "email": "  "}, "no email address"),
        ({"prospect_id": "p-ana", "email": "not an address"}, "invalid email address"),
    ],
)
def test_an_email_needs_an_address(recipient: dict[str, Any], reason: str) -> None:
    with pytest.raises(RenderError, match=reason) as failed:
        message("it-welcome", recipient=recipient)
    assert failed.value.content == "it-welcome"


def test_unknown_content_is_a_render_error() -> None:
    with pytest.raises(RenderError, match=r"'no-such-thing'.*not in the catalogue"):
        message("no-such-thing")


def test_headers_cannot_be_injected_through_the_recipient() -> None:
    recipient = {**ANA, "first_name": "Ana\r\nBcc: eve@example.com", "name": "Ana\nBcc: x"}
    rendered = message("it-welcome-guide", recipient=recipient)
    assert "\n" not in rendered.subject
    assert "\r" not in rendered.subject
    parsed = _wire(rendered)
    assert parsed["Bcc"] is None
    assert parsed["Subject"].startswith("Ana Bcc")


def test_seed_pdfs_are_pdfs() -> None:
    files = sorted((CONTENT / "files").glob("*.pdf"))
    assert len(files) >= 10
    for path in files:
        data = path.read_bytes()
        assert data.startswith(b"%PDF-1."), path.name
        assert data.rstrip().endswith(b"%%EOF"), path.name
        assert b"startxref" in data[-64:]
        assert len(data) < 20_000


def test_the_sample_video_is_a_small_webm() -> None:
    data = (CONTENT / "files" / "trayecto-intro.webm").read_bytes()
    assert data.startswith(b"\x1a\x45\xdf\xa3")  # EBML
    assert b"webm" in data[:64]
    assert len(data) < 200_000
    assert "trayecto-intro.webm" in {i.video.file for i in CATALOGUE if i.video is not None}


def test_message_is_the_same_for_the_same_inputs() -> None:
    sent = command("it-pdf-summary", command_id=UUID(int=1))
    assert render(sent, CATALOGUE, SETTINGS, NOW) == render(sent, CATALOGUE, SETTINGS, NOW)
