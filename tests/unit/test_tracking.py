"""Signed tracking links: roundtrip, forgery, tampering, expiry, key rotation."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from shared.contract.enums import Channel
from shared.settings import Settings
from shared.tracking import (
    ExpiredToken,
    ForgedToken,
    LinkClaims,
    keys_of,
    link_url,
    sign_link,
    verify_link,
)

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
