"""The ingest: the upstream source published to the Redis Stream (``--role ingest``).

:class:`IngestPublisher` is not a feed: no hub reads it (an ingest builds none, and serves no
client). Its :meth:`~IngestPublisher.run` does the work in the runtime's task group, and it
reports its readiness and metrics like a feed does (:class:`~candlecast.feed.base.Observed`).

- **Lease.** Only the lease holder (:mod:`candlecast.backplane.lease`) runs the source, i.e.
  connects to the broker; a standby retries until the lease is free. After a Redis outage a standby
  waits one lease time before trying, so the leader that was buffering meanwhile takes its lease
  back first.
- **Sequence.** Each candle the source emits is stamped ``<epoch>-<seq>`` (see
  :mod:`candlecast.backplane.codec`) and appended to a bounded buffer (``--ingest-buffer``; when
  full the oldest is dropped and counted, which edges see as a gap). The numbering lives in the
  ingest: a new leader continues the one it finds in Redis; one that finds Redis empty keeps its
  own, or starts a new epoch if it has none.
- **Publish.** A flusher takes up to :data:`FLUSH_MAX` buffered candles at a time and writes them
  with one PUBLISH script call (one round trip): the entries (``XADD MAXLEN ~``), each stream's
  bars and the stream's top, atomically, and only if the caller still holds the lease (fencing).
- **Redis restarted empty.** The leader takes its lease back, then re-seeds Redis in one script
  call: its epoch and last confirmed sequence, the bars it mirrors (:class:`~.codec.Bars`), and
  its last :data:`RETAIN` confirmed entries, under their original ids (edges that had not read
  them resume from their last id; edges drop what they had). Then the buffer flushes.
- **Redis unreachable.** The source keeps running and the buffer fills; every call is retried
  within :data:`~candlecast.backplane.pace.RETRY_MAX` (Redis's own short retry, not the broker's
  ``--reconnect-max``), so the buffer flushes a moment after Redis answers again; ``/readyz`` says so.
- **A new stream.** The first write into a Redis that holds no stream (a first start) creates
  it: epoch, sequence 0, nothing to re-seed. That is logged as a new stream, not counted as a
  re-seed.
- **A foreign entry on top.** An entry at or above the ingest's next id that it never wrote
  (another writer's ``XADD``) makes every later ``XADD`` fail ("equal or smaller than the target
  stream top item"). The ingest says so (an error line, ``candlecast_ingest_stream_conflicts_total``,
  ``candlecast_ingest_wedged`` and ``/readyz``) and steps over it: its buffered and later
  candles are re-stamped above the stream's top (:func:`~.codec.id_above`: later sequence numbers
  in its epoch, or a new epoch just above the foreign one, recorded with the REBASE script). Edges
  see one gap and re-snapshot. When no id above fits, it stays not ready and retries every
  :data:`WEDGED_RETRY` (deleting the stream key recovers it).

The flusher waits for data on an event (the puller sets it), never on a timer. The ingest's
other waits are timers with a bound, none of them for data: the lease's renewal (every third of
``--lease-ttl``); a standby's retry of the lease (every tenth: a leader that died shows only by
its lease running out, which is a time, not an event); a standby's hold-off of one lease time
after a Redis outage; and the retries after an error (:meth:`Link.pause
<candlecast.backplane.link.Link.pause>`, :data:`WEDGED_RETRY`).

Event loop only (the source's producer thread is the :class:`~candlecast.feed.source.SourceFeed`'s).
:meth:`stop` cancels :meth:`run`, which stops the source and closes the Redis client; idempotent.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from itertools import islice
from typing import TYPE_CHECKING, Any, Final

import anyio

from ..feed.base import Readiness
from ..feed.source import SourceFeed
from ..metrics import counter, gauge
from ..model.candle import Candle, encode
from ..model.intervals import Aggregator, IntervalSet
from ..model.streams import split_stream, stream_name, stream_of
from .codec import BadEntry, Bars, Keys, candle_from_json, entry_id, id_above, parse_id, parse_snapshot
from .lease import Lease
from .link import DOWN, Link
from .pace import Quiet
from .scripts import PUBLISH, REBASE, RESEED, SNAPSHOT

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ..settings import Settings


__all__ = ["FLUSH_MAX", "RETAIN", "STREAM_TOP", "WEDGED_RETRY", "IngestPublisher", "Pending"]

log = logging.getLogger("candlecast.backplane")

#: Most candles per PUBLISH call.
FLUSH_MAX: Final = 512
#: Confirmed entries kept to re-send after Redis restarted empty.
RETAIN: Final = 4096
#: Seconds between two tries while a foreign entry on the stream's top leaves no id to write at.
WEDGED_RETRY: Final = 1.0
#: What Redis says when an XADD's id is not above the stream's top (or no id is left above it).
STREAM_TOP: Final = ("equal or smaller than the target stream top item", "exhausted the last possible ID")


@dataclass(frozen=True, slots=True)
class Pending:
    """One stamped candle: its entry id, stream, bar open time and JSON."""

    seq: int
    id: str
    stream: str
    ot: str
    text: str


class IngestPublisher:
    """Source -> Redis Stream, for the lease holder. Create it in the event loop."""

    def __init__(
        self, settings: Settings, source_factory: Callable[[Settings], SourceFeed], *, intervals: IntervalSet
    ) -> None:
        assert settings.redis_url is not None  # checked by Settings
        self.settings = settings
        self.intervals = intervals
        self.keys = Keys(settings.redis_prefix)
        self.maxlen = settings.stream_maxlen
        self.history = settings.history
        self.capacity = settings.ingest_buffer
        self._source_factory = source_factory
        self.link = Link(settings.redis_url)
        self.lease = Lease(self.link, self.keys, settings.lease_ttl)
        self._publish = self.link.redis.register_script(PUBLISH)
        self._reseed = self.link.redis.register_script(RESEED)
        self._rebase = self.link.redis.register_script(REBASE)
        self._snapshot = self.link.redis.register_script(SNAPSHOT)
        self.source: SourceFeed | None = None
        self.epoch: int | None = None
        self.seq = 0  # last stamped
        self.confirmed = 0  # last written to Redis
        self.buffer: deque[Pending] = deque()
        self.retained: deque[Pending] = deque(maxlen=min(RETAIN, self.maxlen))
        self.bars = Bars(self.history)
        self.stream_length = 0
        self.published = 0
        self.dropped = 0
        self.reseeds = 0
        self.conflicts = 0  # writes refused because the stream's top is an entry this ingest never wrote
        self.wedged: str | None = None  # why this leader cannot write, while so
        self._quiet = Quiet()
        self._has_data = anyio.Event()
        self._deposed: str | None = None  # why this leader steps down
        self._term = anyio.CancelScope()  # the current term's task group
        self._scope = anyio.CancelScope()

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        with self._scope:
            try:
                while True:
                    await self._standby()
                    await self._lead()
                    log.warning(
                        "ingest: stepping down (%s); %d buffered candle(s) discarded", self._deposed, len(self.buffer)
                    )
                    self.buffer.clear()
                    self.lease.token = None
            finally:
                with anyio.CancelScope(shield=True):
                    await self.link.close()

    async def stop(self) -> None:
        """Cancel :meth:`run` (which stops the source and closes the client). Idempotent."""
        self.link.cancel()
        self._scope.cancel()

    def readiness(self, now: float) -> Readiness:
        if not self.lease.leading:
            if not self.link.connected:
                return Readiness(f"standby; redis unreachable ({self.link.error})")
            return Readiness(f"standby: ingest {self.lease.holder or '?'} holds the lease; waiting for it")
        if self.wedged is not None:
            return Readiness(f"leader: {self.wedged}: buffering {len(self.buffer)} candle(s)")
        if not self.link.connected:
            return Readiness(f"leader; redis unreachable ({self.link.error}): buffering {len(self.buffer)} candle(s)")
        if self.source is None:
            return Readiness("leader: starting the source")
        return self.source.readiness(now)

    def metrics(self) -> Iterator[Metric]:
        yield gauge(
            "ingest_leader",
            "1 while this ingest holds the lease (runs the source), 0 on standby",
            int(self.lease.leading),
        )
        yield counter("ingest_takeovers", "Times this ingest took the lease", self.lease.takeovers)
        yield gauge("ingest_buffer_depth", "Stamped candles waiting to be written to Redis", len(self.buffer))
        yield counter("ingest_buffer_dropped", "Candles dropped from a full ingest buffer (oldest first)", self.dropped)
        yield counter("ingest_published", "Candles written to the Redis Stream", self.published)
        yield counter(
            "ingest_reseeds",
            "Times this ingest re-seeded a Redis restarted empty (a first start into a new Redis is not one)",
            self.reseeds,
        )
        yield counter(
            "ingest_stream_conflicts",
            "Writes refused because the stream's top is an entry this ingest never wrote",
            self.conflicts,
        )
        yield gauge(
            "ingest_wedged",
            "1 while a foreign entry on the stream's top stops every write",
            int(self.wedged is not None),
        )
        yield gauge("backplane_stream_length", "Entries in the Redis Stream, as of the last write", self.stream_length)
        yield from self.link.metrics()
        if self.source is not None:
            yield from self.source.metrics()

    # -- standby ------------------------------------------------------------------------------

    async def _standby(self) -> None:
        """Return once this instance holds the lease."""
        lease, link = self.lease, self.link
        after_outage = False
        while True:
            try:
                if after_outage:  # let the leader that buffered through the outage take it back first
                    await link.sleep(lease.ttl)
                    after_outage = False
                if await lease.acquire():
                    link.up()
                    log.info("ingest %s: took the lease (%s); connecting to the source", lease.instance, lease.token)
                    return
                link.up()
            except DOWN as exc:
                link.down(exc)
                after_outage = True
                await link.pause()
                continue
            await link.sleep(lease.poll_every)

    # -- leading --------------------------------------------------------------------------------

    async def _lead(self) -> None:
        """Adopt the stream's numbering, run the source, publish until deposed (``_deposed``
        says why) or cancelled."""
        await self._adopt()
        self._deposed = None
        source = self.source = self._source_factory(self.settings)
        try:
            source.start()
            async with anyio.create_task_group() as tg:
                self._term = tg.cancel_scope
                tg.start_soon(source.run)  # its backfill and gap fills: only the ingest asks the broker
                tg.start_soon(self._pull, source)
                tg.start_soon(self._renew)
                await self._flush()
        finally:
            self.source = None
            with anyio.CancelScope(shield=True):
                await source.stop()

    async def _adopt(self) -> None:
        """Continue the numbering Redis holds, or (Redis empty) keep ours or begin a new epoch."""
        while True:
            try:
                reply = await self.link.call(self._snapshot([self.keys.meta, self.keys.symbols], [self.keys.bars]))
                self.link.up()
                break
            except DOWN as exc:
                self.link.down(exc)
                await self.link.pause()
        try:
            snap = parse_snapshot(reply) if reply is not None else None
        except BadEntry as exc:
            log.error("ingest: unreadable backplane data in redis (%s); starting a new epoch", exc)
            snap = None
        self.buffer.clear()
        if snap is not None:
            if snap.epoch != self.epoch or snap.seq != self.confirmed:
                self.epoch, self.seq, self.confirmed = snap.epoch, snap.seq, snap.seq
                self.retained.clear()
                if bad := self.bars.load(snap):
                    log.error("ingest: left out %d unreadable bar(s) of the stored history", bad)
            log.info("ingest: continuing the stream at %s", entry_id(snap.epoch, snap.seq))
        elif self.epoch is None:
            self.epoch = time.time_ns() // 1_000_000
            self.seq = self.confirmed = 0
            log.info("ingest: redis holds no stream; starting epoch %d", self.epoch)

    def _aggregators(self) -> list[Aggregator]:
        """This term's aggregators, continuing the bars Redis (or this ingest) holds, so that a
        new leader's first candle extends the current bars instead of starting them anew."""
        aggregators = [Aggregator(i) for i in self.intervals.higher]
        seeded = 0
        for stream in self.bars.streams():
            if split_stream(stream)[1] is not None:
                continue  # a higher interval's
            newest_raw = self.bars.last(stream)
            if newest_raw is None:
                continue
            newest = candle_from_json(newest_raw)
            for aggregator in aggregators:
                raw = self.bars.last(stream_name(stream, aggregator.interval.name))
                if raw is not None and aggregator.seed(candle_from_json(raw), newest):
                    seeded += 1
        if seeded:
            log.info("ingest: continuing %d higher-interval bar(s) from the stored history", seeded)
        return aggregators

    async def _pull(self, source: SourceFeed) -> None:
        """Source -> buffer: build the higher intervals' bars (once, here: edges take them as
        they are), stamp every candle; drop the oldest past the bound."""
        buffer, capacity = self.buffer, self.capacity
        aggregators = self._aggregators()

        def stamp(candle: Candle) -> None:
            self.seq += 1
            seq = self.seq
            buffer.append(
                Pending(seq, f"{self.epoch}-{seq}", stream_of(candle), str(candle.ot), encode(candle).decode())
            )

        async for batch in source.batches(FLUSH_MAX):
            for candle, _received in batch.items:  # live and history bars alike: edges merge by bar
                stamp(candle)
                if candle.i is None:
                    for aggregator in aggregators:
                        bar = aggregator.update(candle)
                        if bar is not None:
                            stamp(bar)
            if len(buffer) > capacity:
                over = len(buffer) - capacity
                for _ in range(over):
                    buffer.popleft()
                if not self.dropped:
                    log.warning("ingest: buffer full (%d candles, --ingest-buffer): dropping the oldest", capacity)
                self.dropped += over
            self._has_data.set()

    async def _renew(self) -> None:
        """Keep the lease: every third of its time; take it back if Redis lost it."""
        lease, link = self.lease, self.link
        while True:
            await link.sleep(lease.renew_every)
            try:
                if not await lease.renew():
                    return self._depose(f"ingest {lease.holder} holds the lease now")
                link.up()
            except DOWN as exc:
                link.down(exc)  # the flusher retries too; keep the source running

    def _depose(self, reason: str) -> None:
        self._deposed = reason
        self._term.cancel()

    async def _flush(self) -> None:
        """Buffer -> Redis, :data:`FLUSH_MAX` at a time, one PUBLISH call each."""
        buffer, link, keys = self.buffer, self.link, self.keys
        script_keys = [keys.lease, keys.meta, keys.stream, keys.symbols]
        while self._deposed is None:
            if not buffer:
                self._has_data = anyio.Event()
                await self._has_data.wait()
                continue
            batch = list(islice(buffer, FLUSH_MAX))
            published = str(time.time_ns() // 1000)
            args: list[Any] = [self.lease.token, self.epoch, self.maxlen, self.history, keys.bars]
            for p in batch:
                args += (p.id, p.seq, p.stream, p.ot, p.text, published)
            try:
                reply = await link.call(self._publish(script_keys, args))
                link.up()
            except DOWN as exc:
                if any(text in str(exc) for text in STREAM_TOP):
                    link.up()  # Redis answered
                    await self._step_over()
                    continue
                link.down(exc)
                await link.pause()
                continue
            if reply is None:
                return  # stopping
            status = reply[0]
            if status == b"OK":
                if self.wedged is not None:
                    log.warning("ingest: writing again, from %s on", batch[0].id)
                    self.wedged = None
                self._confirm(batch, int(reply[1]))
            elif status == b"NOLEASE":
                await self._take_back()
            elif status == b"RESEED":
                await self._reseed_redis()
            elif status == b"FENCED":
                self._depose(f"ingest {reply[1].decode()} holds the lease now")
            else:  # EPOCH / BEHIND: another leader moved the stream on meanwhile
                self._depose(f"the stream moved on without this ingest ({status.decode()} {reply[1].decode()})")

    async def _step_over(self) -> None:
        """The stream's top is an entry this ingest never wrote, at or above its next id: say so,
        and re-stamp the buffer above it (see the module docstring)."""
        self.conflicts += 1
        link, keys = self.link, self.keys
        assert self.epoch is not None
        try:
            info = await link.call(link.redis.xinfo_stream(keys.stream))
            link.up()
            if info is None:
                return  # stopping
            top = parse_id(info["last-generated-id"])
        except DOWN as exc:
            link.down(exc)
            await link.pause()
            return
        except (BadEntry, KeyError, TypeError) as exc:  # not a reply Redis gives
            top, above = (0, 0), None
            log.error("ingest: unreadable XINFO STREAM reply (%s)", exc)
        else:
            above = id_above(top, self.epoch, self.confirmed)
        top_id = entry_id(*top)
        if above is None or above == (self.epoch, self.confirmed):
            self.wedged = f"the stream's top {top_id} was not written by this ingest and no id above it fits"
            if self._quiet.allow("wedged", time.monotonic()) is not None:
                log.error("ingest: %s: cannot write; delete %s to recover; retrying", self.wedged, keys.stream)
            await link.sleep(WEDGED_RETRY)
            return
        self.wedged = f"the stream's top {top_id} was not written by this ingest; continuing above it"
        epoch, base = above
        log.error(
            "ingest: every write is refused: the stream's top %s is an entry this ingest never wrote "
            "(it is at %s); continuing at %s",
            top_id,
            entry_id(self.epoch, self.confirmed),
            entry_id(epoch, base + 1),
        )
        if epoch != self.epoch:
            assert self.lease.token is not None  # leading
            try:
                reply = await link.call(self._rebase([keys.lease, keys.meta], [self.lease.token, self.epoch, epoch]))
                link.up()
            except DOWN as exc:
                link.down(exc)
                await link.pause()
                return
            if reply is None:
                return
            if reply[0] == b"FENCED":
                return self._depose(f"ingest {reply[1].decode() or '?'} holds the lease now")
            if reply[0] != b"OK":
                return self._depose(f"the stream moved on without this ingest (epoch {reply[1].decode()})")
        self._restamp(epoch, base)

    def _restamp(self, epoch: int, base: int) -> None:
        """Renumber the buffered candles from ``base + 1`` in ``epoch``; later ones follow."""
        shift = base - self.confirmed
        pending = [replace(p, seq=p.seq + shift, id=entry_id(epoch, p.seq + shift)) for p in self.buffer]
        self.buffer.clear()
        self.buffer.extend(pending)
        self.epoch = epoch
        self.seq += shift

    def _confirm(self, batch: list[Pending], length: int) -> None:
        last = batch[-1].seq
        buffer = self.buffer
        while buffer and buffer[0].seq <= last:  # the puller may have dropped some meanwhile
            buffer.popleft()
        self.retained.extend(batch)
        record = self.bars.record
        for p in batch:
            record(p.stream, float(p.ot), p.text)
        self.confirmed = last
        self.published += len(batch)
        self.stream_length = length

    async def _take_back(self) -> None:
        try:
            if not await self.lease.renew():
                return self._depose(f"ingest {self.lease.holder} holds the lease now")
            self.link.up()
            log.warning("ingest %s: the lease was gone (redis restarted?); took it back", self.lease.instance)
        except DOWN as exc:
            self.link.down(exc)
            await self.link.pause()

    async def _reseed_redis(self) -> None:
        """Write back the numbering, the bars and the retained entries (Redis came back empty),
        or, for a numbering with no entry yet, just create the stream's top (a first start)."""
        keys = self.keys
        bars = list(self.bars.items())
        args: list[Any] = [
            self.lease.token,
            self.epoch,
            self.confirmed,
            self.maxlen,
            self.history,
            keys.bars,
            len(bars),
        ]
        for stream, ot, text in bars:
            args += (stream, repr(ot) if ot != int(ot) else str(int(ot)), text)
        published = str(time.time_ns() // 1000)
        for p in self.retained:
            args += (p.id, p.text, published)
        try:
            reply = await self.link.call(self._reseed([keys.lease, keys.meta, keys.stream, keys.symbols], args))
            self.link.up()
        except DOWN as exc:
            self.link.down(exc)
            await self.link.pause()
            return
        if reply is None:
            return
        if reply[0] == b"FENCED":
            return self._depose(f"ingest {reply[1].decode() or '?'} holds the lease now")
        if reply[0] == b"OK":
            if self.confirmed == 0:  # this numbering never had an entry: nothing was lost
                log.info("ingest: started a new stream in redis, epoch %s", self.epoch)
                return
            self.reseeds += 1
            log.warning(
                "ingest: redis was empty: re-seeded epoch %s up to seq %d with %d bar(s) and %d entr(ies)",
                self.epoch,
                self.confirmed,
                len(bars),
                len(self.retained),
            )
