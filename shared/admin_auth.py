"""The admin credential: ``Authorization: Bearer <TRAYECTO_ADMIN_TOKEN>``.

Only the configured token is an admin credential: a write key (``tk_…``) never is,
and the setting refuses a token that looks like one. The comparison is of SHA-256
digests with :func:`hmac.compare_digest`, so its time tells nothing about how much of
a guess was right, nor about the token's length.

Without a token configured the admin endpoints are off: a request that presents a
bearer token is answered 503 (set ``TRAYECTO_ADMIN_TOKEN``), one without is answered 401.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from .http import ApiError

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="adminToken",
    description="The admin token (TRAYECTO_ADMIN_TOKEN) as a bearer token",
)
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="trayecto-admin"'}

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No bearer token, or not the admin token"},
    503: {"description": "No admin token is configured (TRAYECTO_ADMIN_TOKEN)"},
}


def disabled(service: str) -> str:
    return f"the admin API is off: set TRAYECTO_ADMIN_TOKEN on the {service} service to use it"


def token_matches(given: str, expected: str) -> bool:
    """Constant-time equality of two tokens, whatever their lengths."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


def check_admin(
    configured: SecretStr | None, credentials: HTTPAuthorizationCredentials | None, service: str
) -> None:
    """Returns when ``credentials`` are the configured token; raises the 401/503 otherwise."""
    if credentials is None:
        hint = f" ({disabled(service)})" if configured is None else ""
        raise ApiError(
            401, f"send the admin token as `Authorization: Bearer <token>`{hint}", headers=CHALLENGE
        )
    if configured is None:
        raise ApiError(503, disabled(service))
    if not token_matches(credentials.credentials, configured.get_secret_value()):
        raise ApiError(401, "not the admin token", headers=CHALLENGE)
