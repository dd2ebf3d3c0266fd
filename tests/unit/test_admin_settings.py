"""TRAYECTO_ADMIN_TOKEN, and settings errors that never print a secret."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from shared.cli.main import app
from shared.settings import Settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TRAYECTO_"):
            monkeypatch.delenv(name)


def test_unset_or_blank_leaves_the_admin_api_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().admin_token is None
    monkeypatch.setenv("TRAYECTO_ADMIN_TOKEN", "   ")
    assert Settings().admin_token is None


def test_a_token_is_read_trimmed_and_kept_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAYECTO_ADMIN_TOKEN", " an-admin-token-of-some-length ")
    settings = Settings()
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "an-admin-token-of-some-length"
    assert "an-admin-token" not in repr(settings)


@pytest.mark.parametrize("token", ["too-short", "tk_AsVcVqLaXJRF8FyJSWFqactEPnKs1lf", "gk_x" * 5])
def test_weak_tokens_and_write_keys_are_refused(token: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(admin_token=token)
    assert token not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [
        ("TRAYECTO_ADMIN_TOKEN", "short-secret", "short-secret"),
        ("TRAYECTO_DATABASE_URL", "mysql://app:db-secret-1@db/x", "db-secret-1"),
    ],
)
def test_the_cli_names_a_bad_setting_without_its_secret(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, secret: str
) -> None:
    monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["stack", "env"])
    assert result.exit_code == 2
    assert name in result.output
    assert secret not in result.output
