"""Composition root of the orchestrator service."""

from fastapi import FastAPI

from shared.service import stub_app
from shared.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    return stub_app(
        "orchestrator", settings, "stub: no journeys are run yet; only health and metrics"
    )
