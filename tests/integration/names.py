"""Names of the throwaway topics of one test session.

Every topic a test creates is named under :data:`PREFIX`, unique to the session, so the
session deletes exactly its own topics when it ends (``conftest.settings``), even while
another session runs against the same broker.
"""

from __future__ import annotations

import uuid

PREFIX = f"test.{uuid.uuid4().hex[:8]}."


def topic_name(kind: str = "") -> str:
    """A topic name no other test uses, e.g. ``test.<session>.touchpoints.<unique>``."""
    return f"{PREFIX}{kind}{'.' if kind else ''}{uuid.uuid4().hex[:12]}"


def topic_prefix(kind: str = "") -> str:
    """A prefix for a set of topics no other test uses (ends with a dot)."""
    return topic_name(kind) + "."
