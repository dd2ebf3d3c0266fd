"""Prometheus exporter, funnel API and journey map."""

from .app import create_app

__all__ = ["create_app"]
