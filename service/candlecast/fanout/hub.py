"""The hub: latest state and recent bars per stream, and the fan-out to every subscriber.

Runs in the event loop only, and never awaits a client. :meth:`Hub.publish` encodes each
candle once, with the :class:`~candlecast.fanout.items.Encoder` it is given (the wire's), into an
:class:`~candlecast.fanout.items.Update` that every subscriber shares, and gives it to each
subscriber of its stream: on the direct path in this pump step when the client is caught up
(:mod:`candlecast.fanout.direct`, written by :meth:`Hub.flush`), otherwise into its bounded
queue (:meth:`~candlecast.fanout.subscriber.Subscriber.offer`: the same-bar merge while behind,
:class:`~candlecast.fanout.queue.ClientQueue`). A client whose queue is full is ended as
:attr:`~candlecast.fanout.subscriber.Ending.SLOW` (counted as ``slow_disconnects``); its
dashboard reconnects and re-syncs from the snapshot.

Snapshot budget (per subscriber): the queue bounds items, and one snapshot item may hold
thousands of bars, so snapshots are also bounded in **bytes queued** (``snapshot_bytes``) and,
for those a client asks for (``subscribe``), in **bars per second** (``snapshot_rate``, a token
bucket holding two seconds' worth). A subscribe past either is refused (the caller sends an
error frame; nothing is subscribed); a snapshot the server queues by itself (a resync) onto a
client that already has more than ``snapshot_bytes`` of snapshots unread ends it as slow. The
connection's first snapshot is always queued (and charged).

A subscriber's first item is its snapshot (the latest bar, or the last N bars, of each stream
it follows), taken in the same synchronous step that registers it: there is no gap and no
duplicate between snapshot and live updates. :meth:`Hub.subscribe` is an async context manager
that unregisters the subscriber and releases its queue on exit. :meth:`Hub.close` ends every
subscriber (:attr:`~candlecast.fanout.subscriber.Ending.SHUTDOWN`) and refuses new ones; it is
idempotent. The hub knows nothing of the wire: close codes are the session's.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace

import anyio

from ..model.candle import Candle
from ..model.intervals import Aggregator, IntervalSet
from ..model.streams import stream_name, stream_of
from . import direct
from .items import Encoder, Reply, Snapshot, Update
from .stats import Stats
from .subscriber import Ending, SnapshotBudget, Subscriber, SubscriptionState

__all__ = ["Hub", "HubClosed", "HubFull", "Subscription"]


class HubClosed(Exception):
    """The hub is shutting down and accepts no subscriber."""


class HubFull(Exception):
    """``max_clients`` subscribers are connected."""


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
        encoder: Encoder,
        intervals: IntervalSet | None = None,
        aggregate: bool = True,
        snapshot_bytes: int = 4 * 1024 * 1024,
        snapshot_rate: float = 20_000,
    ) -> None:
        self.history = history
        self._encode = encoder.update
        self._encoder = encoder
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
        text, frame = self._encode(candle)
        update = Update((stream, ot), text, frame, received)
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
        if base and self._wild:
            self._fan(self._wild, update, slow)
        route = self._routes.get(stream)
        if route:
            self._fan(route, update, slow)
        for sub in slow:
            self.stats.slow_disconnects += 1
            sub.end(Ending.SLOW, f"client too slow: more than {self.client_queue} updates pending")
        return update

    def _fan(self, subs: Iterable[Subscriber], update: Update, slow: list[Subscriber]) -> None:
        """``update`` to each of ``subs``: directly in this step if caught up, else queued."""
        take, dirty = direct.take, self._dirty
        for sub in subs:
            if not take(sub, update, dirty) and not sub.offer(update):
                slow.append(sub)

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
        reply = Reply(self._encoder.resync())
        # one snapshot per (streams, history), shared by the subscribers that follow the same:
        # a dashboard fleet mostly does, and a snapshot is never changed once built
        built: dict[tuple[frozenset[str] | None, int], Snapshot] = {}
        for sub in list(self._subscribers):
            key = (sub.symbols, sub.history)
            snapshot = built.get(key)
            if snapshot is None:
                snapshot = built[key] = Snapshot(self.snapshot(sub.symbols, sub.history))
            sub.queue(reply)
            sub.queue(snapshot)

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
        written = direct.flush(dirty, time.monotonic(), self.stats.latency.observe)
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
            unroute=self._unroute,  # a bound method: no reference cycle through the subscriber
            budget=self.budget,
        )
        return Subscription(self, sub)

    def _register(self, sub: Subscriber) -> None:
        if self._closed:
            raise HubClosed
        if len(self._subscribers) >= self.max_clients:
            raise HubFull
        sub.queue(Snapshot(self.snapshot(sub.symbols, sub.history)))
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
        snapshot = Snapshot(self.snapshot(new, sub.history)) if new else None
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
            sub.end(Ending.SHUTDOWN, "server shutting down")
        if not self._subscribers:
            self._idle.set()

    async def wait_idle(self) -> None:
        """After :meth:`close`, wait until every subscriber's session has finished."""
        if not self._closed:
            raise RuntimeError("Hub.wait_idle() expects a closed hub; call close() first")
        await self._idle.wait()
