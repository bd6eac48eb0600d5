"""Which ingest leads: a lease in Redis with a fencing token.

Exactly one ingest holds ``<prefix>:lease`` (``SET ... PX <ttl>``, taken only when absent) and
connects to the broker; the others wait and try again every tenth of the lease time, so a standby
takes over within the lease time (plus that tenth) after the leader dies. The lease's value is
the leader's fencing token ``<n>:<instance>``: ``n`` from a Redis counter, ``instance`` random
per process, so tokens stay unique even after a Redis restart has reset the counter. Every write
the leader makes checks the token in the same Lua script (see
:mod:`candlecast.backplane.scripts`): a deposed leader that comes back never writes.

A leader renews every third of the lease time; if it finds the lease missing (Redis restarted
empty) it takes it back with a new token instead of stepping down, so the broker connection and
the buffered candles survive a Redis restart. A leader that finds another token steps down.

:class:`Lease` is the token logic (pure); the Redis calls are :meth:`Lease.acquire` and
:meth:`Lease.renew`, made through the owner's :class:`~candlecast.backplane.link.Link`.
Event loop only; owns nothing to close.
"""

from __future__ import annotations

import uuid

from .codec import Keys
from .link import Link
from .scripts import ACQUIRE, RENEW

__all__ = ["Lease", "holder"]


def holder(token: str) -> str:
    """The instance id in a fencing token."""
    return token.rpartition(":")[2]


class Lease:
    """One ingest's view of the lease: its instance id and, while leading, its token."""

    def __init__(self, link: Link, keys: Keys, ttl: float, instance: str | None = None) -> None:
        self.link = link
        self._acquire = link.redis.register_script(ACQUIRE)
        self._renew = link.redis.register_script(RENEW)
        self.keys = keys
        self.ttl = ttl
        self.instance = instance or uuid.uuid4().hex[:12]
        self.token: str | None = None
        self.holder: str | None = None  # the instance holding it, as last seen
        self.takeovers = 0

    @property
    def ttl_ms(self) -> int:
        return max(1, round(self.ttl * 1000))

    @property
    def renew_every(self) -> float:
        return self.ttl / 3

    @property
    def poll_every(self) -> float:
        return max(0.02, self.ttl / 10)

    @property
    def leading(self) -> bool:
        return self.token is not None

    def seen(self, token: bytes | str | None) -> bool:
        """Record the holder's token from a reply; True when it is this instance's."""
        text = token.decode() if isinstance(token, bytes) else token
        if not text:
            self.holder = None
            self.token = None
            return False
        self.holder = holder(text)
        mine = self.holder == self.instance
        if mine and self.token is None:
            self.takeovers += 1
        self.token = text if mine else None
        return mine

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it. True when this instance leads. Raises on Redis errors."""
        keys = [self.keys.lease, self.keys.fence]
        reply = await self.link.call(self._acquire(keys, [self.instance, self.ttl_ms]))
        return self.seen(reply)

    async def renew(self) -> bool:
        """Extend the lease, or take it back when missing. False: another instance holds it (this
        one is deposed). Raises on Redis errors."""
        if self.token is None:
            return False
        keys = [self.keys.lease, self.keys.fence]
        reply = await self.link.call(self._renew(keys, [self.token, self.instance, self.ttl_ms]))
        return self.seen(reply) if reply is not None else True
