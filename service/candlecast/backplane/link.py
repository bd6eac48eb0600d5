"""The backplane's connection to Redis: redis-py's asyncio client, set up so that failures show.

redis-py retries a failed command silently by default (three times, with backoff); the backplane
must see every error instead (an edge that missed a reset would resume wrongly), so the client is
built with no retry, bounded connect and read timeouts, and TCP keepalive. :class:`Link` also
makes every Redis call cancellable by :meth:`Link.close` (shutdown never waits on Redis), keeps
the connection state for ``/readyz`` and counts errors and reconnects for ``/metrics``.

:meth:`Link.pause` is the one wait after a failed call, by the Redis retry rule of
:func:`candlecast.backplane.pace.retry_delay` (short and capped, not the broker's
``--reconnect-min``/``--reconnect-max``), with a random source of its own per link.

Event loop only. :meth:`Link.close` cancels the call in flight and closes the client; idempotent.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Coroutine, Iterator
from typing import TYPE_CHECKING, Final, TypeVar

import anyio
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..metrics import counter, gauge
from .pace import RETRY_MAX, retry_delay

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

__all__ = ["CONNECT_TIMEOUT", "DOWN", "READ_TIMEOUT", "Link", "client"]

log = logging.getLogger("candlecast.backplane")

T = TypeVar("T")

#: Errors that mean "Redis is unreachable or was restarted": reconnect with backoff and resume.
#: (A ``ResponseError`` such as ``LOADING`` while a replica syncs is treated the same.)
DOWN: Final = (RedisConnectionError, RedisTimeoutError, ResponseError, OSError)
#: Longest wait for a TCP connection to Redis.
CONNECT_TIMEOUT: Final = 2.0
#: Longest wait for any reply beyond what the command itself blocks for.
READ_TIMEOUT: Final = 3.0


def client(url: str) -> Redis:
    """A client for ``url`` that never retries on its own."""
    return Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=READ_TIMEOUT,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=0,
    )


class Link:
    """One Redis client with its connection state, used by one feed."""

    def __init__(self, url: str) -> None:
        self.redis = client(url)
        self.connected = False
        self.error: str | None = "not connected yet"
        self.errors = 0
        self.reconnects = 0
        self._failures = 0
        self._scopes: set[anyio.CancelScope] = set()
        self._closed = False
        self._rng = random.Random()  # seeded per link: edges started together still retry apart

    @property
    def closed(self) -> bool:
        return self._closed

    async def call(self, coro: Awaitable[T]) -> T | None:
        """Await one Redis call; ``None`` if :meth:`close` cancelled it (or had been called).
        Raises what redis-py raises (see :data:`DOWN`)."""
        if self._closed:
            if isinstance(coro, Coroutine):
                coro.close()
            return None
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                return await coro
            finally:
                self._scopes.discard(scope)
        return None

    def metrics(self) -> Iterator[Metric]:
        """The link's health, the same for an ingest and an edge."""
        yield gauge("redis_connected", "1 while the last Redis call succeeded", int(self.connected))
        yield counter("redis_errors", "Failed Redis calls (each is retried, within RETRY_MAX)", self.errors)
        yield counter("redis_reconnects", "Times Redis answered again after failing", self.reconnects)

    def up(self) -> None:
        """A call succeeded: Redis is reachable."""
        if not self.connected:
            if self._failures:
                self.reconnects += 1
                log.warning("redis: reconnected after %d failed attempt(s)", self._failures)
            self.connected = True
        self.error = None
        self._failures = 0

    def down(self, exc: RedisError | OSError) -> None:
        """A call failed: log the first failure of an outage, count every one."""
        self.errors += 1
        text = f"{type(exc).__name__}: {exc}"[:200]
        if self.connected or self._failures == 0:
            log.warning("redis: %s; retrying every %.2fs at most", text, RETRY_MAX)
        self.connected = False
        self.error = text
        self._failures += 1

    async def pause(self) -> None:
        """Wait before retrying a failed call (:func:`retry_delay`; returns at once if the link
        was closed meanwhile). The only wait after a Redis error."""
        await self.sleep(retry_delay(self._failures, self._rng))

    async def sleep(self, seconds: float) -> None:
        """A cancellable pause: :meth:`close` ends it."""
        if self._closed:
            return
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                await anyio.sleep(seconds)
            finally:
                self._scopes.discard(scope)

    def cancel(self) -> None:
        """Stop the calls and pauses in flight, and every later one."""
        self._closed = True
        for scope in self._scopes:
            scope.cancel()

    async def close(self) -> None:
        """Cancel what is in flight and close the client (bounded). Idempotent."""
        self.cancel()
        with anyio.move_on_after(1.0, shield=True):
            await self.redis.aclose()
