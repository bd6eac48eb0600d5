"""The edge's feed: candles from the Redis Stream into this process's hub (``--role edge``).

:class:`EdgeFeed` is a :class:`~candlecast.feed.Feed` with no upstream. Its :meth:`batches`
generator does the reading itself, in the pump's task (no thread, no extra task):

1. **Snapshot.** The SNAPSHOT script reads every symbol's bars and the position ``(epoch, seq)``
   they belong to in one atomic step; they go to the hub as a :class:`~candlecast.feed.Resync`
   batch (the first one just fills it).
2. **Live.** Blocking ``XREAD`` from the last delivered id ``<epoch>-<seq>``, at most ``limit``
   entries per call and one pump step per reply. Each entry is judged by the ingest's sequence
   (:class:`~candlecast.backplane.codec.Position`): the next number is delivered, an older one
   (re-sent by the ingest after a Redis restart) is dropped, a jump or another epoch is a gap.
3. **Gap.** Entries trimmed before this edge read them, an ingest buffer that overflowed, or a
   new epoch (Redis lost everything and a new numbering began): the edge logs it, counts it,
   and goes back to 1., which re-snapshots every client (``{"op":"resync"}`` then a snapshot).
   It never skips silently.
4. **Redis down.** Clients stay connected with the bars they have; ``/readyz`` says why; the edge
   reconnects with backoff and, once Redis answers, checks the stream's epoch and resumes from
   its last id. While Redis is back but empty (the ingest has not re-seeded it yet) it waits.
   When idle it re-checks the epoch every :data:`BLOCK_MS`.

Event loop only. :meth:`stop` cancels the Redis call in flight (shutdown never waits on Redis),
which ends :meth:`batches`, and closes the client; idempotent.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Final

from ..feed import Ingest, Readiness, Resync
from ..metrics import counter, gauge
from ..stats import Histogram
from .codec import BadEntry, Keys, Position, Snapshot, Verdict, decode_entry, parse_id, parse_meta, parse_snapshot
from .link import DOWN, Link, log
from .scripts import SNAPSHOT

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ..settings import Settings

#: How long one XREAD blocks; an idle edge re-checks the stream's epoch this often.
BLOCK_MS: Final = 1000


class EdgeFeed:
    """Redis Stream -> hub. Create it in the event loop it delivers to."""

    def __init__(self, settings: Settings) -> None:
        assert settings.redis_url is not None  # checked by Settings
        self.keys = Keys(settings.redis_prefix)
        self.stale_after = settings.stale_after
        self.link = Link(settings.redis_url, reconnect_min=settings.reconnect_min, reconnect_max=settings.reconnect_max)
        self._snapshot = self.link.redis.register_script(SNAPSHOT)
        self.position = Position()
        self.loaded = False  # a snapshot is in the hub
        self.waiting = "waiting for the first snapshot from redis"  # why not live yet, when so
        self.last_entry: float | None = None  # monotonic time of the last entry (or snapshot)
        self.lag = Histogram()
        self.entries = 0
        self.duplicates = 0
        self.resyncs = 0
        self.bad = 0

    def start(self) -> None:
        pass

    async def run(self) -> None:
        return  # the reading happens in batches(), in the pump's task

    async def batches(self, limit: int) -> AsyncIterator[list[Ingest]]:
        link = self.link
        need_snapshot = True
        check_epoch = False
        while not link.closed:
            resync: Resync | None = None
            reply: Any = None
            try:
                if need_snapshot:
                    resync = await self._load()
                    if resync is None:  # nothing in Redis yet: an ingest will seed it
                        await link.sleep(link.reconnect_min)
                        continue
                    need_snapshot = check_epoch = False
                elif check_epoch:
                    verdict = await self._check_epoch()
                    if verdict is None:  # Redis is back but empty: wait for the ingest's re-seed
                        await link.sleep(link.reconnect_min)
                        continue
                    check_epoch = False
                    need_snapshot = verdict
                    continue
                else:
                    reply = await link.call(
                        link.redis.xread({self.keys.stream: self.position.last_id}, count=limit, block=BLOCK_MS)
                    )
                    link.up()
            except DOWN as exc:
                link.down(exc)
                check_epoch = True
                await link.pause()
                continue
            if resync is not None:
                yield resync
                continue
            if not reply:
                check_epoch = not link.closed  # idle: has the stream been recreated meanwhile?
                continue
            batch, gap = self._entries(reply)
            if batch:
                yield batch
            if gap is not None:
                self._gap(gap)
                need_snapshot = True

    # -- steps --------------------------------------------------------------------------------

    async def _load(self) -> Resync | None:
        """Read the snapshot; ``None`` when Redis holds no backplane data (or the link closed)."""
        reply = await self.link.call(self._snapshot([self.keys.meta, self.keys.symbols], [self.keys.bars]))
        self.link.up()
        try:
            snap: Snapshot | None = parse_snapshot(reply) if reply is not None else None
            if snap is None:
                if not self.link.closed:
                    self.waiting = "redis holds no candles yet: waiting for an ingest to publish"
                return None
            now = time.monotonic()
            resync = Resync((candle, now) for candle in snap.candles())
        except BadEntry as exc:
            log.error("backplane: unreadable snapshot (%s); retrying", exc)
            self.bad += 1
            return None
        self.position = Position(snap.epoch, snap.seq)
        self.loaded = True
        self.waiting = ""
        self.last_entry = now
        log.info("backplane: snapshot of %d bar(s) at %s; live from there", len(resync), self.position.last_id)
        return resync

    async def _check_epoch(self) -> bool | None:
        """Whether Redis's top means this edge must re-snapshot; ``None``: Redis is empty."""
        reply = await self.link.call(self.link.redis.hmget(self.keys.meta, ["epoch", "seq"]))
        self.link.up()
        try:
            meta = parse_meta(reply) if reply is not None else None
        except BadEntry:
            meta = None
        if meta is None:
            if not self.link.closed:
                self.waiting = "redis was restarted empty: waiting for the ingest to re-seed it"
            return None
        self.waiting = ""
        if self.position.behind(*meta):
            self._gap(f"redis's stream is at {meta[0]}-{meta[1]}, another numbering than this edge's")
            return True
        return False

    def _entries(self, reply: Any) -> tuple[list[Ingest], str | None]:
        """Judge and decode one XREAD reply: the entries to deliver, in order, and what gap
        stopped them (``None``: no gap)."""
        now = time.monotonic()
        wall = time.time()
        batch: list[Ingest] = []
        position = self.position
        observe = self.lag.observe
        for _stream, entries in reply:
            for raw_id, fields in entries:
                try:
                    epoch, seq = parse_id(raw_id)
                    verdict = position.judge(epoch, seq)
                    if verdict is Verdict.DUPLICATE:
                        self.duplicates += 1
                        continue
                    if verdict is Verdict.GAP:
                        return batch, f"expected {position.epoch}-{position.seq + 1}, read {epoch}-{seq}"
                    candle, published = decode_entry(fields)
                except BadEntry as exc:
                    self.bad += 1
                    log.error("backplane: skipped an unreadable entry %r: %s", raw_id, exc)
                    continue
                position.epoch, position.seq = epoch, seq
                batch.append((candle, now))
                observe(max(0.0, wall - published))
        self.entries += len(batch)
        if batch:
            self.last_entry = now
            self.waiting = ""
        return batch, None

    def _gap(self, what: str) -> None:
        self.resyncs += 1
        log.warning("backplane: gap in the ingest's sequence (%s): re-snapshotting every client", what)

    # -- Feed -----------------------------------------------------------------------------------

    def readiness(self, now: float) -> Readiness:
        age = None if self.last_entry is None else now - self.last_entry
        if not self.link.connected and self.link.error is not None and self.loaded:
            return Readiness(f"redis unreachable ({self.link.error}): serving the last bars; reconnecting", age)
        if self.waiting:
            reason = self.waiting
            if self.link.error is not None and not self.link.connected:
                reason += f" ({self.link.error})"
            return Readiness(reason, age)
        if age is not None and age > self.stale_after:
            return Readiness(f"no candles from redis for {age:.1f}s", age)
        return Readiness(None, age)

    def metrics(self) -> Iterator[Metric]:
        from prometheus_client.core import HistogramMetricFamily

        yield from self.link.metrics()
        yield counter("backplane_entries", "Stream entries delivered to the hub", self.entries)
        yield counter("backplane_duplicates", "Stream entries dropped as already delivered", self.duplicates)
        yield counter("backplane_resyncs", "Gaps in the ingest's sequence: clients re-snapshotted", self.resyncs)
        yield counter("backplane_bad_entries", "Stream entries or snapshots that could not be read", self.bad)
        age = None if self.last_entry is None else time.monotonic() - self.last_entry
        yield gauge(
            "backplane_last_entry_age_seconds",
            "Seconds since the last stream entry (or snapshot) reached the hub (-1: none yet)",
            -1.0 if age is None else age,
        )
        yield HistogramMetricFamily(
            "candlecast_backplane_lag_seconds",
            "Ingest publish to edge hub, per stream entry (wall clocks of both hosts)",
            buckets=self.lag.buckets(),
            sum_value=self.lag.sum,
        )

    async def stop(self) -> None:
        await self.link.close()
