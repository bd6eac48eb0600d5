"""HTTP surface, the simulator and replay sources, and `candlecast record`, for real."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from candlecast.settings import Settings
from tests.conftest import DEADLINE
from tests.integration.harness import candlecast, client, fake_broker, recv_json, seed, synced, ws_settings


async def test_api_endpoints_serve_latest_state_and_history() -> None:
    async with fake_broker() as broker, candlecast(ws_settings(broker, history=10)) as cc:
        await broker.wait_connections(1)
        async with client(cc.ws_url()) as ws, httpx.AsyncClient(base_url=cc.url) as http:
            await synced(ws)
            assert (await http.get("/api/symbols")).json() == []
            await broker.send(*(seed("AAA", i) for i in range(15)), seed("BBB", 3))
            for _ in range(16):
                await recv_json(ws)
            symbols = (await http.get("/api/symbols")).json()
            assert [s["symbol"] for s in symbols] == ["AAA", "BBB"]
            assert symbols[0]["latest"]["ot"] == 14
            candles = await http.get("/api/candles", params={"symbol": "AAA", "limit": 3})
            assert candles.headers["content-type"] == "application/json"
            assert [c["ot"] for c in candles.json()] == [12, 13, 14]
            assert len((await http.get("/api/candles", params={"symbol": "AAA"})).json()) == 10
            for params, status in [
                ({}, 400),
                ({"symbol": "AAA", "limit": "x"}, 400),
                ({"symbol": "AAA", "limit": "11"}, 400),
                ({"symbol": "ZZZ"}, 404),
            ]:
                r = await http.get("/api/candles", params=params)
                assert r.status_code == status and r.json()["error"] and r.json()["detail"]


async def test_health_readiness_and_metrics() -> None:
    async with fake_broker() as broker, candlecast(ws_settings(broker)) as cc:
        async with httpx.AsyncClient(base_url=cc.url) as http:
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            await broker.wait_connections(1)
            not_yet = await http.get("/readyz")
            assert not_yet.status_code == 503 and not_yet.json()["reason"]
            async with client(cc.ws_url()) as ws:
                await synced(ws)
                await broker.send(seed("AAA", 1))
                await recv_json(ws)
                ready = await http.get("/readyz")
                assert ready.status_code == 200 and ready.json()["status"] == "ready"
                metrics = await http.get("/metrics")
            assert metrics.headers["content-type"].startswith("text/plain")
            text = metrics.text
            for name in (
                "candlecast_clients 1.0",
                "candlecast_candles_in_total 1.0",
                "candlecast_candles_out_total 1.0",
                "candlecast_upstream_connected 1.0",
                'candlecast_malformed_total{reason="json"} 0.0',
                "candlecast_delivery_latency_seconds_count 1.0",
                "candlecast_bridge_depth 0.0",
                "candlecast_slow_disconnects_total 0.0",
                "candlecast_merged_total 0.0",
                "process_resident_memory_bytes",
            ):
                assert name in text, name


async def test_tokens_protect_the_api() -> None:
    async with fake_broker() as broker, candlecast(ws_settings(broker, tokens=("t0k",))) as cc:
        async with httpx.AsyncClient(base_url=cc.url) as http:
            assert (await http.get("/api/symbols")).status_code == 401
            assert (await http.get("/api/symbols", params={"token": "t0k"})).status_code == 200
            assert (await http.get("/api/symbols", headers={"authorization": "Bearer t0k"})).status_code == 200
            assert (await http.get("/healthz")).status_code == 200


async def test_simulator_feeds_clients_by_default() -> None:
    async with candlecast(Settings(rate=200, symbols=("AAA", "BBB"))) as cc:
        async with client(cc.ws_url("symbols=BBB&batch=0")) as ws:
            got = [await recv_json(ws) for _ in range(5)]
        assert {m["s"] for m in got} == {"BBB"}
        assert all(m["l"] <= m["o"] <= m["h"] and m["l"] <= m["c"] <= m["h"] for m in got)
        async with httpx.AsyncClient(base_url=cc.url) as http:
            index = await http.get("/")
            assert index.status_code == 200 and "candlecast" in index.text
            assert index.headers["x-content-type-options"] == "nosniff"  # through Starlette's stack


async def test_only_ws_takes_websockets() -> None:
    """``/ws`` goes straight to the stream endpoint; a WebSocket on any other path gets
    Starlette's refusal (HTTP 403), as an HTTP request to ``/ws`` gets its 404."""
    async with candlecast(Settings(rate=50, symbols=("AAA",))) as cc:
        for path in ("/ws/", "/wsx", "/api/symbols"):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"ws://127.0.0.1:{cc.port}{path}", open_timeout=DEADLINE):
                    pass
            assert refused.value.response.status_code == 403
        async with httpx.AsyncClient(base_url=cc.url) as http:
            assert (await http.get("/ws")).status_code == 404
        async with client(cc.ws_url("symbols=AAA")) as ws:
            assert (await recv_json(ws))["s"] == "AAA"


