"""Images over the REST APIs: base64 in (checked before decoding), labelled PNG bytes out.

Input images are base64 text, raw or as a `data:image/...;base64,` URL. Nothing else is accepted: a URL or a
file path in an image field is refused, never fetched or opened. The decoded bytes then go through the same
decoding caps and image checks as the page's uploads (Studio.request_from_form, t2i/web/uploads.py).
"""

from __future__ import annotations

import base64
import binascii
import re

from t2i.recipes.labels import Labeller
from t2i.request import GenerationResult, RequestError

_DATA_URL = re.compile(r"data:image/[a-z0-9.+-]{1,32};base64,", re.IGNORECASE)
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/=\s]")


def decode_base64_image(text, what: str, max_bytes: int) -> bytes:
    """The bytes of a base64 image field; RequestError for anything but base64 image data under `max_bytes`."""
    if not isinstance(text, str) or not text:
        raise RequestError(f"{what} must be base64 image data")
    if text[:5].lower() == "data:":
        prefix = _DATA_URL.match(text)
        if prefix is None:
            raise RequestError(f"{what}: only data:image/...;base64, URLs are accepted; nothing is fetched or opened")
        text = text[prefix.end():]
    if len(text) > (max_bytes // 3 + 1) * 4 + len(text) // 76 * 2:  # base64 of max_bytes, with line breaks
        raise RequestError(f"{what} is over {max_bytes >> 20} MB; the limit is {max_bytes >> 20} MB")
    if _NOT_BASE64.search(text):  # e.g. "http://..." or "/etc/passwd": refused, never fetched or opened
        raise RequestError(f"{what} must be base64 image data; t2i does not fetch URLs or open files")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"{what} is not valid base64") from None


def result_pngs(result: GenerationResult, labeller: Labeller) -> list[bytes]:
    """Each shown image of a result as PNG bytes with its recipe and labels, as the page's files carry them
    (less their per-file id: these bytes are not files)."""
    return [labeller.png(item.image, item.parameters) for item in result.images if item.image is not None]


def base64_text(data: bytes) -> str:
    """Bytes as base64 text."""
    return base64.b64encode(data).decode("ascii")
