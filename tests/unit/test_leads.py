"""Lead capture, the pure parts: Google Ads payloads, form fields and CSV rows → calls."""

from __future__ import annotations

import csv
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from services.ingest import normalise
from services.ingest.leads import (
    GoogleLead,
    cookie_anonymous_id,
    form_calls,
    google_lead_calls,
    is_bot,
    normalise_email,
)
from services.ingest.segment import Identify, Track
from shared.cli.import_cmd import (
    Lead,
    LeadImportError,
    Rejected,
    lead_calls,
    read_leads,
    rejected_path,
    validate_row,
    write_rejected,
)
from shared.contract import Channel, TouchpointType
from shared.http import ApiError

RECEIVED = normalise.Received("web", 1, datetime(2026, 5, 1, tzinfo=UTC), timedelta(minutes=5))


def google_payload(**extra: Any) -> dict[str, Any]:
    return {
        "lead_id": "TeSter-123-ABC",
        "api_version": "1.0",
        "form_id": 40000000,
        "campaign_id": 12345678901,
        "google_key": "secret",
        "is_test": True,
        "gcl_id": "EAIaIQobChMI",
        "adgroup_id": 20000000000,
        "creative_id": 30000000000,
        "user_column_data": [
            {"column_name": "Full Name", "string_value": "Ana Ruiz", "column_id": "FULL_NAME"},
            {"column_name": "User Email", "string_value": " Ana@Example.COM", "column_id": "EMAIL"},
            {"column_name": "Phone", "string_value": "+34600111222", "column_id": "PHONE_NUMBER"},
            {"column_name": "Budget?", "string_value": "5k", "column_id": "budget_question"},
        ],
        **extra,
    }


def test_google_lead_becomes_identify_and_lead_captured() -> None:
    identify, track = google_lead_calls(GoogleLead.model_validate(google_payload()))
    assert isinstance(identify, Identify)
    assert identify.user_id == "ana@example.com"
    assert identify.traits == {
        "full_name": "Ana Ruiz",
        "name": "Ana Ruiz",
        "email": "ana@example.com",
        "phone_number": "+34600111222",
        "phone": "+34600111222",
        "budget_question": "5k",
    }
    assert isinstance(track, Track)
    assert track.event == "lead_captured"
    assert track.user_id == "ana@example.com"
    assert track.properties == {
        "form_id": "40000000",
        "lead_id": "TeSter-123-ABC",
        "is_test": True,
        "gcl_id": "EAIaIQobChMI",
    }
    event = normalise.touchpoint(track, str(track.message_id), RECEIVED, {})
    assert event.type is TouchpointType.LEAD_CAPTURED
    assert event.channel is Channel.PAID_SEARCH
    assert event.campaign is not None
    assert event.campaign.model_dump(exclude_none=True) == {
        "source": "google",
        "medium": "cpc",
        "campaign_id": "12345678901",
        "ad_group_id": "20000000000",
        "creative_id": "30000000000",
    }


def test_google_message_ids_derive_from_the_lead_id() -> None:
    first = google_lead_calls(GoogleLead.model_validate(google_payload()))
    retried = google_lead_calls(GoogleLead.model_validate(google_payload()))
    other = google_lead_calls(GoogleLead.model_validate(google_payload(lead_id="other")))
    ids = [c.message_id for c in first]
    assert ids == [c.message_id for c in retried]
    assert len(set(ids)) == 2
    assert not set(ids) & {c.message_id for c in other}


def test_google_lead_without_email_is_keyed_by_lead_id() -> None:
    payload = google_payload(
        user_column_data=[{"column_id": "PHONE_NUMBER", "string_value": "+34600111222"}]
    )
    identify, track = google_lead_calls(GoogleLead.model_validate(payload))
    assert identify.user_id == track.user_id == "gads:TeSter-123-ABC"
    assert isinstance(identify, Identify)
    assert "email" not in identify.traits


