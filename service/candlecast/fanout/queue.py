"""One client's pending items: a bounded FIFO with the same-bar merge. Pure: no I/O, no clock,
no waiting (the subscriber wakes its writer); event loop only, nothing to close.

Policy: a client that keeps up gets every update. One that is behind -- ``merge_from`` items or
more queued -- has an update whose bar (same stream and ``ot``) is still queued merged into
that queued entry: it gets the newest state of the bar at the bar's place in its queue, never a
stale intermediate state. At ``bound`` items the queue is full and takes nothing more; the
caller then ends the client (1013).
"""

from __future__ import annotations

from collections import deque
from typing import Final

from .items import Key, Outgoing, Queued, Reply, Snapshot, Update

__all__ = ["FULL", "MERGED", "QUEUED", "ClientQueue"]

#: What :meth:`ClientQueue.offer` did with an update.
QUEUED: Final = 0
MERGED: Final = 1
FULL: Final = 2


class ClientQueue:
    """Updates, replies and snapshots for one client, oldest first, at most ``bound`` items."""

    __slots__ = ("_bound", "_items", "_last", "_merge_from", "_replaced", "snapshot_bytes")

    def __init__(self, bound: int) -> None:
        self._bound = bound
        self._merge_from = max(1, bound // 2)
        self._items: deque[Queued] = deque()
        # The last queued entry of each bar, and merged replacements keyed by the entry they replace.
        self._last: dict[Key, Update] = {}
        self._replaced: dict[Update, Update] = {}
        #: Bytes of the snapshots queued now.
        self.snapshot_bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, update: Update) -> int:
        """Queue ``update`` (:data:`QUEUED`), or merge it into its bar's queued entry while the
        client is behind (:data:`MERGED`); :data:`FULL` (nothing done) at the bound."""
        items = self._items
        key = update.key
        last = self._last.get(key)
        if last is not None and len(items) >= self._merge_from:
            self._replaced[last] = update
            return MERGED
        if len(items) >= self._bound:
            return FULL
        items.append(update)
        self._last[key] = update
        return QUEUED

    def put(self, item: Reply | Snapshot) -> bool:
        """Queue a reply or a snapshot; False (nothing done) at the bound."""
        if len(self._items) >= self._bound:
            return False
        self._items.append(item)
        if type(item) is Snapshot:
            self.snapshot_bytes += item.size
        return True

    def drain(self) -> list[Outgoing]:
        """Everything queued, oldest first, each bar in its newest merged state; empties the queue."""
        last, replaced = self._last, self._replaced
        out: list[Outgoing] = []
        for item in self._items:
            if type(item) is Update:
                key = item.key
                if last.get(key) is item:
                    del last[key]
                out.append(replaced.pop(item, item) if replaced else item)
            elif type(item) is Snapshot:
                out.extend(item.updates)
            else:
                assert type(item) is Reply
                out.append(item)
        self._items.clear()
        self.snapshot_bytes = 0
        return out
