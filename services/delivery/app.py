"""Composition root of the delivery service."""

from fastapi import FastAPI

from shared.service import stub_app
from shared.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    return stub_app("delivery", settings, "stub: nothing is delivered yet; only health and metrics")