def test_google_payload_errors_name_the_fields() -> None:
    with pytest.raises(ValidationError) as caught:
        GoogleLead.model_validate({"user_column_data": [{"string_value": "x"}], "is_test": "?"})
    fields = {tuple(e["loc"]) for e in caught.value.errors()}
    assert fields == {("lead_id",), ("is_test",), ("user_column_data", 0, "column_id")}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" Ana.Ruiz+promo@Example.es ", "ana.ruiz+promo@example.es"),
        ("ana@example", None),
        ("ana@@example.es", None),
        ("ana @example.es", None),
        (".ana@example.es", None),
        ("", None),
        (None, None),
        ("a" * 190 + "@example.es", None),
    ],
)
def test_normalise_email(raw: str | None, expected: str | None) -> None:
    assert normalise_email(raw) == expected


def test_form_fields_become_traits_campaign_and_properties() -> None:
    fields = [
        ("email", "Luis@Example.es"),
        ("first_name", "Luis"),
        ("interests", "video"),
        ("interests", "pdf"),
        ("anonymous_id", "anon-1"),
        ("utm_source", "newsletter"),
        ("utm_medium", "email"),
        ("utm_campaign", "spring"),
        ("website", ""),
        ("comment", "  "),
    ]
    identify, track = form_calls(
        "demo", fields, cookie_id="cookie-anon", page_url="https://x.es/demo?utm_source=x"
    )
    assert isinstance(identify, Identify)
    assert (identify.user_id, identify.anonymous_id) == ("luis@example.es", "anon-1")
    assert identify.traits == {
        "email": "luis@example.es",
        "first_name": "Luis",
        "interests": ["video", "pdf"],
    }
    assert isinstance(track, Track)
    assert track.properties == {"form": "demo", "url": "https://x.es/demo?utm_source=x"}
    event = normalise.touchpoint(track, "m", RECEIVED, {})
    assert event.type is TouchpointType.FORM_SUBMITTED
    assert event.channel is Channel.EMAIL
    assert event.campaign is not None
    assert (event.campaign.source, event.campaign.name) == ("newsletter", "spring")


def test_form_gclid_without_utm_is_a_google_cpc_click() -> None:
    _, track = form_calls("f", [("email", "a@b.es"), ("gclid", "Cj0K")], cookie_id="c-1")
    assert track.anonymous_id == "c-1"
    assert isinstance(track, Track)
    assert track.properties["gclid"] == "Cj0K"
    event = normalise.touchpoint(track, "m", RECEIVED, {})
    assert event.channel is Channel.PAID_SEARCH


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ([("email", "not-an-email")], {"email"}),
        ([("name", "no email")], {"email"}),
        ([("email", "a@b.es"), ("anonymous_id", "x" * 201)], {"anonymous_id"}),
        ([("email", "a@b.es"), ("notes", "x" * 2001)], {"notes"}),
    ],
)
def test_form_errors_are_422_naming_the_field(fields: list[tuple[str, str]], bad: set[str]) -> None:
    with pytest.raises(ApiError) as caught:
        form_calls("f", fields)
    assert caught.value.status == 422
    assert {e["field"] for e in caught.value.errors} == bad


def test_honeypot() -> None:
    assert is_bot([("email", "a@b.es"), ("website", "http://spam.example")])
    assert not is_bot([("email", "a@b.es"), ("website", " ")])


@pytest.mark.parametrize(
    ("cookie", "expected"),
    [
        ("%22a1b2-c3%22", "a1b2-c3"),
        ('"a1b2-c3"', "a1b2-c3"),
        ("a1b2-c3", "a1b2-c3"),
        ("%22broken", None),
        ("", None),
        (None, None),
    ],
)
def test_analytics_js_cookie(cookie: str | None, expected: str | None) -> None:
    assert cookie_anonymous_id(cookie) == expected


