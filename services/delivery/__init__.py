"""Email, video, PDF, webinar invitations and webhooks."""

from .app import create_app

__all__ = ["create_app"]
