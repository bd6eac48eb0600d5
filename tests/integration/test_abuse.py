"""What an attacker with a TCP connection can make a real candlecast hold: the outgoing buffer
of a client that never reads (a ping flood, direct and through the real nginx, with and without
a token), the request head, and the snapshots a client asks for. RSS is measured around each
attack; the server under attack runs in this process (uvicorn on a loopback port)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest

from candlecast.settings import Settings
from tests.conftest import DEADLINE
from tests.integration.harness import Candlecast, candlecast, client, fake_broker, recv_json, synced, ws_settings
from tests.integration.raw import PING, masked_frame, on_read_pause, stalled_stream, upgrade
from tests.integration.test_deploy import nginx
from tests.integration.test_security import captured

MIB = 1024 * 1024


def rss() -> int:
    """This process's resident set, bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def paused_protocols(cc: Candlecast) -> list[Any]:
    """The server's WebSocket connections whose outgoing buffer is above its high-water mark."""
    return [p for p in cc.server.server_state.connections if getattr(p, "write_paused", False)]


@asynccontextmanager
async def read_paused(cc: Candlecast) -> AsyncIterator[anyio.Event]:
    """:func:`~tests.integration.raw.on_read_pause` on the server's guard, for the block."""
    guard = cc.service.guard
    try:
        yield on_read_pause(guard)
    finally:
        del guard.backpressured


async def flood(cc: Candlecast, port: int, *, answer: bytes = b'"id":"back"', total: int = 48 * MIB) -> None:
    """Ping flood from a client that never reads: the server must stop reading it once its
    outgoing buffer is full, so the flood stalls long before ``total`` bytes, with the server's
    buffer and RSS bounded; once the client reads again, the server answers it again."""
    async with read_paused(cc) as paused, await stalled_stream(port) as attacker:
        await upgrade(attacker)
        before = rss()
        sent = 0
        chunk = PING * 512  # 67 KB of pings

        async def send_all() -> None:
            nonlocal sent
            while sent < total:
                await attacker.send(chunk)
                sent += len(chunk)

        async with anyio.create_task_group() as tg:
            tg.start_soon(send_all)
            with anyio.fail_after(DEADLINE):
                await paused.wait()
            (proto,) = paused_protocols(cc)
            buffered = proto.transport.get_write_buffer_size()
            assert not proto.transport.is_reading()
            assert buffered < 1 * MIB, buffered  # the high-water mark plus one read's pongs
            assert rss() - before < 16 * MIB, (rss() - before) / MIB
            assert sent < total, "the server read the whole flood"
            tg.cancel_scope.cancel()  # the attacker gives up sending
        # the client reads again: the server resumes, and answers a text ping (with a pong, or
        # inside the auth window with the error that says to authenticate)
        await attacker.send(masked_frame(0x1, b'{"op":"ping","id":"back"}'))
        got = b""
        with anyio.fail_after(DEADLINE):
            while answer not in got:
                got = got[-64:] + await attacker.receive()
        assert sent < total


@pytest.mark.parametrize("auth", [False, True], ids=["open", "auth-window"])
async def test_a_ping_flood_from_a_client_that_never_reads_stalls_the_client_not_the_server(auth: bool) -> None:
    """With --tokens set, the flood comes inside the auth window, before any token."""
    settings = Settings(rate=20, symbols=("AAA",), tokens=("s3cret-token",) if auth else (), auth_timeout=60)
    async with candlecast(settings, sndbuf=16384) as cc:
        async with client(cc.ws_url("symbols=AAA&token=s3cret-token")) as healthy:
            assert (await recv_json(healthy))["s"] == "AAA"
            await flood(cc, cc.port, answer=b'"auth_required"' if auth else b'"id":"back"')
            assert (await recv_json(healthy))["s"] == "AAA"  # served all along
        assert await cc.metric("candlecast_read_pauses_total") >= 1


async def test_a_ping_flood_through_nginx_stalls_at_the_backend(tmp_path: Path) -> None:
    async with candlecast(Settings(rate=20, symbols=("AAA",)), sndbuf=16384) as cc, nginx(cc.port, tmp_path) as addr:
        await flood(cc, int(addr.rsplit(":", 1)[1]))


# -- the request head --------------------------------------------------------------------------