async def test_replay_source_serves_a_recorded_file(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    path.write_bytes(b"".join(orjson.dumps(seed("AAA", i)) + b"\n" for i in range(50)))
    settings = Settings(source="replay", replay_file=str(path), speed=0, history=100)
    async with candlecast(settings) as cc, httpx.AsyncClient(base_url=cc.url) as http:
        with anyio.fail_after(DEADLINE):
            async with client(cc.ws_url("history=100")) as ws:
                seen: set[int] = set()
                while 49 not in seen:  # snapshot, then live: whatever the hub had when we came
                    msg = await recv_json(ws)
                    seen.add(msg["ot"])
        assert len((await http.get("/api/candles", params={"symbol": "AAA", "limit": 100})).json()) == 50
        finished = await http.get("/readyz")
        assert finished.status_code == 503 and finished.json()["reason"] == "upstream finished"


async def test_record_writes_the_upstream_to_jsonl_for_replay(tmp_path: Path) -> None:
    out = tmp_path / "rec.jsonl"
    async with fake_broker() as broker:
        cmd = [
            *(sys.executable, "-m", "candlecast", "record", "--upstream", broker.url, "--format", "seed"),
            *("--out", str(out), "--count", "4", "--subscribe", '{"op":"sub"}'),
        ]
        async with await anyio.open_process(cmd, stderr=subprocess.STDOUT) as proc:
            await broker.wait_connections(1)
            await broker.send(seed("AAA", 1), "garbage", seed("AAA", 2), {"heartbeat": 1})
            with anyio.fail_after(DEADLINE):
                assert await proc.wait() == 0
            assert proc.stdout is not None
            summary = (await proc.stdout.receive()).decode()
        assert "4 messages (2 candles, 1 malformed)" in summary
        assert broker.received == ['{"op":"sub"}']
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [line["msg"] for line in lines] == [seed("AAA", 1), "garbage", seed("AAA", 2), {"heartbeat": 1}]
    assert all(isinstance(line["at"], float) for line in lines)
    settings = Settings(source="replay", replay_file=str(out), speed=0)
    async with candlecast(settings) as cc, client(cc.ws_url()) as ws:
        while (await recv_json(ws))["ot"] != 2:
            pass


@pytest.mark.parametrize("run", range(3))
async def test_ready_means_servable_the_simulators_history_is_in_the_hub_and_no_client_gets_it_live(run: int) -> None:
    """``python -m candlecast`` as a new user starts it: /readyz says 200 only once the start-up
    history is merged (so /api/symbols and a snapshot already hold it), and a client connected then
    gets that history in its snapshot and only the present live, never the past as a flood of live
    updates. Three starts: the race it had showed in about half of them."""
    from tests.integration.scale import child

    async with child("--rate", "20", "--backfill", "300") as proc:
        await proc.wait_log(b"Application startup complete")
        url = f"http://127.0.0.1:{proc.port}"
        async with httpx.AsyncClient(base_url=url) as http:
            with anyio.fail_after(DEADLINE):  # no event to await over HTTP: ask until it says ready
                while (await http.get("/readyz")).status_code != 200:
                    pass
            symbols = (await http.get("/api/symbols")).json()
            assert sorted(s["symbol"] for s in symbols) == sorted(Settings().symbols)
            async with client(f"ws://127.0.0.1:{proc.port}/ws?symbols=BTCUSD&history=300&batch=1") as ws:
                snapshot = await recv_json(ws)
                assert isinstance(snapshot, list) and len(snapshot) == 300
                newest = snapshot[-1]["ot"]
                live: list[Any] = []
                while len(live) < 5:
                    msg = await recv_json(ws)
                    live.extend(msg if isinstance(msg, list) else [msg])
                assert all(isinstance(c, dict) and c.get("ot", 0) >= newest for c in live), live[:3]
