"""What both REST front ends share: reading a capped body, and the HTTP status of each kind of error."""

from __future__ import annotations

import json
import logging

from starlette.requests import Request

from t2i.api.auth import Unauthorized
from t2i.request import RequestError
from t2i.safety.gate import PromptRefused
from t2i.web.admission import QueueFull
from t2i.web.ratelimit import RateLimited

log = logging.getLogger(__name__)


class Unprocessable(RequestError):
    """The body is not what the route takes (unknown fields, wrong types, features t2i lacks): 422."""


class TooLarge(RequestError):
    """The body is over the route's size cap: 413."""


def body_cap(max_upload_mb: int, images: int) -> int:
    """Bytes a JSON body may have: `images` uploads as base64 at the upload cap, plus 1 MB for the rest."""
    return images * ((max_upload_mb << 20) * 4 // 3 + 4) + (1 << 20)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused (TooLarge) as soon as it runs past `max_bytes`, before the rest is read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(f"the request body is {int(declared) >> 20} MB; the limit is {max_bytes >> 20} MB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(f"the request body is over {max_bytes >> 20} MB; the limit is {max_bytes >> 20} MB")
        chunks.append(chunk)
    return b"".join(chunks)


def json_object(raw: bytes) -> dict:
    """A JSON object from body bytes (Unprocessable for anything else, NaN and Infinity included)."""
    try:
        value = json.loads(raw or b"{}", parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Unprocessable(f"the body is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise Unprocessable("the body must be a JSON object")
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def status_of(error: Exception) -> int:
    """The HTTP status for an error a route raised (500, logged, for anything unexpected)."""
    for kind, status in ((Unauthorized, 401), (TooLarge, 413), (Unprocessable, 422), (RateLimited, 429),
                         (QueueFull, 503), (PromptRefused, 400), (RequestError, 400)):
        if isinstance(error, kind):
            return status
    log.error("API request failed", exc_info=error)
    return 500
