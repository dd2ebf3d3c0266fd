"""Lead capture: the Google Ads lead form webhook and landing-page forms.

Both turn a lead into the calls the event API takes (an identify for the person, a
track for the capture) and hand them to the same pipeline, so messageId dedupe,
identity stitching, rate limits and "503, never 2xx-and-drop" apply unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, Sequence
from typing import Annotated, Any
from urllib.parse import parse_qsl, unquote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue, ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from shared.http import ApiError, from_validation_error

from .body import read_body
from .events import ERRORS, State, accept, parse
from .segment import MAX_EVENT_BYTES, NO_NUL, Call, Identify, Text, Track

router = APIRouter(prefix="/v1", tags=["leads"])

HONEYPOT_FIELD = "website"
"""Hidden form field real visitors leave empty; bots fill it and get a silent success."""
THANKS_PATH = "/v1/forms/thanks"
MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 100
MAX_FIELD_CHARS = 2000
FORM_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
_UTM = {"utm_source": "source", "utm_medium": "medium", "utm_campaign": "name"}
_UTM |= {"utm_term": "term", "utm_content": "content"}
_HIDDEN = {"email", "anonymous_id", "ajs_anonymous_id", "gclid", HONEYPOT_FIELD, *_UTM}
_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_ID = re.compile(r"^[^\x00-\x1f]{1,200}$")
# Google column ids → the trait names Segment destinations know.
_GOOGLE_TRAITS = {
    "full_name": "name",
    "phone_number": "phone",
    "work_phone": "phone",
    "company_name": "company",
    "job_title": "title",
}


def normalise_email(value: object) -> str | None:
    """The lower-cased address, or None when it is not a plausible one (or over 200 chars)."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    return email if len(email) <= 200 and _EMAIL.match(email) else None


def _id_text(value: object) -> object:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


GoogleId = Annotated[Text, BeforeValidator(_id_text), Field(max_length=100)]


class UserColumn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    column_id: Text = Field(min_length=1, max_length=100)
    column_name: str | None = Field(None, max_length=500)
    string_value: Text | None = Field(None, max_length=MAX_FIELD_CHARS)


class GoogleLead(BaseModel):
    """The Google Ads lead form webhook body (numeric ids may come as numbers)."""

    model_config = ConfigDict(extra="ignore")

    lead_id: str = Field(min_length=1, max_length=150, pattern=r"^[^\x00-\x1f]+$")
    api_version: GoogleId | None = None
    form_id: GoogleId | None = None
    campaign_id: GoogleId | None = None
    google_key: str | None = None
    is_test: bool = False
    gcl_id: Text | None = Field(None, max_length=500)
    adgroup_id: GoogleId | None = None
    creative_id: GoogleId | None = None
    user_column_data: list[UserColumn] = Field(default_factory=list, max_length=200)


class _GoogleKey(BaseModel):
    model_config = ConfigDict(extra="ignore")

    google_key: JsonValue = None


def google_lead_calls(lead: GoogleLead) -> list[Call]:
    """Identify + Track ``lead_captured``; messageIds derive from lead_id (Google retries)."""
    traits: dict[str, JsonValue] = {}
    for column in lead.user_column_data:
        if column.string_value is not None and column.string_value.strip():
            traits[column.column_id.strip().lower()] = column.string_value.strip()
    for column_id, trait in _GOOGLE_TRAITS.items():
        if column_id in traits and trait not in traits:
            traits[trait] = traits[column_id]
    email = normalise_email(traits.get("email")) or normalise_email(traits.get("work_email"))
    if email:
        traits["email"] = email
    user_id = email or f"gads:{lead.lead_id}"
    campaign = {
        "source": "google",
        "medium": "cpc",
        "campaign_id": lead.campaign_id,
        "ad_group_id": lead.adgroup_id,
        "creative_id": lead.creative_id,
    }
    context: dict[str, JsonValue] = {
        "campaign": {k: v for k, v in campaign.items() if v},
        "library": {"name": "google-ads-lead-form", "version": lead.api_version},
    }
    properties: dict[str, JsonValue] = {
        "form_id": lead.form_id,
        "lead_id": lead.lead_id,
        "is_test": lead.is_test,
        "gcl_id": lead.gcl_id,
    }
    return [
        Identify(
            user_id=user_id,
            message_id=f"gads:{lead.lead_id}:identify",
            traits=traits,
            context=context,
        ),
        Track(
            user_id=user_id,
            message_id=f"gads:{lead.lead_id}:lead",
            event="lead_captured",
            properties=properties,
            context=context,
        ),
    ]


