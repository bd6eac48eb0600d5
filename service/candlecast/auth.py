"""Who may connect: the token and Origin checks shared by ``/ws`` and ``/api/*``. Pure.

Runs in the event loop (called per request); no I/O and nothing to close. Tokens are compared
in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection


def offered_token(query_token: str | None, authorization: str | None) -> str | None:
    """The token a request carries: ``?token=`` first, else an ``Authorization: Bearer`` header."""
    if query_token:
        return query_token
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


def token_ok(tokens: Collection[str], offered: str | None) -> bool:
    """Whether ``offered`` is one of ``tokens`` (always true when no tokens are configured)."""
    if not tokens:
        return True
    if not offered:
        return False
    raw = offered.encode()
    return any(hmac.compare_digest(raw, t.encode()) for t in tokens)


def origin_ok(origins: Collection[str], origin: str | None) -> bool:
    """Whether the Origin header is allowed (any, or none, when no origins are configured)."""
    return not origins or (origin is not None and origin in origins)
