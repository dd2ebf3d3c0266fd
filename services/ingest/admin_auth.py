"""The admin API's credential: ``Authorization: Bearer <TRAYECTO_ADMIN_TOKEN>``.

Only the configured token is an admin credential: a write key (``tk_…``) never is,
and the setting refuses a token that looks like one. The comparison is of SHA-256
digests with :func:`hmac.compare_digest`, so its time tells nothing about how much of
a guess was right, nor about the token's length.

Without a token configured the admin API is off: a request that presents a bearer
token is answered 503 (set ``TRAYECTO_ADMIN_TOKEN``), one without is answered 401.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.http import ApiError

from .state import IngestState, ingest_state

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="adminToken",
    description="The admin token (TRAYECTO_ADMIN_TOKEN) as a bearer token",
)
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="trayecto-admin"'}
DISABLED = "the admin API is off: set TRAYECTO_ADMIN_TOKEN on the ingest service to use it"

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No bearer token, or not the admin token"},
    503: {"description": "No admin token is configured (TRAYECTO_ADMIN_TOKEN)"},
}


def token_matches(given: str, expected: str) -> bool:
    """Constant-time equality of two tokens, whatever their lengths."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


async def require_admin(
    state: Annotated[IngestState, Depends(ingest_state)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    configured = state.settings.admin_token
    if credentials is None:
        hint = f" ({DISABLED})" if configured is None else ""
        raise ApiError(
            401, f"send the admin token as `Authorization: Bearer <token>`{hint}", headers=CHALLENGE
        )
    if configured is None:
        raise ApiError(503, DISABLED)
    if not token_matches(credentials.credentials, configured.get_secret_value()):
        raise ApiError(401, "not the admin token", headers=CHALLENGE)


Admin = [Depends(require_admin)]
"""Router dependencies of every admin endpoint."""