def cookie_anonymous_id(raw: str | None) -> str | None:
    """analytics.js keeps ``ajs_anonymous_id`` as a JSON string, often percent-encoded."""
    value = unquote(raw or "").strip()
    if value.startswith('"'):
        try:
            decoded = json.loads(value)
        except ValueError:
            return None
        value = decoded.strip() if isinstance(decoded, str) else ""
    return value or None


def is_bot(fields: Sequence[tuple[str, str]]) -> bool:
    return any(name == HONEYPOT_FIELD and value.strip() for name, value in fields)


def form_calls(
    form: str,
    fields: Sequence[tuple[str, str]],
    *,
    cookie_id: str | None = None,
    page_url: str | None = None,
) -> list[Call]:
    """Identify + Track ``form_submitted`` from a landing-page form; 422 naming bad fields."""
    values: dict[str, list[str]] = {}
    for name, value in fields:
        if value.strip():
            values.setdefault(name.strip(), []).append(value.strip())
    first = {name: found[0] for name, found in values.items()}
    errors: list[dict[str, str]] = []
    email = normalise_email(first.get("email"))
    if email is None:
        message = "not a valid email address" if "email" in first else "Field required"
        errors.append({"field": "email", "message": message})
    anonymous_id = first.get("anonymous_id") or cookie_id
    if anonymous_id is not None and not _ID.match(anonymous_id):
        errors.append({"field": "anonymous_id", "message": "at most 200 printable characters"})
    traits: dict[str, JsonValue] = {}
    for name, found in values.items():
        if name in _HIDDEN:
            continue
        if len(name) > 100 or any(len(v) > MAX_FIELD_CHARS for v in found):
            errors.append({"field": name[:100], "message": "name or value too long"})
        many: list[JsonValue] = list(found)
        traits[name] = found[0] if len(found) == 1 else many
    if errors or email is None:
        fields_named = ", ".join(sorted({e["field"] for e in errors}))
        raise ApiError(422, f"invalid fields: {fields_named}", errors=errors)
    traits["email"] = email
    campaign: dict[str, JsonValue] = {key: first[f] for f, key in _UTM.items() if f in first}
    properties: dict[str, JsonValue] = {"form": form}
    if page_url:
        properties["url"] = page_url[:MAX_FIELD_CHARS]
    if "gclid" in first:
        properties["gclid"] = first["gclid"]
        # Google Ads auto-tagging: a click id without UTM tags is a google / cpc click.
        if "source" not in campaign and "medium" not in campaign:
            campaign |= {"source": "google", "medium": "cpc"}
    context: dict[str, JsonValue] = {"campaign": campaign} if campaign else {}
    return [
        Identify(user_id=email, anonymous_id=anonymous_id, traits=traits),
        Track(
            user_id=email,
            anonymous_id=anonymous_id,
            event="form_submitted",
            properties=properties,
            context=context,
        ),
    ]


async def _read_form(request: Request) -> list[tuple[str, str]]:
    """The text fields of a urlencoded or multipart body (files are ignored)."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media not in {"application/x-www-form-urlencoded", "multipart/form-data"}:
        raise ApiError(415, "send the form as application/x-www-form-urlencoded or multipart")
    raw = await read_body(request, MAX_FORM_BYTES)
    too_many = ApiError(413, f"more than {MAX_FORM_FIELDS} form fields")
    if media == "application/x-www-form-urlencoded":
        try:
            return parse_qsl(raw.decode(), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
        except UnicodeDecodeError as exc:
            raise ApiError(400, "the form body is not UTF-8") from exc
        except ValueError as exc:
            raise too_many from exc

    async def body() -> AsyncGenerator[bytes, None]:
        yield raw

    parser = MultiPartParser(request.headers, body(), max_files=20, max_fields=MAX_FORM_FIELDS)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError(400, f"the multipart body cannot be read: {exc.message}") from exc
    try:
        return [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    finally:
        for value in form.values():
            if isinstance(value, UploadFile):
                await value.close()


def _google_schema() -> dict[str, Any]:
    """GoogleLead's JSON Schema with its definitions inlined (for the OpenAPI document)."""
    schema = GoogleLead.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rpartition("/")[2]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline(schema)}},
        }
    }


