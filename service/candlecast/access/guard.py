"""The guard: who may connect, how much a client may make the server do, and what that cost.

Built once per :class:`~candlecast.web.app.Service` from its settings, before the server starts,
because uvicorn's connection protocols (:mod:`candlecast.server.protocols`) count into it from the
first byte. Event-loop thread only: plain counters and dicts, no locks. Owns nothing to close.

It holds the token :class:`~candlecast.access.tokens.Verifier`, the per-address WebSocket cap, the
counters behind the ``/metrics`` families it yields, and :meth:`Guard.violation`: one short log
line per kind of client misbehaviour per second at most (with how many were held back), never a
traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from ..errors import ClientError
from ..model.pacing import Throttle
from .limits import PerAddress
from .tokens import Grant, TokenError, Verifier

if TYPE_CHECKING:
    from jwt.algorithms import AllowedPublicKeys
    from prometheus_client.metrics_core import Metric


__all__ = ["VIOLATIONS", "Guard", "GuardCollector", "GuardSettings"]

log = logging.getLogger("candlecast.access")

#: Kinds of protocol violation counted (``candlecast_protocol_violations_total{kind=...}``).
VIOLATIONS = ("invalid_utf8", "oversize", "protocol", "bad_handshake", "bad_request", "oversize_head")


class GuardSettings(Protocol):
    """What the guard reads of :class:`candlecast.settings.Settings` (which sits above this
    package: it checks JWT settings with :mod:`candlecast.access.tokens`)."""

    @property
    def jwt_public_key(self) -> str | None: ...
    @property
    def tokens(self) -> tuple[str, ...]: ...
    @property
    def jwt_secret(self) -> str | None: ...
    @property
    def jwt_algorithms(self) -> tuple[str, ...]: ...
    @property
    def jwt_audience(self) -> str | None: ...
    @property
    def jwt_issuer(self) -> str | None: ...
    @property
    def jwt_leeway(self) -> float: ...
    @property
    def jwt_max_lifetime(self) -> float: ...
    @property
    def max_clients_per_ip(self) -> int: ...
    @property
    def header_timeout(self) -> float: ...
    @property
    def max_header_bytes(self) -> int: ...
    @property
    def max_headers(self) -> int: ...
    @property
    def auth_timeout(self) -> float: ...


class Guard:
    """Access checks and abuse counters shared by the HTTP/WebSocket protocols and ``/ws``."""

    def __init__(self, settings: GuardSettings, *, public_key: AllowedPublicKeys | None = None) -> None:
        if public_key is None and settings.jwt_public_key is not None:
            raise ValueError(
                "Guard needs the JWT public key read at start-up: Guard(settings, public_key=derived.public_key)"
            )
        self.verifier = Verifier(
            tokens=settings.tokens,
            secret=settings.jwt_secret,
            public_key=public_key,
            algorithms=settings.jwt_algorithms,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway,
            max_lifetime=settings.jwt_max_lifetime,
        )
        self.per_address = PerAddress(settings.max_clients_per_ip)
        self.header_timeout = settings.header_timeout
        self.max_header_bytes = settings.max_header_bytes
        self.max_headers = settings.max_headers
        self.auth_timeout = settings.auth_timeout
        self._throttle = Throttle(1.0)
        self.violations: dict[str, int] = dict.fromkeys(VIOLATIONS, 0)
        self.auth_failures: dict[str, int] = {}
        self.header_timeouts = 0
        self.rate_limited = 0
        self.address_refused = 0
        self.expired_sessions = 0
        self.read_pauses = 0

    def violation(self, kind: str, peer: tuple[str, int] | None, detail: str) -> None:
        """Count a client's protocol violation and log it in one line, at most once a second
        per kind (how many were held back is said with the next one)."""
        self.violations[kind] = self.violations.get(kind, 0) + 1
        held = self._throttle.ready(kind, time.monotonic())
        if held is None:
            return
        more = f" ({held} more since the last report)" if held else ""
        who = f"{peer[0]}:{peer[1]}" if peer else "unknown peer"
        log.warning("client protocol violation (%s) from %s: %s%s", kind, who, detail[:80], more)

    def backpressured(self, peer: tuple[str, int] | None) -> None:
        """A connection stopped being read because its outgoing buffer is above the high-water
        mark (a client that does not read): counted, not logged (routine for a slow reader)."""
        self.read_pauses += 1

    def check(self, token: str | None) -> Grant:
        """The grant of ``token`` now; raises :class:`~candlecast.access.tokens.TokenError`,
        counted by reason. The one way any route verifies a token."""
        try:
            return self.verifier.verify(token, time.time())
        except TokenError as exc:
            self.auth_failed(exc)
            raise

    def auth_failed(self, exc: ClientError) -> None:
        """Count a refused token, or a client that sent none in time (by reason); logged at
        debug only (refusals are routine)."""
        self.auth_failures[exc.code] = self.auth_failures.get(exc.code, 0) + 1
        log.debug("refused a token: %s", exc.detail)

    def header_timed_out(self, peer: tuple[str, int] | None) -> None:
        self.header_timeouts += 1
        held = self._throttle.ready("header_timeout", time.monotonic())
        if held is not None:
            more = f" ({held} more since the last report)" if held else ""
            who = f"{peer[0]}:{peer[1]}" if peer else "unknown peer"
            log.info("closed a connection from %s: no complete request head in %.1fs%s", who, self.header_timeout, more)

    def metrics(self) -> Iterator[Metric]:
        """The guard's families for ``/metrics``."""
        violations = CounterMetricFamily(
            "candlecast_protocol_violations",
            "Client protocol violations (invalid UTF-8, oversize frame, bad handshake or request), by kind",
            labels=["kind"],
        )
        for kind, n in sorted(self.violations.items()):
            violations.add_metric([kind], n)
        yield violations
        failures = CounterMetricFamily(
            "candlecast_auth_failures",
            "Tokens refused (HTTP and WebSocket), and WebSocket clients that sent none in time, by reason",
            labels=["reason"],
        )
        for reason, n in sorted(self.auth_failures.items()):
            failures.add_metric([reason], n)
        yield failures
        yield CounterMetricFamily(
            "candlecast_header_timeouts",
            "Connections closed for not sending a complete request head in time",
            value=self.header_timeouts,
        )
        yield CounterMetricFamily(
            "candlecast_rate_limited", "Client control messages refused by the rate limit", value=self.rate_limited
        )
        yield CounterMetricFamily(
            "candlecast_address_refused",
            "WebSocket clients refused by the per-address cap (--max-clients-per-ip)",
            value=self.address_refused,
        )
        yield CounterMetricFamily(
            "candlecast_read_pauses",
            "Times a WebSocket connection stopped being read while its outgoing buffer was full",
            value=self.read_pauses,
        )
        yield CounterMetricFamily(
            "candlecast_expired_sessions",
            "WebSocket sessions closed because their token expired",
            value=self.expired_sessions,
        )


class GuardCollector(Collector):
    """A prometheus_client collector reading a :class:`Guard` at scrape time."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def collect(self) -> Iterator[Metric]:
        return self.guard.metrics()
