from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from shared.cli.main import app
from shared.settings import SERVICES, Settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("TRAYECTO_"):
            monkeypatch.delenv(name)


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAYECTO_KAFKA_BOOTSTRAP", "10.0.0.1:19092,10.0.0.2:19092")
    monkeypatch.setenv("TRAYECTO_DATABASE_URL", "postgresql://u@db:6543/x")
    monkeypatch.setenv("TRAYECTO_TOPIC_PARTITIONS", "24")
    settings = Settings()
    assert settings.kafka_port == 19092
    assert settings.postgres_port == 6543
    assert settings.topic_partitions == 24


def test_service_ports_follow_the_architecture() -> None:
    settings = Settings()
    ports = {service: settings.service_port(service) for service in SERVICES}
    assert ports == {"ingest": 8080, "orchestrator": 8091, "delivery": 8092, "metrics": 8090}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRAYECTO_KAFKA_BOOTSTRAP", "localhost"),
        ("TRAYECTO_DATABASE_URL", "mysql://x@y/z"),
        ("TRAYECTO_SMTP_URL", "http://mail"),
        ("TRAYECTO_TOPIC_PARTITIONS", "0"),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        Settings().topic_partitions = 3  # type: ignore[misc]


def test_cli_names_the_bad_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAYECTO_KAFKA_BOOTSTRAP", "no-port")
    result = CliRunner().invoke(app, ["stack", "env"])
    assert result.exit_code == 2
    assert "TRAYECTO_KAFKA_BOOTSTRAP" in result.output


def test_stack_env_prints_exports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRAYECTO_DATABASE_URL", "postgresql://t@127.0.0.1:5999/t")
    monkeypatch.setenv("TRAYECTO_STACK_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["stack", "env"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert "export TRAYECTO_DATABASE_URL=postgresql://t@127.0.0.1:5999/t" in lines
    assert "export TRAYECTO_KAFKA_BOOTSTRAP=127.0.0.1:9092" in lines
    assert f"export TRAYECTO_STACK_DIR={tmp_path}" in lines


@pytest.mark.parametrize(
    ("value", "limits"),
    [
        ("email=20,webhook=10", {"email": 20.0, "webhook": 10.0}),
        (" email = 2.5 , webhook=0.5 ,", {"email": 2.5, "webhook": 0.5}),
        ("email=5", {"email": 5.0}),
        ("", {}),
    ],
)
def test_delivery_rate_limits_are_read_per_channel(
    monkeypatch: pytest.MonkeyPatch, value: str, limits: dict[str, float]
) -> None:
    monkeypatch.setenv("TRAYECTO_DELIVERY_RATE_LIMITS", value)
    assert Settings().rate_limits() == limits


def test_delivery_rate_limits_default_to_every_channel() -> None:
    assert Settings().rate_limits() == {"email": 20.0, "webhook": 10.0}


@pytest.mark.parametrize(
    "value",
    [
        "email",
        "email=",
        "=5",
        "email=0",
        "email=-1",
        "email=fast",
        "email=5;webhook=2",
        "email=inf",
        "email=nan",
    ],
)
def test_bad_delivery_rate_limits_are_refused_naming_the_item(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("TRAYECTO_DELIVERY_RATE_LIMITS", value)
    with pytest.raises(ValidationError, match="channel=messages_per_second"):
        Settings()


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("", ""),
        ("https://cdn.example.com/trayecto/", "https://cdn.example.com/trayecto/"),
        (" http://127.0.0.1:9000/files ", "http://127.0.0.1:9000/files"),
    ],
)
def test_content_base_url_is_empty_or_a_web_base(
    monkeypatch: pytest.MonkeyPatch, value: str, stored: str
) -> None:
    monkeypatch.setenv("TRAYECTO_CONTENT_BASE_URL", value)
    assert Settings().content_base_url == stored


@pytest.mark.parametrize(
    "value", ["cdn.example.com/files", "ftp://cdn.example.com/", "https://", "https://x/?a=1"]
)
def test_bad_content_base_urls_are_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("TRAYECTO_CONTENT_BASE_URL", value)
    with pytest.raises(ValidationError, match="content_base_url"):
        Settings()
