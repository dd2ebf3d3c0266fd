"""Composition root of the metrics service."""

from fastapi import FastAPI

from shared.service import stub_app
from shared.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    return stub_app("metrics", settings, "stub: no funnel metrics yet; only health and metrics")
