"""Who may connect: where a request's token is, and the Origin check, shared by ``/ws`` and
``/api/*``. Pure. Tokens themselves are verified by :mod:`candlecast.access.tokens`.

Runs in the event loop (called per request); no I/O and nothing to close.
"""

from __future__ import annotations

from collections.abc import Collection

__all__ = ["offered_token", "origin_ok"]


def offered_token(query_token: str | None, authorization: str | None) -> str | None:
    """The token a request carries: ``?token=`` first, else an ``Authorization: Bearer`` header."""
    if query_token:
        return query_token
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


def origin_ok(origins: Collection[str], origin: str | None) -> bool:
    """Whether the Origin header is allowed (any, or none, when no origins are configured)."""
    return not origins or (origin is not None and origin in origins)
