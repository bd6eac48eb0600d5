"""Poisoned backplane data through a real redis-server: entries the ingest never wrote, written
with a real Redis client into the stream a real edge (uvicorn, in-process) reads, observed with
real HTTP and WebSocket clients. The edge survives, counts, logs sparingly, never busy-loops and
paces its re-snapshots; a pump that dies makes ``/healthz`` fail; an ingest wedged by a foreign
entry on the stream's top says so and recovers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import orjson
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection

from candlecast.backplane.codec import Keys
from candlecast.backplane.edge import RESYNC_EVERY
from candlecast.backplane.scripts import PUBLISH
from candlecast.fanout.hub import Hub
from candlecast.model.candle import Candle, encode
from tests.conftest import DEADLINE
from tests.integration.harness import Candlecast, candlecast, client, fake_broker, seed, synced
from tests.integration.scale import backplane_log, redis_server, role_settings
from tests.integration.test_scale import live, scale

KEYS = Keys("candlecast")
EPOCH = 1_700_000_000_000
TOKEN = "1:test-writer"


class Writer:
    """Writes the stream as the ingest does (its PUBLISH script, under a lease it holds), and
    poison beside it (plain XADD)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._publish = redis.register_script(PUBLISH)
        self.seq = 0

    async def begin(self) -> None:
        await self.redis.set(KEYS.lease, TOKEN)
        await self.redis.hset(KEYS.meta, mapping={"epoch": EPOCH, "seq": 0})

    async def write(self, symbol: str, ot: int, *, seq: int | None = None) -> None:
        """A genuine candle at ``seq`` (default: the next), bars and top updated as the ingest does."""
        self.seq = self.seq + 1 if seq is None else seq
        text = encode(Candle(symbol, ot, ot, 100.0, 101.0, 99.0, 100.5)).decode()
        args: list[Any] = [TOKEN, EPOCH, 1000, 100, KEYS.bars]
        args += [f"{EPOCH}-{self.seq}", self.seq, symbol, ot, text, time.time_ns() // 1000]
        reply = await self._publish([KEYS.lease, KEYS.meta, KEYS.stream, KEYS.symbols], args)
        assert reply[0] == b"OK", reply

    async def poison(self, seq: int, candle: bytes, fields: dict[str, bytes | int] | None = None) -> None:
        """An entry at ``EPOCH-seq`` that the ingest never wrote (the top is not moved)."""
        body: dict[Any, Any] = {"c": candle, "p": time.time_ns() // 1000} if fields is None else fields
        await self.redis.xadd(KEYS.stream, body, id=f"{EPOCH}-{seq}")


@asynccontextmanager
async def edge_over_redis() -> AsyncIterator[tuple[Candlecast, Writer]]:
    """A real redis-server, a stream begun by a :class:`Writer` (AAA 1 at seq 1), and a live edge."""
    async with redis_server() as server:
        r = server.client()
        try:
            writer = Writer(r)
            await writer.begin()
            await writer.write("AAA", 1)
            async with candlecast(role_settings("edge", server.url)) as edge:
                await live(edge, "AAA", 1)  # its snapshot is in
                yield edge, writer
        finally:
            await r.aclose()


async def candle(ws: ClientConnection, ot: int) -> list[Any]:
    """Read until candle ``ot`` of AAA arrives; everything read, in order."""
    seen: list[Any] = []
    with anyio.fail_after(DEADLINE):
        while True:
            msg = orjson.loads(await ws.recv())
            seen.append(msg)
            if isinstance(msg, dict) and msg.get("s") == "AAA" and msg.get("ot") == ot:
                return seen


def bad(reason: str) -> str:
    return f'candlecast_backplane_bad_entries_total{{reason="{reason}"}}'


async def serving(cc: Candlecast) -> None:
    """Every route answers as it should on a live edge."""
    async with httpx.AsyncClient(base_url=cc.url) as http:
        for path in ("/healthz", "/readyz", "/api/symbols", "/api/candles?symbol=AAA"):
            r = await http.get(path)
            assert r.status_code == 200, (path, r.text)


GOOD = {"s": "AAA", "t": 2, "ot": 2, "o": 100.0, "h": 101.0, "l": 99.0, "c": 100.5}


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({**GOOD, "s": ["X"]}, "symbol"),
        ({**GOOD, "s": {}}, "symbol"),
        ({**GOOD, "ot": "zzz"}, "type"),
        ({**GOOD, "i": ["5m"]}, "interval"),
        ({**GOOD, "h": 1.0}, "ohlc"),
        ({k: v for k, v in GOOD.items() if k != "c"}, "shape"),
        (b"{not json", "json"),
        (None, "fields"),  # no "c" field at all
    ],
)
async def test_edge_survives_a_poisoned_entry_at_the_next_sequence_and_counts_it(entry: Any, reason: str) -> None:
    """The entry is skipped and counted; every route keeps answering, the client stays, and the
    stream goes on (the ingest's next number after it is a real gap: one re-snapshot)."""
    async with edge_over_redis() as (edge, writer), client(edge.ws_url("symbols=AAA")) as ws:
        await synced(ws)
        if entry is None:
            await writer.poison(2, b"", fields={"x": 1})
        else:
            await writer.poison(2, entry if isinstance(entry, bytes) else orjson.dumps(entry))
        await writer.write("AAA", 3, seq=3)
        seen = await candle(ws, 3)
        assert {"op": "resync"} in seen
        await writer.write("AAA", 4)
        assert await candle(ws, 4) == [{**GOOD, "t": 4, "ot": 4}]  # live again, on the same connection
        await serving(edge)
        assert await edge.metric(bad(reason)) == 1
        assert await edge.metric("candlecast_backplane_resyncs_total") == 1


