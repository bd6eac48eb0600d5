"""The per-address connection count (``--max-clients-per-ip``). Pure, event loop only (no
locks); nothing to close. The token bucket and the log throttle are in
:mod:`candlecast.model.pacing`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["PerAddress"]


class PerAddress:
    """Open connections per client address, capped at ``limit`` (0: no cap)."""

    __slots__ = ("_open", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    @contextmanager
    def admit(self, address: str) -> Iterator[bool]:
        """Hold one slot of ``address`` for the ``with`` block; yields False (and holds nothing)
        when the address already has ``limit`` connections open."""
        if self.limit and self._open.get(address, 0) >= self.limit:
            yield False
            return
        self._open[address] = self._open.get(address, 0) + 1
        try:
            yield True
        finally:
            left = self._open[address] - 1
            if left:
                self._open[address] = left
            else:
                del self._open[address]

    def count(self, address: str) -> int:
        return self._open.get(address, 0)
