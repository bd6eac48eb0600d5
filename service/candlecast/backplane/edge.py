"""The edge's feed: candles from the Redis Stream into this process's hub (``--role edge``).

:class:`EdgeFeed` is a :class:`~candlecast.feed.base.Feed` with no upstream. Its :meth:`batches`
generator does the reading itself, in the pump's task (no thread, no extra task):

1. **Snapshot.** The SNAPSHOT script reads every symbol's bars and the position ``(epoch, seq)``
   they belong to in one atomic step; they go to the hub as a
   :data:`~candlecast.feed.base.BatchKind.RESYNC` batch (the first one just fills it). When Redis
   holds no stream yet, there is nothing to snapshot: the edge follows the stream from its first
   entry (a blocking ``XREAD`` from ``0-0`` waits on a key that does not exist yet), so a client
   connected before the first candle gets every candle, live, with no re-snapshot.
2. **Live.** Blocking ``XREAD`` from the last delivered id ``<epoch>-<seq>``, at most ``limit``
   entries per call and one pump step per reply. Each entry is judged by the ingest's sequence
   (:class:`~candlecast.backplane.codec.Position`): the next number is delivered, an older one
   (re-sent by the ingest after a Redis restart) is dropped, a jump or another epoch is a gap.
3. **Gap.** Entries trimmed before this edge read them, an ingest buffer that overflowed, or a
   new epoch (Redis lost everything and a new numbering began): the edge logs it, counts it,
   and goes back to 1., which re-snapshots every client (``{"op":"resync"}`` then a snapshot).
   It never skips silently.
4. **Poison.** Entries are untrusted: each candle passes the broker formats' rules
   (:func:`~candlecast.backplane.codec.candle_from_json`). An unreadable entry, and an entry
   beyond the stream's top (``meta``, which the ingest moves with every entry, does not account
   for it: someone else wrote it), is skipped: the read goes on after it (no busy loop on a bad
   tail entry), the position stays, and it is counted by reason
   (``candlecast_backplane_bad_entries_total{reason}``) and logged at most once a second per
   reason. Re-snapshots are paced (:data:`RESYNC_EVERY`), however many gaps Redis shows.
5. **Redis down.** Clients stay connected with the bars they have; ``/readyz`` says why; the edge
   retries within :data:`~candlecast.backplane.pace.RETRY_MAX` (jittered per edge) and, once
   Redis answers, checks the stream's epoch and resumes from its last id. Redis back but empty
   (the ingest has not re-seeded it yet): the blocking ``XREAD`` from that id waits for the
   re-seed. When idle it re-checks the epoch every :data:`BLOCK_MS`.

Every wait for data is a blocking ``XREAD`` in Redis. The edge sleeps only in two bounded
delays, never to wait for data: the retry after a failed Redis call (:meth:`Link.pause
<candlecast.backplane.link.Link.pause>`) and the pace between two re-snapshots after gaps
(:data:`RESYNC_EVERY`, so that a writer cannot make it loop on them).

Event loop only. :meth:`stop` cancels the Redis call in flight (shutdown never waits on Redis),
which ends :meth:`batches`, and closes the client; idempotent.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Final

from ..fanout.stats import Histogram
from ..feed.base import Batch, BatchKind, Ingest, Readiness
from ..metrics import counter, gauge
from .codec import (
    BAD_REASONS,
    BadEntry,
    Keys,
    Position,
    Snapshot,
    Verdict,
    decode_entry,
    entry_id,
    parse_id,
    parse_meta,
    parse_snapshot,
)
from .link import DOWN, Link, log
from .pace import Pace, Quiet
from .scripts import SNAPSHOT

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ..settings import Settings

__all__ = ["BLOCK_MS", "LOG_EVERY", "RESYNC_EVERY", "EdgeFeed"]

#: How long one XREAD blocks; an idle edge re-checks the stream's epoch this often.
BLOCK_MS: Final = 1000
#: Shortest time between two re-snapshots of every client (the first load is not held back).
RESYNC_EVERY: Final = 1.0
#: Shortest time between two log lines about refused entries of one reason.
LOG_EVERY: Final = 1.0


class EdgeFeed:
    """Redis Stream -> hub. Create it in the event loop it delivers to."""

    def __init__(self, settings: Settings) -> None:
        assert settings.redis_url is not None  # checked by Settings
        self.keys = Keys(settings.redis_prefix)
        self.stale_after = settings.stale_after
        self.link = Link(settings.redis_url)
        self._snapshot = self.link.redis.register_script(SNAPSHOT)
        self.position = Position()
        self.loaded = False  # the hub holds the stream's state (a snapshot, or entries from the first)
        self.waiting = "waiting for the first snapshot from redis"  # why not live yet, when so
        self.last_entry: float | None = None  # monotonic time of the last entry (or snapshot)
        self.lag = Histogram()
        self.entries = 0
        self.duplicates = 0
        self.resyncs = 0
        self.bad: dict[str, int] = {}  # refused entries, bars and replies, by reason
        self.cursor = self.position.last_id  # the last id read: the position, or an entry skipped after it
        self._pace = Pace(RESYNC_EVERY)
        self._quiet = Quiet(LOG_EVERY)

    async def batches(self, limit: int) -> AsyncIterator[Batch]:
        link = self.link
        live = BatchKind.LIVE
        need_snapshot = True
        check_epoch = False
        gap: tuple[str, int, int] | None = None  # (id, epoch, seq) of an entry that broke the sequence
        while not link.closed:
            resync: Batch | None = None
            reply: Any = None
            try:
                if need_snapshot:
                    delay = self._pace.wait(time.monotonic())
                    if delay > 0:  # re-snapshots are paced: a writer cannot make the edge loop on them
                        await link.sleep(delay)
                        continue
                    try:
                        resync = await self._load()
                    except BadEntry as exc:  # retried once the pace allows, like a gap
                        self._refused(exc, "the snapshot")
                        self._pace.take(time.monotonic())
                        continue
                    need_snapshot = check_epoch = False
                    gap = None
                    if resync is None:  # no stream yet: the XREAD below waits for its first entry
                        continue
                elif gap is not None:
                    need_snapshot = await self._judge_gap(*gap)
                    gap = None
                    continue
                elif check_epoch:
                    check_epoch = False
                    need_snapshot = await self._check_epoch()
                    continue
                else:
                    reply = await link.call(
                        link.redis.xread({self.keys.stream: self.cursor}, count=limit, block=BLOCK_MS)
                    )
                    link.up()
            except DOWN as exc:
                link.down(exc)
                check_epoch = True
                gap = None
                await link.pause()
                continue
            if resync is not None:
                yield resync
                continue
            if not reply:
                check_epoch = not link.closed  # idle: has the stream been recreated meanwhile?
                continue
            items, gap = self._entries(reply)
            if items:
                yield Batch(live, items)

    # -- steps --------------------------------------------------------------------------------

    async def _load(self) -> Batch | None:
        """Read the snapshot; ``None`` when Redis holds no backplane data (or the link closed):
        then the edge follows the stream from where it is (:meth:`_follow`). Unreadable bars are
        counted and left out; an unreadable reply raises :class:`BadEntry`."""
        reply = await self.link.call(self._snapshot([self.keys.meta, self.keys.symbols], [self.keys.bars]))
        self.link.up()
        snap: Snapshot | None = parse_snapshot(reply) if reply is not None else None
        if snap is None:
            if not self.link.closed:
                self._follow("redis holds no stream yet")
            return None
        now = time.monotonic()
        self._pace.take(now)
        candles, bad = snap.read()
        for refused in bad:
            self._refused(refused, "a bar of the snapshot")
        resync = Batch(BatchKind.RESYNC, [(candle, now) for candle in candles])
        self.position = Position(snap.epoch, snap.seq)
        self.cursor = self.position.last_id
        self.loaded = True
        self.waiting = ""
        self.last_entry = now
        log.info("backplane: snapshot of %d bar(s) at %s; live from there", len(resync.items), self.position.last_id)
        return resync

    def _follow(self, why: str) -> None:
        """Redis holds no stream: read it from this edge's position, with the blocking XREAD that
        waits on a key that does not exist yet. Before anything was delivered that is ``0-0``:
        the stream's first entry and every later one reach the hub live, so a client connected
        before the first candle gets every candle. After a restart that emptied Redis it is the
        last id delivered: the ingest re-seeds its last entries under their ids, and the sequence
        says whether anything between was lost."""
        self.cursor = self.position.last_id
        if self.position.fresh:
            self.waiting = "redis holds no candles yet: waiting for an ingest to publish"
        else:
            self.waiting = "redis was restarted empty: waiting for the ingest to re-seed it"
        log.info("backplane: %s: following it from %s", why, self.cursor)

    async def _meta(self) -> tuple[int, int] | None:
        """Redis's top ``(epoch, seq)``; ``None``: Redis is empty (or the link closed). Raises
        :class:`BadEntry` (an unreadable top) and Redis errors."""
        reply = await self.link.call(self.link.redis.hmget(self.keys.meta, ["epoch", "seq"]))
        self.link.up()
        return parse_meta(reply) if reply is not None else None

    async def _check_epoch(self) -> bool:
        """Whether Redis's top means this edge must re-snapshot (after an error, or idle). An edge
        that has delivered nothing and reads from ``0-0`` misses nothing: no check (one that
        skipped a foreign entry goes back to ``0-0`` once the ingest's top is below it: the
        stream was recreated). Redis empty: follow the stream from here (:meth:`_follow`)."""
        position = self.position
        if position.fresh and self.cursor == position.last_id:
            return False
        try:
            meta = await self._meta()
        except BadEntry as exc:  # judged again at the next idle check
            self._refused(exc, "the stream's top")
            return False
        if meta is None:
            if not position.fresh and not self.link.closed and not self.waiting:
                self._follow("redis holds no stream (restarted empty?)")
            return False
        if position.fresh:
            if meta < parse_id(self.cursor):
                self.cursor = position.last_id
            return False
        self.waiting = ""
        if self.position.behind(*meta):
            self._gap(f"redis's stream is at {meta[0]}-{meta[1]}, another numbering than this edge's")
            return True
        if self.cursor != self.position.last_id and meta > (self.position.epoch, self.position.seq):
            self.cursor = self.position.last_id  # entries below a skipped one (the stream was recreated)
        return False

    async def _judge_gap(self, raw_id: str, epoch: int, seq: int) -> bool:
        """An entry broke the sequence: a real gap (the stream's top accounts for it: re-snapshot,
        True) or an entry the ingest never wrote (skipped and counted, False). Raises on Redis errors."""
        try:
            meta = await self._meta()
        except BadEntry as exc:
            self._refused(exc, "the stream's top")
            meta = None
        if meta is not None and Position.accounts_for(meta, epoch, seq):
            position = self.position
            expected = "the stream's first entry" if position.fresh else entry_id(position.epoch, position.seq + 1)
            self._gap(f"expected {expected}, read {raw_id}")
            return True
        top = "none" if meta is None else f"{meta[0]}-{meta[1]}"
        self._refused(BadEntry("foreign", f"beyond the stream's top {top}: not the ingest's"), f"entry {raw_id}")
        self.cursor = raw_id
        return False

    def _entries(self, reply: Any) -> tuple[list[Ingest], tuple[str, int, int] | None]:
        """Judge and decode one XREAD reply: the entries to deliver, in order, and the entry
        that broke the sequence, if one did (the rest of the reply is read again after it is
        judged). An unreadable entry is counted and skipped: the read goes on past it, the
        position stays (so the next entry is a gap, judged like any other)."""
        now = time.monotonic()
        wall = time.time()
        batch: list[Ingest] = []
        position = self.position
        observe = self.lag.observe
        gap: tuple[str, int, int] | None = None
        for _stream, entries in reply:
            for raw, fields in entries:
                raw_id = raw.decode() if isinstance(raw, bytes) else str(raw)
                try:
                    epoch, seq = parse_id(raw_id)
                    verdict = position.judge(epoch, seq)
                    if verdict is Verdict.DUPLICATE:
                        self.duplicates += 1
                        continue
                    if verdict is Verdict.GAP:
                        gap = (raw_id, epoch, seq)
                        break
                    candle, published = decode_entry(fields)
                except BadEntry as exc:
                    self._refused(exc, f"entry {raw_id}")
                    self.cursor = raw_id
                    continue
                position.epoch, position.seq = epoch, seq
                self.cursor = raw_id
                batch.append((candle, now))
                observe(max(0.0, wall - published))
            if gap is not None:
                break
        self.entries += len(batch)
        if batch:
            self.last_entry = now
            self.waiting = ""
            self.loaded = True
        return batch, gap

    def _refused(self, exc: BadEntry, what: str) -> None:
        """Count a refused entry (or bar, or reply) by reason; log at most one line per reason
        per second."""
        self.bad[exc.reason] = self.bad.get(exc.reason, 0) + 1
        held = self._quiet.allow(exc.reason, time.monotonic())
        if held is not None:
            more = f" ({held} more of this kind since the last line)" if held else ""
            log.error("backplane: skipped %s: %s%s", what, exc, more)

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
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        yield from self.link.metrics()
        yield counter("backplane_entries", "Stream entries delivered to the hub", self.entries)
        yield counter("backplane_duplicates", "Stream entries dropped as already delivered", self.duplicates)
        yield counter("backplane_resyncs", "Gaps in the ingest's sequence: clients re-snapshotted", self.resyncs)
        bad = CounterMetricFamily(
            "candlecast_backplane_bad_entries",
            "Stream entries, snapshot bars and replies refused (skipped), by reason",
            labels=["reason"],
        )
        for reason in BAD_REASONS:
            bad.add_metric([reason], self.bad.get(reason, 0))
        yield bad
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
