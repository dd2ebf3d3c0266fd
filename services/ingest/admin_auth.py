"""Ingest's admin endpoints take the admin token (:mod:`shared.admin_auth`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials

from shared.admin_auth import AUTH_ERRORS, bearer, check_admin

from .state import IngestState, ingest_state

__all__ = ["AUTH_ERRORS", "Admin", "require_admin"]


async def require_admin(
    state: Annotated[IngestState, Depends(ingest_state)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    check_admin(state.settings.admin_token, credentials, "ingest")


Admin = [Depends(require_admin)]
"""Router dependencies of every admin endpoint."""
