"""Composition root of the ingest service."""

from fastapi import FastAPI

from shared.service import stub_app
from shared.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    return stub_app(
        "ingest", settings, "stub: the event API is not served yet; only health and metrics"
    )
