"""Unhappy paths through a real candlecast: slow clients, broker drops, bad upstream data,
and shutdown with clients connected."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import DEADLINE
from tests.integration.harness import (
    candlecast,
    client,
    fake_broker,
    recv_json,
    seed,
    synced,
    ws_settings,
)
from tests.support import STALLED_RCVBUF, free_port, stalled_socket

LONG = "S" * 32  # a long symbol makes each frame larger, so socket buffers fill sooner


@asynccontextmanager
async def stalled_client(url: str) -> Any:
    """A client that stops reading: a tiny receive buffer, and websockets' flow control pauses
    reading as soon as one message is queued."""
    sock = stalled_socket()
    sock.setblocking(True)
    sock.connect(("127.0.0.1", int(url.split(":")[2].split("/")[0])))
    sock.setblocking(False)
    async with connect(url, sock=sock, compression=None, proxy=None, max_queue=1) as ws:
        yield ws


@asynccontextmanager
async def stalled_and_healthy(cc: Any) -> AsyncIterator[tuple[ClientConnection, ClientConnection]]:
    """A stalled client and a healthy one, both subscribed to everything."""
    async with stalled_client(cc.ws_url()) as slow, client(cc.ws_url()) as healthy:
        await synced(slow)
        await synced(healthy)
        yield slow, healthy


async def test_slow_client_is_closed_with_1013_and_does_not_delay_others() -> None:
    """The feed runs in chunks that the healthy client reads in full before the next one
    (it keeps up by construction); the stalled client reads nothing until the end."""
    size = 200
    async with fake_broker() as broker, candlecast(ws_settings(broker, client_queue=256), sndbuf=STALLED_RCVBUF) as cc:
        await broker.wait_connections(1)
        async with stalled_and_healthy(cc) as (slow, healthy):
            chunks = 0
            # until the hub gives up on the stalled client (socket buffers differ by machine),
            # then a few chunks more: the healthy client reads every chunk in full each time
            while chunks % 50 or await cc.metric("candlecast_slow_disconnects_total") == 0:
                assert chunks < 2000, "the stalled client was never closed"
                base = chunks * size
                await broker.send(*(seed(LONG, base + i) for i in range(size)))
                for i in range(size):
                    assert (await recv_json(healthy))["ot"] == base + i
                chunks += 1
            # the stalled client, read at last: a prefix in order, then 1013
            seen = -1
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    msg = await recv_json(slow)
                    assert msg["ot"] == seen + 1
                    seen = msg["ot"]
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1013
            assert "slow" in closed.value.rcvd.reason
            assert seen < chunks * size - 1
        assert await cc.metric("candlecast_slow_disconnects_total") == 1
        # bounded: nobody holds more than the per-client bound
        assert await cc.metric("candlecast_client_queue_items") <= 256


async def test_same_bar_updates_merge_while_behind() -> None:
    """Once a stalled client is behind (half its bound queued), 5000 updates of one bar
    collapse into one queued entry that carries the bar's newest state; the healthy client
    gets all 5000."""
    async with fake_broker() as broker, candlecast(ws_settings(broker, client_queue=64), sndbuf=STALLED_RCVBUF) as cc:
        await broker.wait_connections(1)
        async with stalled_and_healthy(cc) as (slow, healthy):
            fill = 0
            # each step is a chunk the healthy client has read; small enough steps that the
            # stalled client's queue stops between the merge point (32) and its bound (64)
            while await cc.metric("candlecast_client_queue_items") < 36:
                assert fill < 100_000, "the stalled client never fell behind"
                await broker.send(*(seed(LONG, i) for i in range(fill, fill + 10)))
                for _ in range(10):
                    await recv_json(healthy)
                fill += 10
            for base in range(0, 5000, 25):
                await broker.send(
                    *(
                        {"symbol": "AAA", "time": 10_000 + j, "candles": [10_000, 1.0, 1.0 + j / 1e4, 2.0, 0.5]}
                        for j in range(base, base + 25)
                    )
                )
                for j in range(base, base + 25):
                    assert (await recv_json(healthy))["t"] == 10_000 + j
            assert await cc.metric("candlecast_merged_total") == 4999
            assert await cc.metric("candlecast_slow_disconnects_total") == 0
            got = [await recv_json(slow) for _ in range(fill + 1)]
            assert [m["ot"] for m in got[:fill]] == list(range(fill))
            assert got[fill]["s"] == "AAA"
            assert got[fill]["t"] == 14_999 and got[fill]["c"] == 1.4999  # the bar's newest state


async def test_broker_drop_reconnects_and_data_flows_again() -> None:
    subscribe = '{"method":"SUBSCRIBE","id":1}'
    async with fake_broker() as broker, candlecast(ws_settings(broker, subscribe=subscribe)) as cc:
        first = await broker.wait_connections(1)
        async with client(cc.ws_url()) as ws:
            await synced(ws)
            await broker.send(seed("AAA", 1))
            assert (await recv_json(ws))["ot"] == 1
            await first.close(1011, "broker going away")
            await broker.wait_connections(2)
            await broker.send(seed("AAA", 2))
            assert (await recv_json(ws))["ot"] == 2
        assert broker.received.count(subscribe) == 2  # sent on every (re)connect
        assert await cc.metric("candlecast_upstream_reconnects_total") >= 1
        assert await cc.metric("candlecast_upstream_connected") == 1


async def test_broker_refusing_connections_is_retried_with_backoff_then_it_connects() -> None:
    """A broker that drops every handshake: candlecast retries (each attempt is seen by the
    broker's port), /readyz says why; once a real broker listens there, it connects and data
    flows."""
    from anyio.abc import SocketAttribute, SocketStream

    attempts = 0
    retried = anyio.Event()

    async def refuse(stream: SocketStream) -> None:
        nonlocal attempts
        attempts += 1
        if attempts >= 3:
            retried.set()
        await stream.aclose()  # no handshake: the source's connect fails

    from candlecast.settings import Settings

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    settings = Settings(source="ws", upstream=f"ws://127.0.0.1:{port}/stream", reconnect_min=0.02, reconnect_max=0.05)
    async with candlecast(settings) as cc, httpx.AsyncClient(base_url=cc.url) as http:
        async with listener, anyio.create_task_group() as refusing:
            refusing.start_soon(listener.serve, refuse)
            with anyio.fail_after(DEADLINE):
                await retried.wait()
            ready = await http.get("/readyz")
            assert ready.status_code == 503 and "not connected" in ready.json()["reason"]
            assert (await http.get("/healthz")).status_code == 200
            assert await cc.metric("candlecast_upstream_reconnects_total") >= 2
            assert await cc.metric("candlecast_upstream_connects_total") == 0
            refusing.cancel_scope.cancel()
        async with fake_broker(port) as broker, client(cc.ws_url()) as ws:
            await broker.wait_connections(1)  # the next retry connects
            await synced(ws)
            await broker.send(seed("AAA", 1))
            assert (await recv_json(ws))["ot"] == 1
            ready = await http.get("/readyz")
            assert ready.status_code == 200 and ready.json()["status"] == "ready"
            assert await cc.metric("candlecast_upstream_connects_total") == 1


async def test_malformed_upstream_messages_are_counted_and_skipped() -> None:
    bad: list[Any] = [
        "not json at all",
        '{"symbol": "AAA", "time": 1, "candles": [1, "100", 101, 102, 99]}',  # string price
        '{"symbol": "AAA", "time": 1, "candles": [1, 100, 101]}',  # wrong shape
        '{"symbol": "AAA", "time": 1, "candles": [1, 100, 101, 90, 99]}',  # high below close
        '{"symbol": "AAA", "time": 1, "candles": [1, 1e999, 101, 102, 99]}',  # inf: orjson refuses it as JSON
        '{"symbol": "", "time": 1, "candles": [1, 100, 101, 102, 99]}',  # empty symbol
        "[" + "1," * 40_000 + "1]",  # oversize
    ]
    async with fake_broker() as broker, candlecast(ws_settings(broker)) as cc:
        await broker.wait_connections(1)
        async with client(cc.ws_url()) as ws:
            await synced(ws)
            await broker.send(seed("AAA", 1), *bad, seed("AAA", 2), '{"heartbeat": true}', seed("AAA", 3))
            assert [(await recv_json(ws))["ot"] for _ in range(3)] == [1, 2, 3]
        for reason, count in {"json": 2, "type": 1, "shape": 1, "ohlc": 1, "symbol": 1, "oversize": 1}.items():
            assert await cc.metric(f'candlecast_malformed_total{{reason="{reason}"}}') == count, reason
        assert await cc.metric("candlecast_upstream_connects_total") == 1  # never dropped


async def test_shutdown_closes_clients_with_1001() -> None:
    async with fake_broker() as broker:
        async with candlecast(ws_settings(broker)) as cc:
            await broker.wait_connections(1)
            async with client(cc.ws_url()) as a, client(cc.ws_url("batch=1")) as b:
                await synced(a)
                await synced(b)
                cc.server.request_exit()
                for ws in (a, b):
                    with pytest.raises(ConnectionClosed) as closed:
                        await recv_json(ws)
                    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


async def test_sigterm_exits_0_within_5s_with_clients_and_a_silent_broker() -> None:
    from websockets.asyncio.server import serve

    release = anyio.Event()

    async def silent(conn: Any) -> None:
        await conn.send('{"symbol": "AAA", "time": 1, "candles": [1, 1, 1, 1, 1]}')
        conn.transport.pause_reading()  # never answers pings or a close frame again
        await release.wait()
        conn.transport.abort()

    async with serve(silent, "127.0.0.1", 0, compression=None) as broker:
        bport = next(iter(broker.sockets)).getsockname()[1]
        port = free_port()
        env = {**os.environ, "CANDLECAST_LOG_LEVEL": "info"}
        cmd = [
            *(sys.executable, "-m", "candlecast", "--port", str(port)),
            *("--source", "ws", "--upstream", f"ws://127.0.0.1:{bport}/"),
        ]
        async with await anyio.open_process(cmd, env=env, stderr=subprocess.STDOUT) as proc:
            assert proc.stdout is not None
            log = BufferedByteReceiveStream(proc.stdout)
            try:
                with anyio.fail_after(DEADLINE):  # the child's log says when it listens
                    while b"Uvicorn running on" not in await log.receive_until(b"\n", 65536):
                        pass
                url = f"ws://127.0.0.1:{port}/ws"
                ws = await connect(url, compression=None, proxy=None)
                ws2 = await connect(url, compression=None, proxy=None)
                assert (await recv_json(ws))["ot"] == 1
                await synced(ws2)
                start = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                for c in (ws, ws2):
                    with pytest.raises(ConnectionClosed) as closed:
                        await recv_json(c)
                    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
                with anyio.fail_after(5.0):
                    assert await proc.wait() == 0
                assert time.monotonic() - start < 5.0
                rest = b""
                with contextlib.suppress(anyio.EndOfStream, anyio.IncompleteRead):
                    while True:
                        rest += await log.receive_until(b"\n", 65536) + b"\n"
                assert b"Traceback" not in rest, rest.decode()
            finally:
                release.set()


async def test_websocket_source_stops_within_1s_even_if_the_broker_is_silent() -> None:
    """The producer thread blocked in recv() on a broker that says nothing ends at once."""
    from candlecast.formats.registry import BUILTIN as FORMATS
    from candlecast.model.candle import Candle
    from candlecast.upstream.bridge import Bridge, ProducerThread
    from candlecast.upstream.source import Normalizer
    from candlecast.upstream.websocket import WebSocketSource

    async with fake_broker() as broker:
        bridge: Bridge[Candle] = Bridge(maxsize=8)
        source = WebSocketSource(broker.url, Normalizer(FORMATS["seed"]), reconnect_min=0.02, reconnect_max=0.05)
        thread = ProducerThread(source, bridge.put, bridge)
        thread.start()
        await broker.wait_connections(1)
        start = time.monotonic()
        assert await thread.stop(grace=1.0) is True
        assert time.monotonic() - start < 1.0
        assert not source.upstream.connected


async def test_permessage_deflate_is_off_by_default_and_on_by_the_flag() -> None:
    async with fake_broker() as broker:
        for enabled in (False, True):
            async with candlecast(ws_settings(broker, ws_compression=enabled)) as cc:
                async with connect(cc.ws_url(), proxy=None) as ws:  # the client offers deflate
                    await synced(ws)
                    agreed = ws.response.headers.get("Sec-WebSocket-Extensions") if ws.response else None
                    assert (agreed is not None and "permessage-deflate" in agreed) is enabled
