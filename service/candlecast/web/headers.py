"""Security headers on every HTTP response: a pure ASGI middleware.

Event loop, per request; holds nothing. The dashboard is one page whose scripts, styles and chart
module come from this server and whose only connections are to this server (``api/*`` and the
WebSocket), so the policy allows exactly that: scripts only from self, no framing, no plugins,
no referrer. No CORS header is ever added: other origins cannot read the API.
"""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_SECURITY_POLICY", "HEADERS", "SecurityHeaders"]

#: ``connect-src 'self'`` covers ws:/wss: to the same host in CSP Level 3 browsers.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS: Final = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


class SecurityHeaders:
    """Adds :data:`HEADERS` to every HTTP response of ``app`` (WebSocket scopes pass through)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
