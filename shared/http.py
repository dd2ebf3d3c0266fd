"""HTTP error answers every API shares: a status, a message, and each bad field named.

Body: ``{"error": "<code>", "message": "<what to do>", "errors": [{"field", "message"}]}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from pydantic_core import ErrorDetails

ERROR_CODES = {
    400: "malformed",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    410: "expired",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: Sequence[Mapping[str, object]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = list(errors)
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {
            "error": ERROR_CODES.get(self.status, "error"),
            "message": self.message,
        }
        if self.errors:
            body["errors"] = self.errors
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def field_path(loc: Sequence[int | str], tags: frozenset[str] = frozenset()) -> str:
    """``("batch", 3, "track", "event")`` → ``batch[3].event`` (discriminator tags dropped)."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in tags:
            continue
        else:
            path += f".{part}" if path else part
    return path or "body"


def field_errors(
    errors: Sequence[ErrorDetails], tags: frozenset[str] = frozenset()
) -> list[dict[str, str]]:
    return [{"field": field_path(e["loc"], tags), "message": e["msg"]} for e in errors]


def from_validation_error(exc: ValidationError, tags: frozenset[str] = frozenset()) -> ApiError:
    """400 when the body is not JSON at all, else 422 naming each bad field."""
    errors = exc.errors(include_url=False)
    if any(e["type"] == "json_invalid" for e in errors):
        detail = next(e["msg"] for e in errors if e["type"] == "json_invalid")
        return ApiError(400, f"the request body is not valid JSON: {detail}")
    found = field_errors(errors, tags)
    fields = ", ".join(sorted({e["field"] for e in found}))
    return ApiError(422, f"invalid fields: {fields}", errors=found)


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def request_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        found = [
            {"field": field_path(tuple(e["loc"])), "message": str(e["msg"])} for e in exc.errors()
        ]
        fields = ", ".join(sorted({e["field"] for e in found}))
        return ApiError(422, f"invalid fields: {fields}", errors=found).response()

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, request_validation)
