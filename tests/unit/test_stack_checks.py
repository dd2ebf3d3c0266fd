import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shared.cli import main
from shared.settings import SERVICES, Settings
from shared.stack import StackError, debian
from shared.stack import stack as stack_module
from shared.stack.kafka import Kafka
from shared.stack.mailcapture import MailCapture
from shared.stack.postgres import Postgres
from shared.stack.prometheus import Prometheus


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_prometheus_scrapes_every_service_port() -> None:
    settings = Settings(ingest_port=18080, metrics_port=18090)
    config = Prometheus(settings).config()
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"][0]
        for job in config["scrape_configs"]  # type: ignore[attr-defined]
    }
    assert targets["trayecto-ingest"] == "127.0.0.1:18080"
    assert targets["trayecto-metrics"] == "127.0.0.1:18090"
    assert targets["trayecto-orchestrator"] == "127.0.0.1:8091"
    assert targets["trayecto-delivery"] == "127.0.0.1:8092"
    assert {f"trayecto-{s}" for s in SERVICES} <= set(targets)


def test_taken_port_is_a_clear_error(listening_port: int, tmp_path: Path) -> None:
    settings = Settings(prometheus_port=listening_port, stack_dir=tmp_path)
    with pytest.raises(StackError) as info:
        Prometheus(settings).start()
    message = str(info.value)
    assert f"Port {listening_port}" in message
    assert "TRAYECTO_PROMETHEUS_PORT" in message


@pytest.mark.parametrize(
    ("part", "setting"),
    [
        ("kafka", "TRAYECTO_KAFKA_BOOTSTRAP"),
        ("controller", "TRAYECTO_KAFKA_CONTROLLER_PORT"),
        ("postgres", "TRAYECTO_DATABASE_URL"),
        ("mail", "TRAYECTO_SMTP_URL"),
    ],
)
def test_every_taken_port_is_a_clear_error(
    part: str, setting: str, listening_port: int, tmp_path: Path
) -> None:
    free = 1  # privileged, never listening here: the parts not under test pass the check
    settings = Settings(
        stack_dir=tmp_path,
        kafka_bootstrap=f"127.0.0.1:{listening_port if part == 'kafka' else free}",
        kafka_controller_port=listening_port if part == "controller" else free,
        database_url=f"postgresql://trayecto@127.0.0.1:{listening_port}/trayecto",
        smtp_url=f"smtp://127.0.0.1:{listening_port}",
    )
    kinds: dict[str, type[Kafka | Postgres | MailCapture]] = {
        "kafka": Kafka,
        "controller": Kafka,
        "postgres": Postgres,
        "mail": MailCapture,
    }
    component = kinds[part](settings)
    with pytest.raises(StackError) as info:
        component.start()
    message = str(info.value)
    assert f"Port {listening_port}" in message
    assert setting in message


@pytest.mark.parametrize(
    ("package", "why"), [("postgresql", "The PostgreSQL server"), ("prometheus", "Prometheus")]
)
def test_a_missing_package_says_what_to_install_when_not_root(
    package: str, why: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(StackError) as info:
        debian.install(package, tmp_path / "apt.log", why)
    message = str(info.value)
    assert message.startswith(f"{why} is not installed")
    assert f"sudo apt-get install {package}" in message
    assert not (tmp_path / "apt.log").exists()  # nothing was attempted


def test_stack_up_errors_are_one_message_and_exit_1_without_a_traceback(
    listening_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAYECTO_STACK_DIR", str(tmp_path))
    monkeypatch.setenv("TRAYECTO_SMTP_URL", f"smtp://127.0.0.1:{listening_port}")
    # Only the mail capture, so that nothing else of a real stack is started.
    monkeypatch.setattr(stack_module, "components", lambda settings: [MailCapture(settings)])
    result = CliRunner().invoke(main.app, ["stack", "up"])
    assert result.exit_code == 1, result.output
    assert "Error:" in result.output
    assert f"Port {listening_port}" in result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, StackError)  # handled, not raised


def test_missing_java_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StackError, match=r"Java was not found.*openjdk-17"):
        Kafka(Settings(stack_dir=tmp_path, cache_dir=tmp_path)).prepare()


JAVA_17 = "echo 'openjdk version \"17.0.15\"' >&2"


def _fake_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **scripts: str) -> None:
    """PATH holds only the given commands, each a shell script."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, script in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{script}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))


def test_missing_maven_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_path(monkeypatch, tmp_path, java=JAVA_17)
    with pytest.raises(StackError, match=r"Maven \(`mvn`\) was not found"):
        Kafka(Settings(stack_dir=tmp_path, cache_dir=tmp_path)).prepare()


def test_old_java_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_path(monkeypatch, tmp_path, java="echo 'openjdk version \"11.0.2\"' >&2")
    with pytest.raises(StackError, match="needs Java 17"):
        Kafka(Settings(stack_dir=tmp_path, cache_dir=tmp_path)).prepare()


def test_unreachable_maven_central_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_path(
        monkeypatch,
        tmp_path,
        java=JAVA_17,
        mvn="echo '[ERROR] Could not transfer artifact org.apache.kafka:kafka_2.13:pom:4.1.1 "
        "from/to central: Connection refused'; exit 1",
    )
    with pytest.raises(StackError) as info:
        Kafka(Settings(stack_dir=tmp_path, cache_dir=tmp_path)).prepare()
    message = str(info.value)
    assert "Connection refused" in message
    assert "reaches Maven Central" in message
    assert not (tmp_path / "kafka-4.1.1" / "libs" / ".complete").exists()