def test_csv_row_becomes_a_lead_with_a_stable_digest() -> None:
    row = {
        "email": " Eva@Example.ES ",
        "first_name": "Eva",
        "phone": "+34 600 111 222",
        "utm_source": "fair",
        "utm_medium": "offline",
        "utm_campaign": "expo",
        "shoe_size": "38",
        "company": "",
    }
    lead = validate_row("crm", 2, row)
    assert isinstance(lead, Lead)
    assert lead.user_id == "eva@example.es"
    assert lead.traits == {
        "email": "eva@example.es",
        "first_name": "Eva",
        "phone": "+34 600 111 222",
        "shoe_size": "38",
    }
    assert lead.campaign == {"source": "fair", "medium": "offline", "name": "expo"}
    same = validate_row("crm", 9, {**row, "email": "eva@example.es", "company": " "})
    assert isinstance(same, Lead)
    assert same.digest == lead.digest
    elsewhere = validate_row("other-source", 2, row)
    assert isinstance(elsewhere, Lead)
    assert elsewhere.digest != lead.digest
    identify, track = lead_calls(lead, "leads.csv")
    assert identify.message_id != track.message_id
    assert [c.message_id for c in lead_calls(same, "x.csv")] == [
        identify.message_id,
        track.message_id,
    ]
    assert isinstance(track, Track)
    assert normalise.touchpoint(track, "m", RECEIVED, {}).type is TouchpointType.LEAD_CAPTURED


def test_csv_user_id_column_wins_over_email() -> None:
    lead = validate_row("crm", 2, {"email": "a@b.es", "user_id": "crm-42"})
    assert isinstance(lead, Lead)
    assert lead.user_id == "crm-42"
    assert "user_id" not in lead.traits


@pytest.mark.parametrize(
    ("row", "fields"),
    [
        ({"email": "nope"}, ["email"]),
        ({"email": ""}, ["email"]),
        ({"email": "a@b.es", "phone": "call me"}, ["phone"]),
        ({"email": "a@b.es", "phone": "+1 23"}, ["phone"]),
        ({"email": "a@b.es", "user_id": "x" * 201}, ["user_id"]),
        ({"email": "bad", "notes": "x" * 2001}, ["email", "notes"]),
    ],
)
def test_csv_row_rejections_name_the_fields(row: dict[str, str], fields: list[str]) -> None:
    rejected = validate_row("crm", 5, row)
    assert isinstance(rejected, Rejected)
    assert rejected.line == 5
    assert [field for field, _ in rejected.errors] == fields


def test_read_leads_semicolons_bom_blank_lines_and_repeats(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_text(
        "\ufeffEmail;First Name;Phone\n"
        "a@b.es;Ana;+34600111222\n"
        "\n"
        "A@B.es ;Ana;+34600111222\n"
        "bad;Bea;\n"
        "c@d.es;Carl;;extra\n"
        "d@e.es\n",
        encoding="utf-8",
    )
    found = read_leads(path, "crm")
    assert found.header == ["email", "first_name", "phone"]
    assert [lead.line for lead in found.leads] == [2, 7]
    assert found.repeated == 1
    assert [(r.line, r.errors[0][0]) for r in found.rejected] == [(5, "email"), (6, "row")]
    out = write_rejected(path, found.header, found.rejected)
    assert out == rejected_path(path) == tmp_path / "leads.rejected.csv"
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows[0] == ["line", "field", "message", "email", "first_name", "phone"]
    assert rows[1][:4] == ["5", "email", "not a valid email address", "bad"]
    assert rows[2][:3] == ["6", "row", "4 values but the header has 3 columns"]


def test_read_leads_needs_an_email_column(tmp_path: Path) -> None:
    path = tmp_path / f"{uuid.uuid4().hex}.csv"
    path.write_text("name,phone\nAna,+34600111222\n")
    with pytest.raises(LeadImportError, match="no 'email' column"):
        read_leads(path, "crm")
    path.write_text("email,Email\na@b.es,a@b.es\n")
    with pytest.raises(LeadImportError, match="repeated columns: email"):
        read_leads(path, "crm")
