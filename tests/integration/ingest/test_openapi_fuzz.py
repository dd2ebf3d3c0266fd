"""Property-based requests generated from the ingest OpenAPI document: never a 500.

schemathesis drives a real ingest server (real PostgreSQL and Kafka) with valid and
invalid bodies for every operation; each answer must be documented and below 500.
"""

from __future__ import annotations

import base64
import itertools
import threading
from typing import Any

import asyncpg
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import negative_data_rejection
from schemathesis.core.result import Ok

from services.ingest import create_app
from services.ingest.sources import add_source
from shared.db import migrate
from shared.kafka import ensure_topics
from shared.settings import Settings

from ..names import topic_name
from .conftest import free_port

EXAMPLES = 30


class _ThreadServer:
    """uvicorn in a thread with its own loop: schemathesis calls it synchronously."""

    def __init__(self, app: object, port: int) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")  # type: ignore[arg-type]
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _ThreadServer:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("ingest server did not start")
            threading.Event().wait(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
async def fuzz_app(settings: Settings, fresh_database: str) -> tuple[Settings, str, str]:
    await migrate(fresh_database)
    topic = topic_name("fuzz")
    await ensure_topics(settings, [topic], partitions=2)
    conn = await asyncpg.connect(fresh_database)
    try:
        key = (await add_source(conn, "fuzz", rate_limit=1_000_000)).write_key
    finally:
        await conn.close()
    return settings.model_copy(update={"database_url": fresh_database}), topic, key


def _basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def test_no_input_causes_a_server_error(fuzz_app: tuple[Settings, str, str]) -> None:
    app_settings, topic, key = fuzz_app
    app = create_app(app_settings, touchpoints_topic=topic)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": _basic(key)}
    failures: list[str] = []
    with _ThreadServer(app, port):
        schema = schemathesis.openapi.from_dict(app.openapi())
        operations = []
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), f"invalid OpenAPI operation: {result.err()}"
            operations.append(result.ok())
        assert len(operations) >= 6
        for operation, mode in itertools.product(operations, GenerationMode):

            @given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis_settings(
                max_examples=EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def check(case: Case[Any]) -> None:
                response = case.call(base_url=base_url, headers=headers)
                # 413 (a body over the size limits) is a rejection too, and documented;
                # schemathesis' list of rejection codes does not include it.
                excluded = [negative_data_rejection] if response.status_code == 413 else []
                case.validate_response(response, excluded_checks=excluded)

            try:
                check()
            except Unsatisfiable:
                continue  # no invalid input exists for an operation without parameters
            except Exception as exc:  # collect every operation's failure, then report all
                failures.append(f"{operation.label} ({mode.value} data): {exc}")
    assert not failures, "\n\n".join(failures)
