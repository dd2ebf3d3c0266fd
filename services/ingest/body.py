"""Reading request bodies with a size limit, before anything parses them."""

from __future__ import annotations

import zlib

from fastapi import Request
from starlette.requests import ClientDisconnect

from shared.http import ApiError


async def read_body(request: Request, limit: int) -> bytes:
    """The (gunzipped) body, or 413 as soon as it exceeds ``limit`` bytes."""
    too_large = ApiError(413, f"request body larger than {limit // 1024} KB")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit * 2:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit * 2:  # compressed bodies are checked again once inflated
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect as exc:  # nobody is left to answer; nothing was accepted
        raise ApiError(400, "the client disconnected before sending the whole body") from exc
    raw = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding == "gzip":
        inflater = zlib.decompressobj(wbits=31)
        try:
            raw = inflater.decompress(raw, limit + 1)
        except zlib.error as exc:
            raise ApiError(400, f"the gzip body cannot be decompressed: {exc}") from exc
    elif encoding != "identity":
        raise ApiError(415, f"Content-Encoding {encoding!r} is not supported (use gzip or none)")
    if len(raw) > limit:
        raise too_large
    return raw
