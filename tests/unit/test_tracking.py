"""Signed tracking links: roundtrip, forgery, tampering, expiry, key rotation and its grace."""

from __future__ import annotations

import os
import shlex
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from shared.cli.main import app
from shared.contract.enums import Channel
from shared.redaction import secrets_of
from shared.settings import Settings
from shared.tracking import (
    ExpiredToken,
    ForgedToken,
    LinkClaims,
    RetiredKeyToken,
    keys_of,
    link_url,
    sign_link,
    verify_link,
)
from shared.tracking_keys import TrackingKey

NOW = 1_800_000_000.0
OLD, NEW = "old-key-0123456789", "new-key-9876543210"


def _claims(**changes: object) -> LinkClaims:
    fields: dict[str, object] = {
        "prospect_id": "ana@example.com",
        "journey": "onboarding",
        "journey_version": 3,
        "step": "welcome",
        "content": "welcome-email",
        "command_id": "0b7e9a52-2f4c-4d1e-9a57-3c1b2e0f9d11",
        "url": "https://example.com/pricing?plan=pro",
        "expires_at": int(NOW) + 3600,
        **changes,
    }
    return LinkClaims.model_validate(fields)


def test_roundtrip_keeps_every_claim() -> None:
    claims = _claims(channel="video")
    token = sign_link([NEW], claims)
    assert verify_link([NEW], token, NOW) == claims
    assert verify_link([NEW], token, NOW).channel is Channel.VIDEO


def test_defaults_and_optional_fields_roundtrip() -> None:
    claims = _claims(command_id=None, url=None)
    assert claims.channel is Channel.EMAIL
    assert verify_link([NEW], sign_link([NEW], claims), NOW) == claims


def test_token_is_url_safe_and_compact() -> None:
    token = sign_link([NEW], _claims())
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    # Positional payload: the field names are not in the token.
    assert len(token) < 260, len(token)


@pytest.mark.parametrize("token", ["", "nonsense", "a.b", "x" * 5000])
def test_garbage_is_forged(token: str) -> None:
    with pytest.raises(ForgedToken):
        verify_link([NEW], token, NOW)


def test_token_signed_with_another_key_is_forged() -> None:
    token = sign_link(["attacker-key"], _claims())
    with pytest.raises(ForgedToken):
        verify_link([NEW, OLD], token, NOW)


def test_tampered_payload_is_forged() -> None:
    genuine = sign_link([NEW], _claims(prospect_id="ana@example.com"))
    other = sign_link(["any-key"], _claims(prospect_id="eve@example.com"))
    signature = genuine.rpartition(".")[2]
    payload = other.rpartition(".")[0]
    assert verify_link(["any-key"], other, NOW).prospect_id == "eve@example.com"
    with pytest.raises(ForgedToken):
        verify_link([NEW], f"{payload}.{signature}", NOW)


def test_tampered_signature_is_forged() -> None:
    token = sign_link([NEW], _claims())
    last = "A" if token[-1] != "A" else "B"
    with pytest.raises(ForgedToken):
        verify_link([NEW], token[:-1] + last, NOW)


def test_expired_token() -> None:
    token = sign_link([NEW], _claims(expires_at=int(NOW)))
    assert verify_link([NEW], token, NOW - 1).prospect_id == "ana@example.com"
    with pytest.raises(ExpiredToken):
        verify_link([NEW], token, NOW)


def test_expired_and_forged_is_forged() -> None:
    token = sign_link(["attacker-key"], _claims(expires_at=0))
    with pytest.raises(ForgedToken):
        verify_link([NEW], token, NOW)


def test_the_first_key_signs() -> None:
    token = sign_link([NEW, OLD], _claims())
    assert verify_link([NEW], token, NOW).journey == "onboarding"
    with pytest.raises(ForgedToken):
        verify_link([OLD], token, NOW)


def test_rotation_old_key_second_still_verifies() -> None:
    sent_before_rotation = sign_link([OLD], _claims())
    assert verify_link([NEW, OLD], sent_before_rotation, NOW).step == "welcome"


def test_rotation_removed_key_is_forged() -> None:
    sent_before_rotation = sign_link([OLD], _claims())
    with pytest.raises(ForgedToken):
        verify_link([NEW], sent_before_rotation, NOW)


def test_keys_from_settings_and_comma_separated_string() -> None:
    settings = Settings(tracking_keys=SecretStr(f" {NEW} , {OLD},"))
    assert keys_of(settings) == (NEW, OLD)
    assert keys_of(f"{NEW},{OLD}") == (NEW, OLD)
    token = sign_link(settings, _claims())
    assert verify_link(NEW, token, NOW) == _claims()
    with pytest.raises(ValueError, match="no tracking key"):
        keys_of(" , ")


def test_salt_separates_tokens_from_other_itsdangerous_uses() -> None:
    from itsdangerous import URLSafeSerializer

    other_use = URLSafeSerializer(NEW).dumps([1, "x"])
    with pytest.raises(ForgedToken):
        verify_link([NEW], other_use, NOW)


def test_url_must_be_http() -> None:
    with pytest.raises(ValidationError):
        _claims(url="javascript:alert(1)")
    assert _claims(url="HTTP://example.com").url == "HTTP://example.com"


def test_link_url() -> None:
    settings = Settings(public_url="https://t.example.com/", tracking_keys=SecretStr(NEW))
    claims = _claims()
    url = link_url(settings, "c", claims)
    prefix = "https://t.example.com/t/c/"
    assert url.startswith(prefix)
    signed = verify_link([NEW], url.removeprefix(prefix), NOW)
    assert signed == claims.model_copy(update={"kind": "c"})  # bound to its endpoint
    register = link_url(settings, "w/register", claims)
    assert register.startswith("https://t.example.com/t/w/")
    assert register.endswith("/register")


def test_genuine_signature_over_an_unknown_format_is_forged() -> None:
    from shared.tracking import _serializer

    future_format = _serializer((NEW,)).dumps([99, "ana@example.com"])
    with pytest.raises(ForgedToken):
        verify_link([NEW], future_format, NOW)


def test_fields_appended_by_a_newer_signer_are_ignored() -> None:
    from shared.tracking import FORMAT, _serializer

    claims = _claims()
    values = claims.model_dump(mode="json")
    newer = _serializer((NEW,)).dumps([FORMAT, *values.values(), "a later field"])
    assert verify_link([NEW], newer, NOW) == claims
    missing_required = _serializer((NEW,)).dumps([FORMAT, "ana@example.com", "j"])
    with pytest.raises(ForgedToken):
        verify_link([NEW], missing_required, NOW)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"url": None, "command_id": None, "kind": "o"},  # short: not compressed
        {"url": "https://example.com/" + "ñandú/" * 200, "kind": "c"},  # long, not ASCII
        {"prospect_id": "José Núñez", "channel": "webinar", "kind": "w/attend"},
    ],
)
@pytest.mark.parametrize("keys", [[NEW], [NEW, OLD], ["clave-ñ"]])
def test_tokens_are_what_itsdangerous_signs(changes: dict[str, object], keys: list[str]) -> None:
    # Links are verified with itsdangerous (ingest): signing must keep to its format.
    from shared.tracking import _FIELDS, FORMAT, _serializer

    claims = _claims(**changes)
    values = claims.model_dump(mode="json")
    reference = _serializer(tuple(keys)).dumps([FORMAT, *(values[f] for f in _FIELDS)])
    assert sign_link(keys, claims) == reference
    assert verify_link(keys, reference, NOW) == claims


# Key rotation with a grace period ("NEW,OLD until 2027-01-15"; NOW is 08:00 UTC that day).
TODAY = datetime.fromtimestamp(NOW, UTC).date()
END_OF_TODAY = datetime.combine(TODAY + timedelta(days=1), datetime.min.time(), UTC).timestamp()


def test_an_old_key_verifies_until_the_end_of_its_last_day_then_answers_as_expired() -> None:
    sent_before_rotation = sign_link([OLD], _claims(expires_at=int(END_OF_TODAY) + 86_400))
    keys = f"{NEW}, {OLD} until {TODAY.isoformat()}"
    assert verify_link(keys, sent_before_rotation, NOW).step == "welcome"
    assert verify_link(keys, sent_before_rotation, END_OF_TODAY - 0.001).step == "welcome"
    for after in (END_OF_TODAY, END_OF_TODAY + 86_400):
        with pytest.raises(RetiredKeyToken) as caught:
            verify_link(keys, sent_before_rotation, after)
        assert isinstance(caught.value, ExpiredToken)  # ingest answers 410
        assert OLD not in str(caught.value)
        assert NEW not in str(caught.value)
    # A token no key of ours signed stays a forgery, whatever the retired keys.
    with pytest.raises(ForgedToken) as forged:
        verify_link(keys, sign_link(["attacker-key"], _claims()), END_OF_TODAY)
    assert not isinstance(forged.value, ExpiredToken)


def test_an_iso_timestamp_ends_the_grace_at_that_instant() -> None:
    token = sign_link([OLD], _claims())
    keys = f"{NEW},{OLD} until 2027-01-15T10:00:00+02:00"  # 08:00 UTC, i.e. NOW
    assert verify_link(keys, token, NOW - 1).journey == "onboarding"
    with pytest.raises(RetiredKeyToken):
        verify_link(keys, token, NOW)
    naive_is_utc = f"{NEW},{OLD} until 2027-01-15T08:00:00"
    assert verify_link(naive_is_utc, token, NOW - 1).journey == "onboarding"
    with pytest.raises(RetiredKeyToken):
        verify_link(naive_is_utc, token, NOW)


def test_the_new_key_signs_and_the_keys_keep_their_ends_through_settings() -> None:
    settings = Settings(tracking_keys=SecretStr(f"{NEW},{OLD} until {TODAY.isoformat()}"))
    keys = keys_of(settings)
    assert keys == (NEW, OLD)  # still plain strings to callers
    assert [k.until for k in keys] == [None, END_OF_TODAY]
    token = sign_link(settings, _claims())
    assert verify_link([NEW], token, NOW) == _claims()
    with pytest.raises(ForgedToken):
        verify_link([OLD], token, NOW)
    # The tuple callers hold (ingest keeps keys_of's result) still carries the ends.
    sent_before_rotation = sign_link([OLD], _claims())
    assert verify_link(keys, sent_before_rotation, NOW).step == "welcome"
    with pytest.raises(RetiredKeyToken):
        verify_link(keys, sent_before_rotation, END_OF_TODAY)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (f"{NEW} until 2030-01-01,{OLD}", "first key signs"),
        (f"{NEW} until 2030-01-01", "first key signs"),
        (f"{NEW},{OLD} until 2030-13-01", "'until' takes"),
        (f"{NEW},{OLD} until 2030-02-30", "'until' takes"),
        (f"{NEW},{OLD} until tomorrow", "'until' takes"),
        (f"{NEW},{OLD} until 20300101", "'until' takes"),
        (f"{NEW},2030-01-01 until {OLD}", "'until' takes"),
        (f"{NEW},{OLD} until", "neither KEY nor"),
        (f"{NEW},{OLD} 2030-01-01", "neither KEY nor"),
        (f"{NEW},{OLD} until 2030-01-01 more", "neither KEY nor"),
    ],
)
def test_bad_entries_are_refused_naming_the_variable_never_a_key(value: str, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(tracking_keys=SecretStr(value))
    message = str(caught.value)
    assert "TRAYECTO_TRACKING_KEYS" in message
    assert reason in message
    assert NEW not in message
    assert OLD not in message
    with pytest.raises(ValueError, match="TRAYECTO_TRACKING_KEYS"):
        keys_of(value)


def test_keys_with_an_end_are_redacted_from_logs_as_bare_keys() -> None:
    settings = Settings(tracking_keys=SecretStr(f"{NEW},{OLD} until 2030-01-01"))
    assert {NEW, OLD} <= secrets_of(settings)


def test_the_signing_key_cannot_end_when_given_directly() -> None:
    with pytest.raises(ValueError, match="first key signs"):
        sign_link([f"{NEW} until 2030-01-01", OLD], _claims())
    with pytest.raises(ValueError, match="first key signs"):
        sign_link([TrackingKey(NEW, END_OF_TODAY)], _claims())


def _rotate(monkeypatch: pytest.MonkeyPatch, value: str, *args: str) -> tuple[str, str, date]:
    """The new key and the new value printed by ``trayecto tracking rotate``, and today."""
    for name in list(os.environ):
        if name.startswith("TRAYECTO_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TRAYECTO_TRACKING_KEYS", value)
    monkeypatch.setenv("TRAYECTO_TRACKING_TTL_DAYS", "30")
    for _ in range(2):  # again if UTC midnight passed meanwhile
        today = datetime.now(UTC).date()
        result = CliRunner().invoke(app, ["tracking", "rotate", *args])
        if datetime.now(UTC).date() == today:
            break
    assert result.exit_code == 0, result.output
    assert "Nothing was changed" in result.stderr
    first, second = result.stdout.splitlines()
    label, _, new_key = first.partition(": ")
    assert label == "new signing key"
    [assignment] = shlex.split(second)
    name, _, new_value = assignment.partition("=")
    assert name == "TRAYECTO_TRACKING_KEYS"
    return new_key, new_value, today


def test_rotate_prints_a_new_key_first_and_keeps_the_old_one_for_the_ttl(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    now = time.time()
    past = datetime.fromtimestamp(now - 86_400 * 2, UTC).date().isoformat()
    future = "2999-01-01T00:00:30Z"
    current = f"{OLD},other-key-111111 until {future},gone-key-2222222 until {past}"
    new_key, new_value, today = _rotate(monkeypatch, current)
    keys = keys_of(Settings(tracking_keys=SecretStr(new_value)))
    assert keys == (new_key, OLD, "other-key-111111")
    assert len(new_key) >= 43
    assert new_key not in current
    last_day = today + timedelta(days=30)
    assert f"{OLD} until {last_day.isoformat()}" in new_value
    assert f"other-key-111111 until {future}" in new_value
    assert [k.until for k in keys] == [
        None,
        datetime.combine(last_day + timedelta(days=1), datetime.min.time(), UTC).timestamp(),
        datetime(2999, 1, 1, 0, 0, 30, tzinfo=UTC).timestamp(),
    ]
    # Links the old key signed keep working; the new key signs.
    sent_before = sign_link(current, _claims(expires_at=int(now) + 3600))
    assert verify_link(new_value, sent_before, now).journey == "onboarding"
    assert verify_link([new_key], sign_link(new_value, _claims()), NOW) == _claims()
    assert not [r for r in caplog.records if new_key in r.getMessage()]


def test_rotate_grace_days_and_the_public_development_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, new_value, today = _rotate(monkeypatch, OLD, "--grace-days", "7")
    assert new_value.endswith(f",{OLD} until {(today + timedelta(days=7)).isoformat()}")
    _, new_value, today = _rotate(monkeypatch, OLD, "--grace-days", "0")
    assert new_value.endswith(f",{OLD} until {today.isoformat()}")
    development = Settings.model_fields["tracking_keys"].default.get_secret_value()
    new_key, new_value, _ = _rotate(monkeypatch, f"{development},{OLD}")
    assert keys_of(new_value) == (new_key, OLD)  # anyone knows it: no grace
    assert keys_of(new_value)[1].until is None