async def head_reply(port: int, head: bytes, *, then: bytes = b"", repeat: int = 0) -> bytes:
    """Send ``head`` (then ``then`` up to ``repeat`` times, unless the server answers first)
    and return what the server answers, read until it closes."""
    async with await anyio.connect_tcp("127.0.0.1", port) as conn:
        got = b""

        async def send() -> None:
            await conn.send(head)
            for _ in range(repeat):
                await conn.send(then)

        async with anyio.create_task_group() as tg:
            tg.start_soon(send)
            with anyio.fail_after(DEADLINE):
                try:
                    while True:
                        got += await conn.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
                    pass
            tg.cancel_scope.cancel()
        return got


async def test_an_endless_request_head_is_refused_with_431_and_costs_no_memory() -> None:
    """40 MB of ``a: b`` header lines: refused once past --max-header-bytes, RSS flat; so are a
    single endless header line and too many header lines, on any path, WebSocket or not."""
    settings = Settings(rate=5, symbols=("AAA",), header_timeout=60, max_header_bytes=32768, max_headers=100)
    async with candlecast(settings) as cc:
        with captured("candlecast", "uvicorn.error") as records:
            before = rss()
            lines = b"a: b\r\n" * 10_000  # 60 KB a write, 40 MB at most
            got = await head_reply(cc.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", then=lines, repeat=700)
            assert got.startswith(b"HTTP/1.1 431 "), got[:80]
            assert rss() - before < 16 * MIB, (rss() - before) / MIB
            one_line = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nX-Long: "
            got = await head_reply(cc.port, one_line, then=b"x" * 65536, repeat=640)
            assert got.startswith(b"HTTP/1.1 431 "), got[:80]
            many = b"GET /api/symbols HTTP/1.1\r\nHost: x\r\n" + b"".join(b"h%d: v\r\n" % i for i in range(101))
            got = await head_reply(cc.port, many + b"\r\n")
            assert got.startswith(b"HTTP/1.1 431 "), got[:80]
            long_url = b"GET /healthz?" + b"q" * 40_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
            assert (await head_reply(cc.port, long_url)).startswith(b"HTTP/1.1 431 ")
            assert rss() - before < 16 * MIB, (rss() - before) / MIB
        # a head within the caps is served, on a kept-alive connection too
        fine = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"h%d: v\r\n" % i for i in range(98)) + b"\r\n"
        async with httpx.AsyncClient(base_url=cc.url) as http:
            assert (await http.get("/healthz", headers={"x-big": "v" * 20_000})).status_code == 200
            assert (await http.get("/healthz")).status_code == 200
        async with await anyio.connect_tcp("127.0.0.1", cc.port) as conn:
            for _ in range(3):
                await conn.send(fine)
                reply = b""
                with anyio.fail_after(DEADLINE):
                    while not reply.endswith(b'{"status":"ok"}'):
                        reply += await conn.receive()
                assert reply.startswith(b"HTTP/1.1 200"), reply[:80]
        assert await cc.metric('candlecast_protocol_violations_total{kind="oversize_head"}') == 4
    loud = [r.getMessage() for r in records if r.levelname == "WARNING"]
    assert 1 <= len(loud) <= 2 and all("oversize_head" in m and len(m) < 200 for m in loud), loud


# -- snapshots -----------------------------------------------------------------------------------

STREAMS = [f"{s}@{i}" if i != "1m" else s for s in ("AAA", "BBB") for i in ("1m", "5m", "15m", "1h", "4h", "1d")]
_ALL = orjson.dumps(STREAMS)
#: 20 unsubscribe/subscribe pairs of every stream: within the control burst (40 messages).
CYCLES = (
    masked_frame(0x1, b'{"op":"unsubscribe","symbols":%s}' % _ALL)
    + masked_frame(0x1, b'{"op":"subscribe","symbols":%s}' % _ALL)
) * 20
BARS = 3000  # 1m bars per symbol: with their 5m ... 1d bars, ~1270 bars per symbol at history=500


@asynccontextmanager
async def seeded(**overrides: Any) -> AsyncIterator[Candlecast]:
    """A candlecast whose hub holds BARS minutes of two symbols (and their higher intervals),
    fed by a real fake broker; enters once every bar is in the hub."""
    async with fake_broker() as broker:
        settings = ws_settings(broker, history=500, **overrides)
        async with candlecast(settings, sndbuf=16384) as cc:
            await broker.wait_connections(1)
            async with client(cc.ws_url("symbols=BBB")) as watcher:
                await synced(watcher)
                minute = 60_000
                await broker.send(*(bar(s, i * minute) for i in range(BARS) for s in ("AAA", "BBB")))
                while (await recv_json(watcher))["ot"] != (BARS - 1) * minute:
                    pass
            yield cc