async def test_an_unreadable_tail_entry_is_skipped_once_and_the_edge_blocks_on_redis() -> None:
    """Nothing after the bad entry: the edge logs it once and goes back to a blocking XREAD.
    Counted over two idle periods of the edge (its top checks, seen on MONITOR): a few reads,
    not a spin."""
    with backplane_log() as lines:
        async with edge_over_redis() as (edge, writer):
            monitor_client = writer.redis
            async with monitor_client.monitor() as monitor:
                await writer.poison(2, orjson.dumps({**GOOD, "s": ["X"]}))
                reads = checks = 0
                with anyio.fail_after(DEADLINE):
                    while checks < 2:
                        command = (await monitor.next_command())["command"].upper()
                        if command.startswith("XREAD "):
                            reads += 1
                            assert reads <= 6, "the edge reads Redis in a loop"
                        elif command.startswith("HMGET ") and KEYS.meta.upper() in command:
                            checks += 1
            assert lines.count("skipped entry") == 1
            assert await edge.metric(bad("symbol")) == 1
            await serving(edge)


async def test_refused_entries_log_at_most_one_line_per_second_per_kind() -> None:
    """A hundred poisoned entries: one unreadable at the next sequence, then 99 beyond the
    stream's top (foreign); all counted, each kind logged at most once a second."""
    with backplane_log() as lines:
        async with edge_over_redis() as (edge, writer), client(edge.ws_url("symbols=AAA")) as ws:
            await synced(ws)
            start = time.monotonic()
            await writer.poison(2, orjson.dumps({**GOOD, "s": {}}))
            for seq in range(3, 102):
                await writer.poison(seq, orjson.dumps({**GOOD, "s": {}}))
            for _ in range(10_000):  # bounded: until the edge has judged all 99 (a real gap would end it)
                if await edge.metric(bad("foreign")) == 99:
                    break
            await writer.write("AAA", 102, seq=102)
            await candle(ws, 102)
            elapsed = time.monotonic() - start
            assert await edge.metric(bad("symbol")) == 1
            assert await edge.metric(bad("foreign")) == 99
            assert lines.count("skipped entry") >= 2  # one line for each kind
            for kind in ("symbol:", "foreign:"):
                written = sum("skipped entry" in line and kind in line for line in lines.lines)
                assert 1 <= written <= 1 + elapsed, (kind, written, elapsed)


async def test_an_entry_beyond_the_streams_top_is_skipped_without_a_resync() -> None:
    """A well-formed entry ahead of the top (``meta.seq`` behind it) is not the ingest's: it is
    skipped, not taken for a gap (a re-snapshot would find the same top and loop)."""
    with backplane_log() as lines:
        async with edge_over_redis() as (edge, writer), client(edge.ws_url("symbols=AAA")) as ws:
            await synced(ws)
            await writer.poison(5, orjson.dumps({**GOOD, "t": 5, "ot": 5}))
            await lines.wait_for("not the ingest's")
            assert await edge.metric("candlecast_backplane_resyncs_total") == 0
            await writer.write("AAA", 6, seq=6)  # a real gap: the ingest's numbers 2..5 are missing
            seen = await candle(ws, 6)
            assert seen[0] == {"op": "resync"} and all(m.get("ot") != 5 for m in seen)
            await writer.write("AAA", 7)
            assert [m["ot"] for m in await candle(ws, 7)] == [7]
            assert await edge.metric("candlecast_backplane_resyncs_total") == 1
            assert await edge.metric(bad("foreign")) == 1


