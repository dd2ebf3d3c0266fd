"""HTTP API: events, lead webhooks, tracking links -> Kafka."""

from .app import create_app

__all__ = ["create_app"]
