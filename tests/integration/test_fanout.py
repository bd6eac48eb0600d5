"""Fan-out through a real candlecast: fake broker -> producer thread -> hub -> many clients."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.integration.harness import (
    Candlecast,
    candlecast,
    client,
    fake_broker,
    recv_json,
    seed,
    synced,
    ws_settings,
)


async def read_n(ws: ClientConnection, n: int) -> list[Any]:
    return [await recv_json(ws) for _ in range(n)]


async def test_fanout_every_client_gets_every_message_in_order() -> None:
    """50 clients each receive all 300 candles, in order, with no duplicate."""
    n_clients, n_msgs = 50, 300
    async with fake_broker() as broker, candlecast(ws_settings(broker)) as cc, AsyncExitStack() as stack:
        await broker.wait_connections(1)
        clients = [await stack.enter_async_context(client(cc.ws_url())) for _ in range(n_clients)]
        for ws in clients:
            assert await synced(ws) == []  # nothing published yet: an empty snapshot
        await broker.send(*(seed("AAA" if i % 2 else "BBB", i) for i in range(n_msgs)))
        results: list[list[Any]] = [[] for _ in clients]

        async def read(i: int) -> None:
            results[i] = await read_n(clients[i], n_msgs)

        async with anyio.create_task_group() as tg:
            for i in range(n_clients):
                tg.start_soon(read, i)
        for got in results:
            assert [m["ot"] for m in got] == list(range(n_msgs))
            assert got[1] == {"s": "AAA", "t": 1, "ot": 1, "o": 100.0, "h": 101.0, "l": 99.0, "c": 100.5}


async def test_symbol_filter_delivers_only_the_chosen_symbols() -> None:
    async with fake_broker() as broker, candlecast(ws_settings(broker)) as cc:
        await broker.wait_connections(1)
        async with client(cc.ws_url("symbols=AAA,CCC")) as ws:
            await synced(ws)
            await broker.send(*(seed(("AAA", "BBB", "CCC")[i % 3], i) for i in range(30)))
            got = await read_n(ws, 20)
            assert {m["s"] for m in got} == {"AAA", "CCC"}
            assert [m["ot"] for m in got] == [i for i in range(30) if i % 3 != 1]


async def test_snapshot_and_history_then_live_with_no_gap() -> None:
    """A late client gets the last N bars per symbol, then live updates with nothing between."""
    async with fake_broker() as broker, candlecast(ws_settings(broker, history=50)) as cc:
        await broker.wait_connections(1)
        async with client(cc.ws_url()) as early:
            await synced(early)
            await broker.send(*(seed("AAA", i) for i in range(20)))
            await read_n(early, 20)  # all 20 are in the hub now
            async with client(cc.ws_url("symbols=AAA&history=5")) as late, client(cc.ws_url()) as latest:
                assert [m["ot"] for m in await synced(late)] == [15, 16, 17, 18, 19]
                assert [m["ot"] for m in await synced(latest)] == [19]
                await broker.send(seed("AAA", 19, price=200.0), *(seed("AAA", i) for i in range(20, 25)))
                got = await read_n(late, 6)
                assert [m["ot"] for m in got] == [19, 20, 21, 22, 23, 24]
                assert got[0]["o"] == 200.0  # the live update of the current bar, then new bars


async def test_batch_mode_sends_pending_candles_as_arrays() -> None:
    async with fake_broker() as broker, candlecast(ws_settings(broker, history=50)) as cc:
        await broker.wait_connections(1)
        await broker.send(*(seed("AAA", i) for i in range(10)))
        async with client(cc.ws_url()) as probe:  # wait until the hub has all 10
            while (await recv_json(probe))["ot"] != 9:
                pass
        async with client(cc.ws_url("history=10&batch=1")) as ws:
            snapshot = await recv_json(ws)
            assert isinstance(snapshot, list)
            assert [m["ot"] for m in snapshot] == list(range(10))


async def test_subscribe_and_unsubscribe_at_run_time() -> None:
    async with fake_broker() as broker, candlecast(ws_settings(broker)) as cc:
        await broker.wait_connections(1)
        async with client(cc.ws_url("symbols=AAA")) as ws:
            await synced(ws)
            await broker.send(seed("AAA", 1), seed("BBB", 2))
            assert (await recv_json(ws))["ot"] == 1
            await ws.send('{"op":"subscribe","symbols":["BBB"],"id":1}')
            assert await recv_json(ws) == {"op": "subscribed", "symbols": ["AAA", "BBB"], "id": 1}
            assert (await recv_json(ws))["ot"] == 2  # BBB's snapshot: its latest bar
            await ws.send('{"op":"unsubscribe","symbols":["AAA"]}')
            assert await recv_json(ws) == {"op": "unsubscribed", "symbols": ["BBB"]}
            await broker.send(seed("AAA", 3), seed("BBB", 4))
            assert (await recv_json(ws))["ot"] == 4


async def test_bad_client_messages_get_error_frames_then_1008() -> None:
    async with fake_broker() as broker, candlecast(ws_settings(broker)) as cc:
        await broker.wait_connections(1)
        async with client(cc.ws_url()) as ws:
            cases = {
                "not json": "bad_json",
                "[1,2]": "bad_message",
                '{"op":"dance"}': "unknown_op",
                '{"op":"subscribe","symbols":"AAA"}': "bad_message",
                '{"op":"subscribe","symbols":[1]}': "bad_symbol",
                '{"op":"subscribe","symbols":' + str([f"S{i}" for i in range(300)]).replace("'", '"') + "}": (
                    "too_many_symbols"
                ),
                '{"op":"ping","pad":"' + "x" * 5000 + '"}': "too_large",
            }
            for text, code in cases.items():
                await ws.send(text)
                reply = await recv_json(ws)
                assert reply["op"] == "error" and reply["error"] == code, text
                assert reply["detail"]
            await ws.send('{"op":"ping"}')  # still open and serving
            assert (await recv_json(ws))["op"] == "pong"
            with pytest.raises(ConnectionClosed) as closed:
                for _ in range(20):
                    await ws.send("nope")
                    await recv_json(ws)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_bad_query_gets_an_error_frame_and_1008() -> None:
    async with fake_broker() as broker, candlecast(ws_settings(broker, history=10)) as cc:
        async with client(cc.ws_url("history=-1")) as ws:
            reply = await recv_json(ws)
            assert reply["op"] == "error" and reply["error"] == "bad_query"
            with pytest.raises(ConnectionClosed) as closed:
                await recv_json(ws)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_max_clients_closes_the_extra_client_with_1013() -> None:
    async with fake_broker() as broker, candlecast(ws_settings(broker, max_clients=2)) as cc:
        async with client(cc.ws_url()) as a, client(cc.ws_url()) as b, client(cc.ws_url()) as c:
            await synced(a)
            await synced(b)
            with pytest.raises(ConnectionClosed) as closed:
                await recv_json(c)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013


async def test_token_and_origin_are_checked_before_accepting() -> None:
    async with fake_broker() as broker:
        settings = ws_settings(broker, tokens=("s3cret",), origins=("http://good.example",))
        async with candlecast(settings) as cc:
            await _auth_checks(cc)


async def _auth_checks(cc: Candlecast) -> None:
    # no token in the request: accepted, but only an auth message may come first
    async with client(cc.ws_url(), origin="http://good.example") as ws:
        await ws.send('{"op":"ping"}')
        assert (await recv_json(ws))["error"] == "auth_required"
        with pytest.raises(ConnectionClosed) as closed:
            await recv_json(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    with pytest.raises(InvalidStatus) as refused:
        async with client(cc.ws_url("token=wrong"), origin="http://good.example"):
            pass
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        async with client(cc.ws_url("token=s3cret"), origin="http://evil.example"):
            pass
    async with client(cc.ws_url("token=s3cret"), origin="http://good.example") as ws:
        await synced(ws)
