"""The hub: latest state and recent bars per symbol, and fan-out to every subscriber.

Runs in the event loop only, and never awaits a client. :meth:`Hub.publish` encodes each
candle once into an :class:`Update` that every subscriber shares, and offers it to each
subscriber of its symbol with ``send_nowait`` on that subscriber's bounded anyio memory stream.

Slow-client policy (per subscriber, see :meth:`Subscriber.offer`):

* a client that keeps up gets every update. One that is behind -- half its bound or more
  queued, i.e. it did not drain the previous pump step (the pump publishes at most half the
  bound per step) -- has an update whose bar (same symbol and ``ot``) is still queued merged
  into that queued entry: it gets the newest state of the bar at the bar's place in its queue,
  never a stale intermediate state (counted as ``merged``);
* when the client's stream is full (``client_queue`` pending items), the client is ended with
  close code 1013 and a reason (counted as ``slow_disconnects``). Its dashboard reconnects and
  re-syncs from the snapshot.

Snapshot budget (per subscriber): the stream bounds items, and one snapshot item may hold
thousands of bars, so snapshots are also bounded in **bytes queued** (``snapshot_bytes``) and,
for those a client asks for (``subscribe``), in **bars per second** (``snapshot_rate``, a token
bucket holding two seconds' worth). A subscribe past either is refused (the caller sends an
error frame; nothing is subscribed); a snapshot the server queues by itself (a resync) onto a
client that already has more than ``snapshot_bytes`` of snapshots unread ends it with 1013. The
connection's first snapshot is always queued (and charged).

A subscriber's first item is its snapshot (the latest bar, or the last N bars, of each symbol
it follows), taken in the same synchronous step that registers it: there is no gap and no
duplicate between snapshot and live updates. :meth:`Hub.subscribe` is an async context manager
that unregisters and closes both stream ends on exit. :meth:`Hub.close` ends every subscriber
with 1001 and refuses new ones; it is idempotent.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Protocol

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..model.candle import Candle, encode
from ..model.intervals import Aggregator, IntervalSet
from ..model.pacing import TokenBucket
from ..model.streams import stream_name, stream_of
from ..wire.frames import text_frame
from ..wire.protocol import CLOSE_GOING_AWAY, CLOSE_TRY_AGAIN, resync_frame
from .stats import Stats

Key = tuple[str, int | float]  # (stream, bar open time): one bar of one symbol in one interval


class Update:
    """One encoded candle, shared by every subscriber: its JSON ``text`` and its complete
    WebSocket ``frame`` (for the direct path), each built once. Never mutated after creation."""

    __slots__ = ("frame", "key", "message", "received", "text")

    def __init__(self, key: Key, payload: bytes, received: float) -> None:
        self.key = key
        self.text = payload.decode()
        self.frame = text_frame(payload)
        self.received = received
        #: Whatever the endpoint builds once to send this update, shared by its sessions (the
        #: hub never reads it: the message shape is the endpoint's business).
        self.message: object = None


class DirectWrite(Protocol):
    """What a connection offers for the direct path (see :mod:`candlecast.server.protocols`)."""

    def ready(self) -> bool:
        """Open and writable now (below the transport's high-water mark)."""
        ...

    def write(self, data: bytes) -> None:
        """Write whole frames now."""


class Reply:
    """A control frame for one client (``subscribed``, ``pong``, ``error``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _Snapshot:
    """Bars a client is owed on (re)subscription, oldest first per symbol (queued as one item),
    and their size in bytes (the texts are ASCII JSON)."""

    __slots__ = ("size", "updates")

    def __init__(self, updates: list[Update]) -> None:
        self.updates = updates
        self.size = sum(len(u.text) for u in updates)


class SnapshotBudget:
    """What snapshots one client may make the server hold and build: ``max_bytes`` queued at
    once, and ``rate`` bars per second of those it asks for (a bucket of ``2 * rate``). Shared
    settings of every subscriber of a hub; each subscriber keeps its own counts."""

    __slots__ = ("burst", "max_bytes", "rate")

    def __init__(self, max_bytes: int, rate: float) -> None:
        self.max_bytes = max_bytes
        self.rate = rate
        self.burst = 2 * rate


Outgoing = Update | Reply
Queued = Update | Reply | _Snapshot


class HubClosed(Exception):
    """The hub is shutting down and accepts no subscriber."""


class HubFull(Exception):
    """``max_clients`` subscribers are connected."""


class SubscriptionState(enum.Enum):
    OPEN = "open"
    ENDED = "ended"


class Subscriber:
    """One client's subscription: its symbol filter, bounded stream and pending bars.

    Two faces. The hub's: :meth:`offer` (live updates), :meth:`queue` (replies, snapshots) and
    :meth:`end`. The client writer's: :meth:`next_batch`, which waits, drains and merges.
    ``symbols`` is written by the hub only.

    With a direct path (:meth:`go_direct`), a caught-up client holds no queue and no writer:
    its bounded stream is created when something has to be queued, and its writer is started
    then and ends (the stream with it) once the queue is empty. Without one, the session runs a
    single writer that parks on the empty stream.
    """

    __slots__ = (
        "_bound",
        "_budget",
        "_bucket",
        "_busy",
        "_dirty",
        "_items",
        "_last",
        "_merge_from",
        "_on_end",
        "_out",
        "_out_received",
        "_receive",
        "_replaced",
        "_send",
        "_snapshot_bytes",
        "_start_writer",
        "_stats",
        "_unroute",
        "_waiter",
        "close_code",
        "close_reason",
        "direct",
        "history",
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
        dirty: list[Subscriber] | None = None,
        unroute: Callable[[Subscriber], object] | None = None,
        budget: SnapshotBudget | None = None,
    ) -> None:
        self.symbols = symbols
        self.history = history
        self._bound = bound
        self.state = SubscriptionState.OPEN
        self.close_code: int | None = None
        self.close_reason = ""
        self._stats = stats
        self._on_end = tuple(on_end)
        self._unroute = unroute
        # The last queued entry of each bar, and merged replacements keyed by the queued entry
        # they replace.
        self._last: dict[Key, Update] = {}
        self._replaced: dict[Update, Update] = {}
        self._merge_from = max(1, bound // 2)
        # The bounded stream, created on the first queued item (see _open).
        self._send: MemoryObjectSendStream[Queued] | None = None
        self._receive: MemoryObjectReceiveStream[Queued] | None = None
        self._waiter: asyncio.Future[None] | None = None  # the writer, parked on an empty stream
        self._items = 0  # items in the stream: offer/queue add, next_batch takes them all
        #: The connection's direct path (see :meth:`go_direct`).
        self.direct: DirectWrite | None = None
        self._start_writer: Callable[[], object] | None = None
        self._busy = False  # a writer started by _start_writer has not finished yet
        self._out: list[bytes] | None = None  # frames due on the direct path in this pump step
        self._out_received = 0.0
        self._dirty = dirty if dirty is not None else []  # the hub's list of subscribers with _out
        self._budget = budget
        self._bucket: TokenBucket | None = None  # made on the first snapshot asked for
        self._snapshot_bytes = 0  # of the snapshots in the stream

    def go_direct(self, direct: DirectWrite, start_writer: Callable[[], object]) -> None:
        """Serve this client through ``direct`` while it is caught up; ``start_writer`` starts a
        writer task (one that loops on :meth:`next_batch`) whenever something is queued: now,
        for the snapshot, and again each time the client falls behind."""
        self.direct = direct
        self._start_writer = start_writer
        if self._items and not self._busy:
            self._busy = True
            start_writer()

    # -- the hub's face ---------------------------------------------------------------------

    def offer(self, update: Update) -> bool:
        """Queue ``update`` without waiting. Returns False when the stream is full: the caller
        must then :meth:`end` this subscriber.

        While the client is behind (at least half its bound queued), an update of a bar that
        is still queued replaces the content of that bar's last queued entry instead of taking
        a new place.
        """
        out = self._out
        if out is not None:  # on the direct path in this pump step already
            out.append(update.frame)
            self._out_received = update.received
            return True
        direct = self.direct
        if direct is not None and not self._busy and direct.ready():
            # caught up (nothing queued, no writer) and writable: write it in this pump step
            self._out = [update.frame]
            self._out_received = update.received
            self._dirty.append(self)
            return True
        key = update.key
        last = self._last.get(key)
        if last is not None and self._items >= self._merge_from:
            self._replaced[last] = update
            self._stats.merged += 1
            return True
        send = self._send
        if send is None:
            if self.state is SubscriptionState.ENDED:
                return True  # ended already (its stream is gone); the hub drops it from its routes
            send = self._open()
        try:
            send.send_nowait(update)
        except anyio.WouldBlock:
            return False
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return True  # ended already; the hub drops it from its routes
        self._last[key] = update
        self._queued()
        return True

    def queue(self, item: Reply | _Snapshot) -> None:
        """Queue a control reply or a snapshot; ends the client with 1013 if it is full, or if
        a snapshot finds more than the budget's bytes of snapshots still unread."""
        if self.state is not SubscriptionState.OPEN:
            return
        if type(item) is _Snapshot:
            budget = self._budget
            if budget is not None and self._snapshot_bytes and self._snapshot_bytes + item.size > budget.max_bytes:
                self._stats.slow_disconnects += 1
                self.end(CLOSE_TRY_AGAIN, "client too slow: snapshots unread")
                return
        send = self._send if self._send is not None else self._open()
        try:
            send.send_nowait(item)
        except anyio.WouldBlock:
            self._stats.slow_disconnects += 1
            self.end(CLOSE_TRY_AGAIN, "client too slow: queue full")
            return
        if type(item) is _Snapshot:
            self._snapshot_bytes += item.size
        self._queued()

    def affords(self, snapshot: _Snapshot, now: float) -> bool:
        """Whether the client may have ``snapshot`` (one it asked for) now: its bars within
        the rate, its bytes within what may be queued (any size when nothing is). Spends the
        bars when it may."""
        budget = self._budget
        if budget is None:
            return True
        if self._snapshot_bytes and self._snapshot_bytes + snapshot.size > budget.max_bytes:
            return False
        bucket = self._bucket
        if bucket is None:
            bucket = self._bucket = TokenBucket(budget.rate, budget.burst, now)
        return bucket.take(now, len(snapshot.updates))

    def end(self, code: int, reason: str) -> None:
        """Stop routing to this client and ask its session to close with ``code``. Idempotent."""
        if self.state is SubscriptionState.ENDED:
            return
        self.state = SubscriptionState.ENDED
        self.close_code = code
        self.close_reason = reason
        if self._send is not None:
            self._send.close()
        self._last.clear()
        self._replaced.clear()
        self._out = None
        self._wake()
        if self._unroute is not None:
            self._unroute(self)
        for callback in self._on_end:
            callback()

    @property
    def pending(self) -> int:
        """Items queued now (for metrics)."""
        return self._items

    def write_out(self, now: float, observe: Callable[[float], None]) -> int:
        """Write this pump step's direct-path frames in one write; returns how many."""
        out = self._out
        self._out = None
        if out is None or self.direct is None or self.state is SubscriptionState.ENDED:
            return 0
        self.direct.write(out[0] if len(out) == 1 else b"".join(out))
        observe(now - self._out_received)
        return len(out)

    # -- the writer's face ------------------------------------------------------------------

    async def next_batch(self) -> list[Outgoing] | None:
        """Everything queued, oldest first, each bar in its newest merged state; parks until
        something is queued. ``None`` once the hub has ended this subscriber -- or, on the
        direct path, once nothing is queued: that writer's work is done (and the stream is
        released).

        One plain future per wake-up (set by the hub on the empty -> non-empty transition, like
        the bridge), no checkpoint per item and no polling. Cancellable.
        """
        while not self._items:
            if self.state is SubscriptionState.ENDED:
                return None
            if self._start_writer is not None:  # the direct path serves the client from now on
                self._busy = False
                self._release()
                return None
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        if self.state is SubscriptionState.ENDED or self._receive is None:
            return None
        receive_nowait = self._receive.receive_nowait
        last = self._last
        replaced = self._replaced
        out: list[Outgoing] = []
        for _ in range(self._items):  # exactly what is queued: no WouldBlock on the hot path
            item = receive_nowait()
            if type(item) is Update:
                key = item.key
                if last.get(key) is item:
                    del last[key]
                out.append(replaced.pop(item, item) if replaced else item)
            elif type(item) is _Snapshot:
                out.extend(item.updates)
                self._snapshot_bytes -= item.size
            else:
                assert type(item) is Reply
                out.append(item)
        self._items = 0
        return out

    # -- internals --------------------------------------------------------------------------

    def _open(self) -> MemoryObjectSendStream[Queued]:
        self._send, self._receive = anyio.create_memory_object_stream[Queued](self._bound)
        return self._send

    def _release(self) -> None:
        """Drop the (empty) stream: a caught-up client on the direct path holds none."""
        if self._send is not None and self._receive is not None:
            self._send.close()
            self._receive.close()
        self._send = self._receive = None

    def _queued(self) -> None:
        """One more item in the stream: wake the parked writer, or start one."""
        self._items += 1
        if self._waiter is not None:
            self._wake()
        elif self._start_writer is not None and not self._busy:
            self._busy = True
            self._start_writer()

    def _wake(self) -> None:
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        """Close both stream ends, without a close code (the subscription is over). Idempotent."""
        self.state = SubscriptionState.ENDED
        self._start_writer = None
        self._release()


class Subscription:
    """What :meth:`Hub.subscribe` returns: registers its :class:`Subscriber` on entry (or raises
    :class:`HubClosed` / :class:`HubFull`), unregisters it and closes its stream on exit. A
    plain class, not a generator: a session keeps it for its whole life."""

    __slots__ = ("_hub", "_sub")

    def __init__(self, hub: Hub, sub: Subscriber) -> None:
        self._hub = hub
        self._sub = sub

    async def __aenter__(self) -> Subscriber:
        self._hub._register(self._sub)
        return self._sub

    async def __aexit__(self, *exc_info: object) -> None:
        self._hub._release(self._sub)


class Hub:
    """Latest state and fan-out. Create and use it in the event loop only."""

    def __init__(
        self,
        *,
        history: int = 500,
        client_queue: int = 1024,
        max_clients: int = 10_000,
        stats: Stats,
        intervals: IntervalSet | None = None,
        aggregate: bool = True,
        snapshot_bytes: int = 4 * 1024 * 1024,
        snapshot_rate: float = 20_000,
    ) -> None:
        self.history = history
        self.budget = SnapshotBudget(snapshot_bytes, snapshot_rate)
        self.client_queue = client_queue
        self.max_clients = max_clients
        self.stats = stats
        self.intervals = intervals
        self._higher = {} if intervals is None else {i.name: i for i in intervals.higher}
        # An edge gets the ingest's aggregates as they are (aggregate=False): built once, upstream.
        self._aggregate = aggregate
        self._aggregators = [Aggregator(i) for i in intervals.higher] if intervals and aggregate else []
        self._bars: dict[str, deque[Update]] = {}  # by stream: "BTCUSD", "BTCUSD@5m"
        self._symbols: dict[str, None] = {}  # symbols seen, in the base interval
        self._wild: dict[Subscriber, None] = {}
        self._routes: dict[str, dict[Subscriber, None]] = {}
        self._subscribers: set[Subscriber] = set()
        self._dirty: list[Subscriber] = []  # subscribers with direct-path frames in this step
        self._closed = False
        self._idle = anyio.Event()
        #: A bar was inserted behind a stream's newest since the last :meth:`refresh` (a gap
        #: filled upstream): the pump re-snapshots the clients after the batch.
        self.behind = False

    # -- input ------------------------------------------------------------------------------

    def publish(self, candle: Candle, received: float) -> Update | None:
        """Record ``candle`` and offer it to every subscriber of its stream; a base-interval
        candle also updates (and offers) each higher interval's bar. Never awaits.

        A candle that names a higher interval (history loaded per interval) goes to that
        interval's stream as is; one naming an interval not served is dropped (``None``).
        """
        self.stats.candles_in += 1
        i = candle.i
        if i is not None:
            if i not in self._higher:
                if self.intervals is None or i != self.intervals.base.name:
                    return None
                candle = replace(candle, i=None)  # the base interval, named
            else:
                return self._publish(stream_name(candle.s, i), candle, received, False)
        s = candle.s
        if s not in self._symbols:
            self._symbols[s] = None
        update = self._publish(s, candle, received, True)
        for aggregator in self._aggregators:
            bar = aggregator.update(candle)
            if bar is not None:
                self._publish(stream_of(bar), bar, received, False)
        return update

    def _publish(self, stream: str, candle: Candle, received: float, base: bool) -> Update:
        ot = candle.ot
        update = Update((stream, ot), encode(candle), received)
        bars = self._bars.get(stream)
        if bars is None:
            bars = self._bars[stream] = deque(maxlen=self.history)
        if not bars or ot > bars[-1].key[1]:
            bars.append(update)
        elif ot == bars[-1].key[1]:
            bars[-1] = update
        else:  # an older bar: fix it in place if kept, else insert it in order (history, a gap fill)
            self._place(bars, update, ot)
        slow: list[Subscriber] = []
        if base:
            for sub in self._wild:
                if not sub.offer(update):
                    slow.append(sub)
        route = self._routes.get(stream)
        if route:
            for sub in route:
                if not sub.offer(update):
                    slow.append(sub)
        for sub in slow:
            self.stats.slow_disconnects += 1
            sub.end(CLOSE_TRY_AGAIN, f"client too slow: more than {self.client_queue} updates pending")
        return update

    def _place(self, bars: deque[Update], update: Update, ot: int | float) -> None:
        """Put an older bar at its place in ``bars``: replace the one kept with the same open
        time, or insert it between its neighbours; a bar older than a full ring is dropped. An
        insertion sets :attr:`behind`: live clients cannot see a bar behind their newest."""
        k = len(bars) - 2
        while k >= 0 and bars[k].key[1] > ot:
            k -= 1
        if k >= 0 and bars[k].key[1] == ot:
            bars[k] = update
            return
        if len(bars) == bars.maxlen:
            if k < 0:
                return  # older than everything kept
            bars.popleft()
            k -= 1
        bars.insert(k + 1, update)
        self.behind = True

    def merge(self, candles: Iterable[tuple[Candle, float]]) -> None:
        """Merge history (a start-up backfill, a gap fill) into the bars, in order, offering none
        of it live, then re-snapshot every subscriber (``{"op":"resync"}`` and its snapshot):
        a bar already held is replaced, a missing one inserted, aggregates corrected. Base bars
        before the higher intervals' own bars of the same period, so those win. Not counted as
        candles in. Never awaits."""
        wild, routes = self._wild, self._routes
        self._wild, self._routes = {}, {}  # publish() offers to nobody while history goes in
        candles_in = self.stats.candles_in
        try:
            for candle, received in candles:
                self.publish(candle, received)
        finally:
            self._wild, self._routes = wild, routes
            self.stats.candles_in = candles_in
        self.refresh()

    def refresh(self) -> None:
        """Re-snapshot every subscriber: a ``{"op":"resync"}`` reply, then its snapshot; clears
        :attr:`behind`."""
        self.behind = False
        frame = resync_frame()
        for sub in list(self._subscribers):
            sub.queue(Reply(frame))
            sub.queue(_Snapshot(self.snapshot(sub.symbols, sub.history)))

    def resync(self, candles: Iterable[tuple[Candle, float]]) -> None:
        """Replace every bar with ``candles`` (oldest first per stream): :meth:`merge` into an
        empty hub. For a backplane edge's first load and its recovery from a gap. Never awaits."""
        self._bars.clear()
        self._symbols.clear()
        if self.intervals is not None and self._aggregate:
            self._aggregators = [Aggregator(i) for i in self.intervals.higher]
        self.merge(candles)

    def flush(self) -> None:
        """End of a pump step: every caught-up subscriber's frames of this step go out in one
        write each (the direct path), with no task wake-up. Never awaits."""
        dirty = self._dirty
        if not dirty:
            return
        now = time.monotonic()
        observe = self.stats.latency.observe
        written = 0
        for sub in dirty:
            written += sub.write_out(now, observe)
        dirty.clear()
        self.stats.candles_out += written
        self.stats.frames_out += written
        self.stats.direct_frames += written

    # -- subscriptions ----------------------------------------------------------------------

    def subscribe(
        self, symbols: frozenset[str] | None, *, history: int = 0, on_end: Callable[[], object] | None = None
    ) -> Subscription:
        """``async with hub.subscribe(...) as sub``: register a subscriber whose stream starts
        with its snapshot. ``on_end`` is called once, synchronously, when the hub ends it (slow,
        shutdown, abuse).

        Entering raises :class:`HubClosed` or :class:`HubFull`. On exit the subscriber is
        unregistered and its stream is closed.
        """
        sub = Subscriber(
            symbols,
            history,
            bound=self.client_queue,
            stats=self.stats,
            on_end=() if on_end is None else (on_end,),
            dirty=self._dirty,
            unroute=self._unroute,  # a bound method: no reference cycle through the subscriber
            budget=self.budget,
        )
        return Subscription(self, sub)

    def _register(self, sub: Subscriber) -> None:
        if self._closed:
            raise HubClosed
        if len(self._subscribers) >= self.max_clients:
            raise HubFull
        sub.queue(_Snapshot(self.snapshot(sub.symbols, sub.history)))
        self._subscribers.add(sub)
        self._route(sub, sub.symbols)
        self.stats.clients_total += 1

    def _release(self, sub: Subscriber) -> None:
        sub.close()
        self._unroute(sub)
        self._subscribers.discard(sub)
        if self._closed and not self._subscribers:
            self._idle.set()

    def add_symbols(
        self, sub: Subscriber, symbols: Iterable[str], *, first: Reply | None = None, now: float | None = None
    ) -> bool:
        """Follow more symbols: ``first`` (the reply), then their snapshot, are queued before
        any later live update. False, with nothing changed or queued, when the snapshot is past
        the subscriber's budget (see the module docstring); ``now`` is monotonic seconds."""
        if sub.state is not SubscriptionState.OPEN:
            return True
        new = frozenset() if sub.symbols is None else frozenset(symbols) - sub.symbols
        snapshot = _Snapshot(self.snapshot(new, sub.history)) if new else None
        if snapshot is not None and not sub.affords(snapshot, time.monotonic() if now is None else now):
            self.stats.snapshots_refused += 1
            return False
        if first is not None:
            sub.queue(first)
        if snapshot is None or sub.symbols is None:
            return True
        self._unroute(sub)
        sub.symbols = sub.symbols | new
        self._route(sub, sub.symbols)
        sub.queue(snapshot)
        return True

    def remove_symbols(self, sub: Subscriber, symbols: Iterable[str]) -> None:
        """Stop following symbols (from "all symbols", this keeps the ones known now)."""
        if sub.state is not SubscriptionState.OPEN:
            return
        current = frozenset(self._symbols) if sub.symbols is None else sub.symbols
        self._unroute(sub)
        sub.symbols = current - frozenset(symbols)
        self._route(sub, sub.symbols)

    def _route(self, sub: Subscriber, symbols: frozenset[str] | None) -> None:
        if symbols is None:
            self._wild[sub] = None
            return
        for s in symbols:
            self._routes.setdefault(s, {})[sub] = None

    def _unroute(self, sub: Subscriber) -> None:
        self._wild.pop(sub, None)
        for s in () if sub.symbols is None else sub.symbols:
            route = self._routes.get(s)
            if route is not None:
                route.pop(sub, None)
                if not route:
                    del self._routes[s]

    # -- state --------------------------------------------------------------------------------

    def snapshot(self, symbols: Iterable[str] | None, history: int) -> list[Update]:
        """The last ``history`` bars (at least the latest) of each stream, oldest first
        (``None``: every symbol in the base interval)."""
        names = sorted(self._symbols) if symbols is None else sorted(symbols)
        keep = max(1, history)
        out: list[Update] = []
        for s in names:
            bars = self._bars.get(s)
            if bars:
                out.extend(list(bars)[-keep:] if keep > 1 else (bars[-1],))
        return out

    def bars(self, stream: str, limit: int) -> list[Update]:
        """Up to ``limit`` most recent bars of ``stream`` (``"BTCUSD"``, ``"BTCUSD@5m"``),
        oldest first (empty if unknown)."""
        bars = self._bars.get(stream)
        if not bars or limit <= 0:
            return []
        return list(bars)[-limit:]

    def latest(self) -> list[Update]:
        """The latest base-interval bar of every symbol, by symbol."""
        return [self._bars[s][-1] for s in sorted(self._symbols)]

    @property
    def clients(self) -> int:
        return len(self._subscribers)

    def pending(self) -> int:
        """Items queued across all clients (for metrics)."""
        return sum(sub.pending for sub in self._subscribers)

    # -- shutdown -----------------------------------------------------------------------------

    def close(self) -> None:
        """Refuse new subscribers and end the current ones with 1001. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for sub in list(self._subscribers):
            sub.end(CLOSE_GOING_AWAY, "server shutting down")
        if not self._subscribers:
            self._idle.set()

    async def wait_idle(self) -> None:
        """After :meth:`close`, wait until every subscriber's session has finished."""
        if not self._closed:
            raise RuntimeError("Hub.wait_idle() expects a closed hub; call close() first")
        await self._idle.wait()
