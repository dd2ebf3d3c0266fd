"""Journey engine (pure) + per-prospect state, timers, outbox."""

from .app import create_app

__all__ = ["create_app"]