@router.post(
    "/leads/google-ads/{source}",
    summary="Google Ads lead form webhook (answers {} as Google expects)",
    openapi_extra=_google_schema(),
    responses={k: v for k, v in ERRORS.items() if k != 401}
    | {401: {"description": "Unknown source, or wrong or revoked google_key"}},
)
async def google_ads_lead(source: str, request: Request, state: State) -> dict[str, str]:
    raw = await read_body(request, MAX_EVENT_BYTES)
    # The key travels in the body: check it before telling anyone what else is wrong.
    key = parse(_GoogleKey, raw).google_key
    found = await state.auth.by_google_key(source, key) if isinstance(key, str) and key else None
    if found is None:
        raise ApiError(401, "unknown source, or wrong or revoked google_key")
    await accept(state, found, google_lead_calls(parse(GoogleLead, raw)))
    return {}


_FORM_BODY = {
    "required": True,
    "content": {
        media: {
            "schema": {
                "type": "object",
                "required": ["email"],
                "properties": {
                    "email": {"type": "string", "format": "email"},
                    "anonymous_id": {"type": "string"},
                    "gclid": {"type": "string", "pattern": NO_NUL},
                    **{utm: {"type": "string", "pattern": NO_NUL} for utm in _UTM},
                    HONEYPOT_FIELD: {"type": "string", "description": "Leave empty (honeypot)"},
                },
                "propertyNames": {"pattern": NO_NUL},
                "additionalProperties": {
                    "type": "string",
                    "pattern": NO_NUL,
                    "description": "Becomes a trait",
                },
            }
        }
        for media in ("application/x-www-form-urlencoded", "multipart/form-data")
    },
}


@router.post(
    "/forms/{form}",
    summary="Landing-page form: identify + form_submitted, then 303 to the thank-you page",
    status_code=303,
    response_class=RedirectResponse,
    openapi_extra={"requestBody": _FORM_BODY},
    responses={
        303: {"description": "Accepted (or caught by the honeypot): go to the thank-you page"},
        **{k: v for k, v in ERRORS.items() if k != 401},
        401: {"description": "Unknown or revoked write key"},
        415: {"description": "Not a urlencoded or multipart form"},
    },
)
async def landing_form(
    request: Request,
    state: State,
    form: Annotated[str, Path(pattern=FORM_NAME, description="Form name, as reported")],
    key: Annotated[str | None, Query(description="The source's write key")] = None,
) -> RedirectResponse:
    source = await state.auth.by_write_key(key) if key else None
    if source is None:
        raise ApiError(401, "unknown or revoked write key (the form's ?key=)")
    fields = await _read_form(request)
    if not is_bot(fields):  # a bot sees the same answer either way
        try:
            calls = form_calls(
                form,
                fields,
                cookie_id=cookie_anonymous_id(request.cookies.get("ajs_anonymous_id")),
                page_url=request.headers.get("referer"),
            )
        except ValidationError as exc:  # a value no consumer could store (NUL)
            raise from_validation_error(exc) from exc
        await accept(state, source, calls)
    return RedirectResponse(state.settings.form_thanks_url or THANKS_PATH, status_code=303)


_THANKS_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Thank you</title>
<style>
body { font: 1.125rem/1.6 system-ui, sans-serif; color: #1a1a1a; background: #fff;
       margin: 0; display: grid; place-items: center; min-height: 100vh; }
main { max-width: 36rem; padding: 2rem; text-align: center; }
h1 { font-size: 2rem; margin: 0 0 1rem; }
</style>
</head>
<body>
<main>
<h1>Thank you</h1>
<p role="status">We have received your details and will be in touch soon.</p>
</main>
</body>
</html>
"""


@router.get(
    "/forms/thanks", summary="The default thank-you page after a form", response_class=HTMLResponse
)
async def form_thanks() -> HTMLResponse:
    return HTMLResponse(
        _THANKS_HTML,
        headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )
