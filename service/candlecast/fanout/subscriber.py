"""One client's subscription: what it follows, its pending items, its writer, its direct path.

Event loop only. Two faces: the hub's -- :meth:`Subscriber.offer` (a live update the direct
path did not take), :meth:`Subscriber.queue` (replies, snapshots) and :meth:`Subscriber.end`
-- and the client writer's, :meth:`Subscriber.next_batch`, which waits, then drains and merges.
The queue policy is :class:`~candlecast.fanout.queue.ClientQueue`'s; the snapshot budget
(:class:`SnapshotBudget`) bounds snapshots in bytes queued and bars per second asked for.

With a direct path (:meth:`Subscriber.go_direct`), a caught-up client holds no queue and no
writer: the queue is made when something has to be queued, a writer is started then, and both
end once the queue is empty (the hub's pump step writes a caught-up client's frames itself:
:mod:`candlecast.fanout.direct`). Without one, the session runs a single writer that parks on
the empty queue. The subscriber knows nothing of the wire: it ends with an :class:`Ending`,
which the session maps to a close code. :meth:`Subscriber.close` releases the queue.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Iterable

from ..model.pacing import TokenBucket
from .items import DirectWrite, Outgoing, Reply, Snapshot, Update
from .queue import FULL, MERGED, ClientQueue
from .stats import Stats

__all__ = ["Ending", "SnapshotBudget", "Subscriber", "SubscriptionState"]


class SubscriptionState(enum.Enum):
    OPEN = "open"
    ENDED = "ended"


class Ending(enum.Enum):
    """Why the server ended a subscription (the session picks the close code)."""

    #: The client fell behind: its queue was full, or too many snapshots unread.
    SLOW = "slow"
    #: The server is shutting down.
    SHUTDOWN = "shutdown"
    #: The client abused the protocol (too many bad or rate-limited messages).
    ABUSE = "abuse"
    #: The client's token expired.
    EXPIRED = "expired"


class SnapshotBudget:
    """What snapshots one client may make the server hold and build: ``max_bytes`` queued at
    once, and ``rate`` bars per second of those it asks for (a bucket of ``2 * rate``). Shared
    settings of every subscriber of a hub; each subscriber keeps its own counts."""

    __slots__ = ("burst", "max_bytes", "rate")

    def __init__(self, max_bytes: int, rate: float) -> None:
        self.max_bytes = max_bytes
        self.rate = rate
        self.burst = 2 * rate


class Subscriber:
    """See the module docstring. ``symbols`` is written by the hub only; ``out`` and
    ``out_received`` are the direct path's frames of this pump step (the hub's)."""

    __slots__ = (
        "_bound",
        "_bucket",
        "_budget",
        "_on_end",
        "_queue",
        "_stats",
        "_unroute",
        "_waiter",
        "busy",
        "_flushing",
        "close_reason",
        "direct",
        "ending",
        "history",
        "out",
        "out_received",
        "start_writer",
        "state",
        "symbols",
    )

    def __init__(
        self,
        symbols: frozenset[str] | None,
        history: int,
        *,
        bound: int,
        stats: Stats,
        on_end: Iterable[Callable[[], object]],
        unroute: Callable[[Subscriber], object] | None = None,
        budget: SnapshotBudget | None = None,
    ) -> None:
        self.symbols = symbols
        self.history = history
        self.state = SubscriptionState.OPEN
        self.ending: Ending | None = None
        self.close_reason = ""
        self._bound = bound
        self._stats = stats
        self._on_end = tuple(on_end)
        self._unroute = unroute
        self._queue: ClientQueue | None = None  # made on the first queued item
        self._waiter: asyncio.Future[None] | None = None  # the writer, parked on an empty queue
        self._budget = budget
        self._bucket: TokenBucket | None = None  # made on the first snapshot asked for
        #: The connection's direct path (see :meth:`go_direct`).
        self.direct: DirectWrite | None = None
        self.start_writer: Callable[[], object] | None = None
        self.busy = False  # a writer started by start_writer has not finished yet
        self.out: list[bytes] | None = None
        self.out_received = 0.0
        self._flushing = False  # ended, but the writer writes what was queued first

    def go_direct(self, direct: DirectWrite, start_writer: Callable[[], object]) -> None:
        """Serve this client through ``direct`` while it is caught up; ``start_writer`` starts a
        writer task (one that loops on :meth:`next_batch`) whenever something is queued: now,
        for the snapshot, and again each time the client falls behind."""
        self.direct = direct
        self.start_writer = start_writer
        if self._queue and not self.busy:
            self.busy = True
            start_writer()

    # -- the hub's face ---------------------------------------------------------------------

    def offer(self, update: Update) -> bool:
        """Queue ``update`` without waiting (merged into its bar while behind). False when the
        queue is full: the caller must then :meth:`end` this subscriber."""
        if self.state is SubscriptionState.ENDED:
            return True  # ended (maybe still flushing what was queued before): takes nothing more
        q = self._queue
        if q is None:
            q = self._queue = ClientQueue(self._bound)
        taken = q.offer(update)
        if taken == MERGED:
            self._stats.merged += 1
            return True
        if taken == FULL:
            return False
        self._queued()
        return True

    def queue(self, item: Reply | Snapshot) -> None:
        """Queue a control reply or a snapshot; ends the client as slow if it is full, or if a
        snapshot finds more than the budget's bytes of snapshots still unread."""
        if self.state is not SubscriptionState.OPEN:
            return
        q = self._queue
        if q is None:
            q = self._queue = ClientQueue(self._bound)
        if type(item) is Snapshot:
            budget = self._budget
            if budget is not None and q.snapshot_bytes and q.snapshot_bytes + item.size > budget.max_bytes:
                self._stats.slow_disconnects += 1
                self.end(Ending.SLOW, "client too slow: snapshots unread")
                return
        if not q.put(item):
            self._stats.slow_disconnects += 1
            self.end(Ending.SLOW, "client too slow: queue full")
            return
        self._queued()

    def affords(self, snapshot: Snapshot, now: float) -> bool:
        """Whether the client may have ``snapshot`` (one it asked for) now: its bars within
        the rate, its bytes within what may be queued (any size when nothing is). Spends the
        bars when it may."""
        budget = self._budget
        if budget is None:
            return True
        queued = self._queue.snapshot_bytes if self._queue is not None else 0
        if queued and queued + snapshot.size > budget.max_bytes:
            return False
        bucket = self._bucket
        if bucket is None:
            bucket = self._bucket = TokenBucket(budget.rate, budget.burst, now)
        return bucket.take(now, len(snapshot.updates))

    def end(self, ending: Ending, reason: str, *, flush: bool = False) -> None:
        """Stop routing to this client and ask its session to close (why: ``ending``). With
        ``flush``, what is queued now is written first (nothing more is taken): the ``on_end``
        callbacks run once the writer has handed it all over. Idempotent."""
        if self.state is SubscriptionState.ENDED:
            return
        self.state = SubscriptionState.ENDED
        self.ending = ending
        self.close_reason = reason
        self.out = None
        if self._unroute is not None:
            self._unroute(self)
        if flush and self._queue:
            self._flushing = True
            self._wake()  # a parked writer drains it
            if self.start_writer is not None and not self.busy:
                self.busy = True
                self.start_writer()
            return
        self._queue = None
        self._wake()
        self._ended()

    @property
    def flushing(self) -> bool:
        """Ended, and what was queued before is still being written."""
        return self._flushing

    def _ended(self) -> None:
        self._flushing = False
        for callback in self._on_end:
            callback()

    @property
    def pending(self) -> int:
        """Items queued now (for metrics)."""
        return len(self._queue) if self._queue is not None else 0

    @property
    def snapshot_bytes(self) -> int:
        """Bytes of snapshots queued now (for the budget's tests and metrics)."""
        return self._queue.snapshot_bytes if self._queue is not None else 0

    # -- the writer's face ------------------------------------------------------------------

    async def next_batch(self) -> list[Outgoing] | None:
        """Everything queued, oldest first, each bar in its newest merged state; parks until
        something is queued. ``None`` once the hub has ended this subscriber -- or, on the
        direct path, once nothing is queued: that writer's work is done (and the queue is
        released).

        One plain future per wake-up (set by the hub on the empty -> non-empty transition, like
        the bridge), no checkpoint per item and no polling. Cancellable.
        """
        while not self._queue:
            if self.state is SubscriptionState.ENDED:
                if self._flushing:  # everything queued before the end has been handed over
                    self._queue = None
                    self._ended()
                return None
            if self.start_writer is not None:  # the direct path serves the client from now on
                self.busy = False
                self._queue = None
                return None
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        if self.state is SubscriptionState.ENDED and not self._flushing:
            return None
        return self._queue.drain()

    # -- internals --------------------------------------------------------------------------

    def _queued(self) -> None:
        """One more item queued: wake the parked writer, or start one."""
        if self._waiter is not None:
            self._wake()
        elif self.start_writer is not None and not self.busy:
            self.busy = True
            self.start_writer()

    def _wake(self) -> None:
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        """Release the queue, without an ending (the subscription is over). Idempotent."""
        self.state = SubscriptionState.ENDED
        self.start_writer = None
        self._queue = None
