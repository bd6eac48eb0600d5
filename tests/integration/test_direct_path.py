"""The direct path end to end: caught-up clients get their frames written during the pump step;
a client that falls behind goes through its queue and comes back, in order; without the
extension everything still goes through ``websocket.send``."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.integration.harness import candlecast, client, fake_broker, recv_json, seed, synced, ws_settings
from tests.support import STALLED_RCVBUF, stalled_socket

LONG = "S" * 32


async def test_a_client_that_falls_behind_and_catches_up_gets_everything_in_order() -> None:
    """Direct first; a burst the client does not read pauses its transport, so the rest is
    queued (no merge: every candle is a new bar; no 1013: the bound is large); it reads it all,
    in order, and the next candles go direct again."""
    n = 3000
    async with fake_broker() as broker:
        s = ws_settings(broker, client_queue=100_000)
        async with candlecast(s, sndbuf=STALLED_RCVBUF) as cc:
            await broker.wait_connections(1)
            sock = stalled_socket()
            sock.setblocking(True)
            sock.connect(("127.0.0.1", cc.port))
            sock.setblocking(False)
            async with client(cc.ws_url(), sock=sock, max_queue=1) as ws:
                await synced(ws)
                await broker.send(seed(LONG, 0))
                assert (await recv_json(ws))["ot"] == 0
                direct_before = await cc.metric("candlecast_direct_frames_total")
                assert direct_before >= 1
                await broker.send(*(seed(LONG, i) for i in range(1, n)))
                got = [(await recv_json(ws))["ot"] for _ in range(1, n)]
                assert got == list(range(1, n))
                assert await cc.metric("candlecast_merged_total") == 0
                queued = await cc.metric("candlecast_frames_out_total") - await cc.metric(
                    "candlecast_direct_frames_total"
                )
                assert queued > 0, "the burst never went through the queue"
                await synced(ws)  # the writer has drained its queue and parked
                before = await cc.metric("candlecast_direct_frames_total")
                await broker.send(*(seed(LONG, i) for i in range(n, n + 10)))
                assert [(await recv_json(ws))["ot"] for _ in range(10)] == list(range(n, n + 10))
                assert await cc.metric("candlecast_direct_frames_total") == before + 10


@pytest.mark.parametrize("override", [{"ws_direct": False}, {"ws_compression": True}])
async def test_without_the_direct_path_everything_goes_through_send(override: dict[str, Any]) -> None:
    async with fake_broker() as broker, candlecast(ws_settings(broker, **override)) as cc:
        await broker.wait_connections(1)
        async with client(cc.ws_url()) as a, client(cc.ws_url("batch=1")) as b:
            await synced(a)
            await synced(b)
            await broker.send(*(seed("AAA", i) for i in range(200)))
            assert [(await recv_json(a))["ot"] for _ in range(200)] == list(range(200))
            seen: list[int] = []
            while len(seen) < 200:
                msg = orjson.loads(await b.recv())
                seen.extend(m["ot"] for m in (msg if isinstance(msg, list) else [msg]))
            assert seen == list(range(200))
        assert await cc.metric("candlecast_direct_frames_total") == 0
