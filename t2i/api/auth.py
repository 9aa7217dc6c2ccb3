"""Who calls the REST APIs: the key check (T2I_API_KEY), and the caller's identity.

A caller is its Basic user name (if it sent Basic credentials), its own client id (the `X-T2I-Client` header, or
the OpenAI `user` field) and its address, together. /progress, /interrupt, /skip and the model set by POST
/options act on that caller's own jobs and defaults only: one SillyTavern install interrupting on its user's
disconnect never stops another's work. Callers that share all three (two users behind one Open WebUI server)
are one caller; give them different user names or client ids to tell them apart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from starlette.requests import Request

CLIENT_HEADER = "x-t2i-client"
MAX_CLIENT_ID_CHARS = 200


class Unauthorized(Exception):
    """The request lacks the API key, or carries a wrong one."""


@dataclass(frozen=True)
class Caller:
    """One API client, as far as its own jobs and defaults go."""

    user: str  # the Basic user name ("" for a Bearer key or no key)
    client_id: str
    address: str  # what the rate limit counts, as for the page

    @property
    def session(self) -> str:
        """The Studio session name of this caller (its runs, its stop())."""
        identity = "\0".join((self.user, self.client_id, self.address)).encode()
        return "api-" + hashlib.sha256(identity).hexdigest()[:32]


def check_key(request: Request, key: str, basic: bool = True) -> str:
    """The Basic user name of a request that carries `key` ('' for Bearer); raises Unauthorized otherwise.

    With no key configured (a loopback-only server) every request passes. `basic`: Basic credentials, the key as
    the password, are accepted too (/sdapi, as Open WebUI and SillyTavern send them).
    """
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    scheme, value = scheme.lower(), value.strip()
    user, secret = "", None
    if scheme == "bearer":
        secret = value
    elif scheme == "basic" and basic:
        try:
            user, _, secret = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("the Basic credentials are not valid base64 of user:password") from None
    if not key:
        return user
    if secret is None or not hmac.compare_digest(secret.encode(), key.encode()):
        how = "Authorization: Bearer KEY" + (", or Basic with KEY as the password" if basic else "")
        raise Unauthorized(f"this API needs the server's key (T2I_API_KEY): send {how}")
    return user


def caller_of(request: Request, user: str, client_id: str = "") -> Caller:
    """The caller of a request that passed check_key(); `client_id` defaults to the X-T2I-Client header."""
    client_id = (client_id or request.headers.get(CLIENT_HEADER, ""))[:MAX_CLIENT_ID_CHARS]
    return Caller(user=user, client_id=client_id, address=request.client.host if request.client else "")