async def test_re_snapshots_are_paced_however_many_gaps_redis_shows() -> None:
    """Two hundred real gaps (every other number), as fast as Redis takes them: the edge
    re-snapshots at most once per RESYNC_EVERY (plus the first), then serves the newest state."""
    async with edge_over_redis() as (edge, writer), client(edge.ws_url("symbols=AAA")) as ws:
        await synced(ws)
        start = time.monotonic()
        for k in range(200):
            await writer.write("AAA", 10 + k, seq=3 + 2 * k)
        await writer.write("AAA", 1000)
        seen = await candle(ws, 1000)
        elapsed = time.monotonic() - start
        resyncs = await edge.metric("candlecast_backplane_resyncs_total")
        assert 1 <= resyncs <= 2 + elapsed / RESYNC_EVERY, (resyncs, elapsed)
        assert seen.count({"op": "resync"}) == resyncs
        await serving(edge)


async def test_healthz_fails_once_the_pump_has_died(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pump really dies (the hub raises on one symbol): clients are closed and /healthz
    says 503, so the container's health check sees it."""
    publish = Hub.publish

    def dying(self: Hub, c: Candle, received: float) -> Any:
        if c.s == "DIE":
            raise RuntimeError("the hub failed")
        return publish(self, c, received)

    monkeypatch.setattr(Hub, "publish", dying)
    async with edge_over_redis() as (edge, writer), client(edge.ws_url("symbols=AAA")) as ws:
        await synced(ws)
        async with httpx.AsyncClient(base_url=edge.url) as http:
            assert (await http.get("/healthz")).status_code == 200
            await writer.write("DIE", 2)
            with anyio.fail_after(DEADLINE):
                await ws.wait_closed()
            r = await http.get("/healthz")
            assert r.status_code == 503 and r.json()["status"] == "dead", r.text


async def test_a_foreign_entry_on_top_wedges_the_ingest_which_says_so_and_continues_above_it() -> None:
    """``XADD <epoch>-999999999999`` by someone else: the ingest's next write is refused; it logs
    it, counts it, re-stamps above the foreign id, and candles flow again (the edge re-snapshots once)."""
    with backplane_log() as lines:
        async with redis_server() as redis, fake_broker() as broker:
            async with scale(broker, redis.url, edges=1) as (ingest, edge), client(edge.ws_url("symbols=AAA")) as ws:
                r = redis.client()
                try:
                    await synced(ws)
                    await broker.send(seed("AAA", 1))
                    await candle(ws, 1)
                    epoch = int(await r.hget(KEYS.meta, "epoch") or 0)
                    await r.xadd(KEYS.stream, {"c": orjson.dumps(GOOD), "p": 1}, id=f"{epoch}-999999999999")
                    await broker.send(seed("AAA", 2))
                    await lines.wait_for("every write is refused")
                    await candle(ws, 2)
                    await broker.send(seed("AAA", 3))
                    assert [m["ot"] for m in await candle(ws, 3)] == [3]
                    top = await r.hmget(KEYS.meta, ["epoch", "seq"])
                    assert int(top[0] or 0) == epoch and int(top[1] or 0) > 999999999999
                    assert await ingest.metric("candlecast_ingest_stream_conflicts_total") == 1
                    assert await ingest.metric("candlecast_ingest_wedged") == 0
                    async with httpx.AsyncClient() as http:
                        assert (await http.get(ingest.url + "/readyz")).status_code == 200
                    assert await edge.metric("candlecast_backplane_resyncs_total") == 1
                finally:
                    await r.aclose()


async def test_an_ingest_wedged_by_the_highest_id_is_not_ready_and_recovers_when_the_stream_goes() -> None:
    """No id fits above ``2**64-1 - 2**64-1``: the ingest stays not ready (metric, log, /readyz),
    retrying at --reconnect-max, and writes again once the stream key is deleted."""
    top = 2**64 - 1
    with backplane_log() as lines:
        async with redis_server() as redis, fake_broker() as broker:
            async with scale(broker, redis.url, edges=1) as (ingest, edge), client(edge.ws_url("symbols=AAA")) as ws:
                r = redis.client()
                try:
                    await synced(ws)
                    await r.xadd(KEYS.stream, {"c": orjson.dumps(GOOD), "p": 1}, id=f"{top}-{top}")
                    await broker.send(seed("AAA", 1))
                    await lines.wait_for("no id above it fits")
                    async with httpx.AsyncClient() as http:
                        ready = await http.get(ingest.url + "/readyz")
                    assert ready.status_code == 503 and "not written by this ingest" in ready.json()["reason"]
                    assert await ingest.metric("candlecast_ingest_wedged") == 1
                    assert await ingest.metric("candlecast_ingest_stream_conflicts_total") >= 1
                    await r.delete(KEYS.stream)
                    await candle(ws, 1)
                    await broker.send(seed("AAA", 2))
                    await candle(ws, 2)
                    async with httpx.AsyncClient() as http:
                        assert (await http.get(ingest.url + "/readyz")).status_code == 200
                    assert await ingest.metric("candlecast_ingest_wedged") == 0
                    assert lines.count("writing again") == 1
                finally:
                    await r.aclose()
