"""The content catalogue: items, templates and files, and what rendering them produces.

``load_catalogue(root)`` reads ``root/catalogue.yaml``, ``root/templates/`` and
``root/files/``; ``services.delivery.render.render`` turns a command into a message.
"""

from .catalogue import (
    CATALOGUE_FILE,
    FILES_DIR,
    TEMPLATES_DIR,
    Catalogue,
    CatalogueError,
    Resolved,
    fallbacks,
    load_catalogue,
)
from .invitation import Invitation, Session, describe_when, invitation_ics, session_of
from .links import Links
from .message import Attachment, RenderedMessage, RenderedPayload
from .model import ContentItem, Event, LocaleText, Strings
from .templates import RenderError, Where, make_environment, render_copy, render_file

__all__ = [
    "CATALOGUE_FILE",
    "FILES_DIR",
    "TEMPLATES_DIR",
    "Attachment",
    "Catalogue",
    "CatalogueError",
    "ContentItem",
    "Event",
    "Invitation",
    "Links",
    "LocaleText",
    "RenderError",
    "RenderedMessage",
    "RenderedPayload",
    "Resolved",
    "Session",
    "Strings",
    "Where",
    "describe_when",
    "fallbacks",
    "invitation_ics",
    "load_catalogue",
    "make_environment",
    "render_copy",
    "render_file",
    "session_of",
]
