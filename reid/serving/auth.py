"""The search service's bearer token: read from ``REID_SERVE_TOKEN`` or a file, kept only as its SHA-256 digest
and compared with what a request presents in constant time; a non-loopback address without one is refused."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path

TOKEN_ENV = "REID_SERVE_TOKEN"
MIN_TOKEN_CHARS = 16
MAKE_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
BEARER = "bearer"


class TokenError(ValueError):
    """A token that cannot be used (unreadable file, empty, short, not a header value) or a host that needs one.
    Its message never contains the token."""


def read_token(token_file: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The token in ``token_file`` when one is named, else in ``REID_SERVE_TOKEN``; None when neither is set."""
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenError(f"cannot read the token file {token_file}: {getattr(exc, 'strerror', None) or exc}") \
                from None
        source = f"the token file {token_file}"
    elif TOKEN_ENV in environ:
        token, source = environ[TOKEN_ENV].strip(), TOKEN_ENV
    else:
        return None
    check_token(token, source)
    return token


def check_token(token: str, source: str) -> None:
    """Refuse a token that is empty, shorter than ``MIN_TOKEN_CHARS`` or not a plain header value."""
    if not token:
        raise TokenError(f"{source} is empty: put a secret of {MIN_TOKEN_CHARS}+ characters in it ({MAKE_TOKEN})")
    if len(token) < MIN_TOKEN_CHARS:
        raise TokenError(f"the token in {source} has {len(token)} characters; use {MIN_TOKEN_CHARS} or more "
                         f"({MAKE_TOKEN})")
    if not (token.isascii() and token.isprintable()) or any(c.isspace() for c in token):
        raise TokenError(f"the token in {source} must be printable ASCII without spaces (it travels in a header)")


def token_digest(token: str) -> bytes:
    """The SHA-256 digest the service keeps instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def presented_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None for a missing or other header."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    return value if scheme.lower() == BEARER and value else None


def allows(digest: bytes | None, authorization: str | None) -> bool:
    """True when no token is required (``digest`` None) or the header carries the token (constant-time check)."""
    if digest is None:
        return True
    token = presented_token(authorization)
    if token is None:
        return False
    return hmac.compare_digest(hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest(), digest)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1): only this machine reaches them."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token_required: bool) -> None:
    """Refuse, in one line naming the fix, to serve beyond loopback without a token."""
    if not token_required and not is_loopback(host):
        raise TokenError(f"refusing to serve on {host} without a token: anyone who reaches it could search people "
                         f"and fetch their pictures; set {TOKEN_ENV} or pass --token-file FILE (a secret of "
                         f"{MIN_TOKEN_CHARS}+ characters, e.g. from {MAKE_TOKEN}), or serve on --host 127.0.0.1")
