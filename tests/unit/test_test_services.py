"""Which real services the integration tests use: the environment, Docker, or the local stack."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import testcontainers.community.kafka as tc_kafka
import testcontainers.community.postgres as tc_postgres

from shared import stack
from shared.settings import Settings
from tests.integration import conftest


def _fake_docker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, engine: bool) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(f"#!/bin/sh\nexit {0 if engine else 1}\n")
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))


class _Container:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.started = False

    def with_kraft(self) -> _Container:
        return self

    def __enter__(self) -> _Container:
        self.started = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.started = False

    def get_bootstrap_server(self) -> str:
        return "10.0.0.1:29092"

    def get_connection_url(self, driver: str | None = None) -> str:
        return "postgresql://test@10.0.0.2:15432/test"


@contextmanager
def _no_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Settings]]:
    started: list[Settings] = []
    monkeypatch.setattr(stack, "up", lambda settings, console: started.append(settings))
    yield started


@pytest.fixture
def no_service_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRAYECTO_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("TRAYECTO_DATABASE_URL", raising=False)
    monkeypatch.setattr(tc_kafka, "KafkaContainer", _Container)
    monkeypatch.setattr(tc_postgres, "PostgresContainer", _Container)


def test_the_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRAYECTO_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    monkeypatch.setenv("TRAYECTO_DATABASE_URL", "postgresql://x@127.0.0.1:15432/x")
    _fake_docker(monkeypatch, tmp_path, engine=True)
    with _no_stack(monkeypatch) as started:
        (chosen,) = conftest._services()
    assert chosen.kafka_bootstrap == "127.0.0.1:19092"
    assert started == []


@pytest.mark.usefixtures("no_service_env")
def test_a_docker_engine_gives_containers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_docker(monkeypatch, tmp_path, engine=True)
    with _no_stack(monkeypatch) as started:
        (chosen,) = conftest._services()
    assert chosen.kafka_bootstrap == "10.0.0.1:29092"
    assert chosen.database_url == "postgresql://test@10.0.0.2:15432/test"
    assert started == []


@pytest.mark.usefixtures("no_service_env")
def test_otherwise_the_local_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_docker(monkeypatch, tmp_path, engine=False)  # a client without an engine, as here
    with _no_stack(monkeypatch) as started:
        (chosen,) = conftest._services()
    assert started == [chosen]
