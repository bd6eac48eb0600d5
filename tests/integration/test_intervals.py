"""Server-side intervals through a real candlecast: a fake broker sends 1 m bars, clients follow
5 m / 1 h bars (live and in their snapshot), mixed intervals share one socket."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from candlecast.model.candle import Candle
from candlecast.model.intervals import fold, parse_interval
from tests.integration.harness import candlecast, client, fake_broker, recv_json, synced, ws_settings

MIN = 60_000
T0 = 1_699_999_200_000  # epoch ms, a whole number of hours


def minute_bar(k: int, *, update: int = 0, symbol: str = "AAA") -> dict[str, Any]:
    """The ``update``-th state of 1 m bar ``k``, in the seed format ([ot, o, c, h, l])."""
    o = 100.0 + k
    c = o + 0.25 * (update + 1) * (1 if k % 2 else -1)
    h = max(o, c) + 0.5 + update / 10
    lo = min(o, c) - 0.5 - k / 100
    return {"symbol": symbol, "time": T0 + k * MIN + 1000 * (update + 1), "candles": [T0 + k * MIN, o, c, h, lo]}


def as_candle(msg: dict[str, Any]) -> Candle:
    ot, o, c, h, lo = msg["candles"]
    return Candle(msg["symbol"], msg["time"], ot, o, h, lo, c)


def expected_aggregate(sent: list[dict[str, Any]], name: str, upto: int) -> dict[str, Any]:
    """The bar of interval ``name`` that ``sent[upto]`` belongs to, recomputed from the latest
    state of each 1 m bar sent so far."""
    interval = parse_interval(name)
    latest: dict[int, Candle] = {}
    for msg in sent[: upto + 1]:
        latest[msg["candles"][0]] = as_candle(msg)
    bucket = interval.start(sent[upto]["candles"][0])
    members = [latest[k] for k in sorted(latest) if interval.start(k) == bucket]
    return fold(members, "AAA", bucket, name).to_dict()


async def test_client_on_5m_gets_the_aggregated_1m_bars_live_and_in_its_snapshot() -> None:
    sent = [minute_bar(k, update=u) for k in range(12) for u in range(2)]
    async with fake_broker() as broker, candlecast(ws_settings(broker, base_interval="1m")) as cc:
        await broker.wait_connections(1)
        async with client(cc.ws_url("symbols=AAA@5m")) as ws:
            await synced(ws)
            await broker.send(*sent)
            got = [await recv_json(ws) for _ in sent]
        assert got == [expected_aggregate(sent, "5m", n) for n in range(len(sent))]
        assert {m["i"] for m in got} == {"5m"} and [m["ot"] for m in got] == sorted(m["ot"] for m in got)
        # a late client's snapshot: the last 3 five-minute bars, final states, no duplicate
        async with client(cc.ws_url("symbols=AAA@5m&history=3")) as late:
            snapshot = await synced(late)
        finals = {m["ot"]: m for m in got}
        assert snapshot == [finals[ot] for ot in sorted(finals)][-3:]
        async with httpx.AsyncClient(base_url=cc.url) as http:
            api = (await http.get("/api/candles", params={"symbol": "AAA", "interval": "5m", "limit": 2})).json()
            assert api == snapshot[-2:]
            hourly = (await http.get("/api/candles", params={"symbol": "AAA", "interval": "1h"})).json()
            assert hourly == [expected_aggregate(sent, "1h", len(sent) - 1)]
            base = (await http.get("/api/candles", params={"symbol": "AAA", "interval": "1m", "limit": 1})).json()
            assert base == [orjson.loads(orjson.dumps(as_candle(sent[-1]).to_dict()))]
            bad = await http.get("/api/candles", params={"symbol": "AAA", "interval": "7m"})
            assert bad.status_code == 400 and bad.json()["error"] == "unknown_interval"
            listed = (await http.get("/api/symbols")).json()
            assert listed[0]["intervals"] == ["1m", "5m", "15m", "1h", "4h", "1d"]


async def test_mixed_intervals_share_one_socket_and_bare_symbols_see_todays_frames() -> None:
    sent = [minute_bar(k) for k in range(6)]
    async with fake_broker() as broker, candlecast(ws_settings(broker, base_interval="1m")) as cc:
        await broker.wait_connections(1)
        async with client(cc.ws_url("symbols=AAA,AAA@15m")) as ws, client(cc.ws_url("symbols=AAA")) as plain:
            await synced(ws)
            await synced(plain)
            await broker.send(*sent)
            mixed = [await recv_json(ws) for _ in range(2 * len(sent))]
            bare = [await recv_json(plain) for _ in sent]
        assert bare == [as_candle(m).to_dict() for m in sent]  # no "i": exactly today's frames
        assert [m for m in mixed if "i" not in m] == bare
        assert [m for m in mixed if m.get("i") == "15m"] == [expected_aggregate(sent, "15m", n) for n in range(6)]


async def test_subscribe_names_an_interval_and_an_unknown_one_gets_an_error_frame() -> None:
    async with fake_broker() as broker, candlecast(ws_settings(broker, base_interval="1m")) as cc:
        await broker.wait_connections(1)
        async with client(cc.ws_url("symbols=AAA")) as watcher:  # both bars are in the hub
            await synced(watcher)
            await broker.send(minute_bar(0), minute_bar(1))
            assert [(await recv_json(watcher))["ot"] for _ in range(2)] == [T0, T0 + MIN]
        async with client(cc.ws_url("symbols=ZZZ")) as ws:
            await synced(ws)
            await ws.send('{"op":"subscribe","symbols":["AAA@5m"],"id":1}')
            reply = await recv_json(ws)
            assert reply == {"op": "subscribed", "symbols": ["AAA@5m", "ZZZ"], "id": 1}
            assert await recv_json(ws) == expected_aggregate([minute_bar(0), minute_bar(1)], "5m", 1)
            await ws.send('{"op":"subscribe","symbols":["AAA@2h"]}')
            error = await recv_json(ws)
            assert error["op"] == "error" and error["error"] == "unknown_interval" and "2h" in error["detail"]
            await ws.send('{"op":"unsubscribe","symbols":["AAA@5m"]}')
            assert (await recv_json(ws))["symbols"] == ["ZZZ"]
        async with client(cc.ws_url("symbols=AAA@3m")) as bad:
            error = await recv_json(bad)
            assert error["error"] == "unknown_interval"