def bar(symbol: str, ot: int) -> dict[str, Any]:
    return {"symbol": symbol, "time": ot, "candles": [ot, 100.0, 100.5, 101.0, 99.0]}


def snapshot_size(cc: Candlecast) -> tuple[int, int]:
    """Bars and bytes of one snapshot of every stream at history=500."""
    hub = cc.service.runtime.hub
    bars = [u for stream in STREAMS for u in hub.bars(stream, 500)]
    return len(bars), sum(len(u.text) for u in bars)


@asynccontextmanager
async def counting_subscribes(cc: Candlecast, n: int) -> AsyncIterator[anyio.Event]:
    """An event set once the hub has been asked ``n`` times to add symbols (granted or not)."""
    hub = cc.service.runtime.hub
    done = anyio.Event()
    add = hub.add_symbols
    calls = 0

    def counted(*args: Any, **kwargs: Any) -> bool:
        nonlocal calls
        calls += 1
        if calls >= n:
            done.set()
        return add(*args, **kwargs)

    hub.add_symbols = counted  # type: ignore[method-assign]
    try:
        yield done
    finally:
        del hub.add_symbols


@pytest.mark.parametrize("rate", [2000, 1_000_000], ids=["bars-per-second", "bytes-queued"])
async def test_a_client_that_does_not_read_cannot_make_the_server_queue_snapshot_after_snapshot(rate: int) -> None:
    """Ten clients that never read cycle unsubscribe/subscribe of every stream with the whole
    history (20 cycles in one write, all read at once): each has at most --snapshot-bytes of
    snapshots queued (or one snapshot, when larger) besides the batch its writer holds; the
    rest is refused and counted."""
    budget = 256 * 1024
    async with seeded(snapshot_bytes=budget, snapshot_rate=rate) as cc:
        hub = cc.service.runtime.hub
        _, size = snapshot_size(cc)
        assert size > budget // 2
        before = rss()
        async with counting_subscribes(cc, 10 * 20) as asked, AsyncExitStack() as stack:
            for _ in range(10):
                attacker = await stack.enter_async_context(await stalled_stream(cc.port))
                await upgrade(attacker, "/ws?history=500&symbols=NONE")
                await attacker.send(CYCLES)
            with anyio.fail_after(DEADLINE):
                await asked.wait()
            queued = [sub.snapshot_bytes for sub in hub._subscribers]
            assert len(queued) == 10 and max(queued) <= max(budget, size), queued
            assert rss() - before < 24 * MIB, (rss() - before) / MIB
        assert await cc.metric("candlecast_snapshots_refused_total") >= 10 * 15


async def test_a_client_that_reads_gets_snapshot_bars_at_the_budgeted_rate() -> None:
    """A reading client's resubscribes are served within --snapshot-rate bars a second (a
    bucket of two seconds' worth, and one snapshot past it when full); past it each gets an
    error frame, and the client stays."""
    rate = 2000
    async with seeded(snapshot_rate=rate) as cc:
        per_subscribe, _ = snapshot_size(cc)
        async with client(cc.ws_url("symbols=NONE&history=500"), max_size=None) as ws:
            bars = replies = refused = 0
            opened = time.monotonic()
            for i in range(20):
                await ws.send(f'{{"op":"unsubscribe","symbols":{_ALL.decode()}}}')
                await ws.send(f'{{"op":"subscribe","symbols":{_ALL.decode()},"id":{i}}}')
            while replies < 20:
                msg = await recv_json(ws)
                if msg.get("op") == "subscribed" or msg.get("error") == "snapshot_limit":
                    replies += 1
                    refused += msg.get("error") == "snapshot_limit"
                elif "s" in msg:
                    bars += 1
            elapsed = time.monotonic() - opened
            assert refused >= 15, refused
            assert bars <= 2 * rate + elapsed * rate + per_subscribe, (bars, elapsed)
            await ws.send('{"op":"ping","id":"still"}')
            while (await recv_json(ws)).get("id") != "still":
                pass
