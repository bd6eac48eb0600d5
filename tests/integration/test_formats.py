"""Formats end to end: each broker format behind a real (fake) broker WebSocket with its
documented subscribe message and sample messages, and its documented error reply counted as
``refused``; OKX's text heartbeat against a fake OKX that drops quiet connections; a plug-in by
import string and by entry point through the WebSocket source, ``candlecast record`` and
``--source replay``; a bad name at start."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from candlecast.formats.contract import Heartbeat
from candlecast.formats.okx import HEARTBEAT, parse_okx
from candlecast.formats.registry import EXAMPLES
from candlecast.settings import Settings
from tests.conftest import DEADLINE, MS
from tests.integration.harness import FakeBroker, candlecast, client, fake_broker, recv_json, synced, ws_settings
from tests.unit.formats.test_binance import BINANCE_ERRORS, KLINE
from tests.unit.formats.test_bybit import BYBIT_KLINE
from tests.unit.formats.test_kraken import KRAKEN_SNAPSHOT
from tests.unit.formats.test_okx import OKX_ACK, OKX_ERROR, OKX_PUSH
from tests.unit.formats.test_registry import install_plugin

ROOT = Path(__file__).resolve().parents[2]
#: Per format: what the broker sends (an ack or heartbeat first, then its documented sample) and
#: the (symbol, ot) of every candle the dashboards must get from it.
SAMPLES: dict[str, tuple[list[Any], list[tuple[str, int]]]] = {
    "binance": ([{"result": None, "id": 1}, KLINE], [("BNBBTC", 1_700_000_000_000)]),
    "bybit": (
        [{"success": True, "ret_msg": "", "conn_id": "c1", "op": "subscribe"}, BYBIT_KLINE],
        [("BTCUSDT", 1672324800000)],
    ),
    "okx": ([OKX_ACK, OKX_PUSH], [("BTC-USDT", 1597026383085)]),
    "kraken": (
        [{"channel": "heartbeat"}, KRAKEN_SNAPSHOT],
        [("ALGO/USD", 1696433100000), ("ALGO/USD", 1696433400000)],
    ),
}


#: Broker formats have a history half: these tests keep it off, and on loopback if it ever ran.
NO_HISTORY: dict[str, Any] = {"backfill": 0, "rest_url": "http://127.0.0.1:9"}


async def subscribe_received(broker: FakeBroker) -> list[str | bytes]:
    """What the broker has received, once everything candlecast sent before a ping has been read."""
    await broker.current.ping()  # the pong comes after every frame candlecast sent earlier
    await anyio.wait_all_tasks_blocked()  # and the broker's handler has taken them off the queue
    return broker.received


@pytest.mark.parametrize("name", sorted(SAMPLES))
async def test_broker_format_behind_a_websocket_with_its_subscribe_message(name: str) -> None:
    sent, want = SAMPLES[name]
    subscribe = EXAMPLES[name][1]
    async with (
        fake_broker() as broker,
        candlecast(ws_settings(broker, format=name, subscribe=subscribe, **NO_HISTORY)) as cc,
    ):
        await broker.wait_connections(1)
        async with client(cc.ws_url()) as ws:
            await synced(ws)
            await broker.send(*sent)
            got = [await recv_json(ws) for _ in want]
            assert [(m["s"], m["ot"]) for m in got] == want
            assert all(isinstance(m["t"], int) and m["t"] >= m["ot"] for m in got), "epoch ms, like Binance"
        assert await subscribe_received(broker) == [subscribe]
        assert await cc.metric('candlecast_malformed_total{reason="shape"}') == 0


#: Per broker format: its documented error reply (a refused subscription), which must be counted.
REFUSALS: dict[str, Any] = {
    "binance": BINANCE_ERRORS[3],  # web-socket-streams.md, "Error Messages": unknown variant
    "okx": OKX_ERROR,
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
async def test_a_broker_error_reply_is_counted_refused(name: str) -> None:
    """The broker refuses the subscription: no candle, ``candlecast_malformed_total{reason="refused"}``
    is 1, the connection stays (a later candle still arrives)."""
    sent, want = SAMPLES[name]
    settings = {"format": name, "subscribe": EXAMPLES[name][1], **NO_HISTORY}
    async with fake_broker() as broker, candlecast(ws_settings(broker, **settings)) as cc:
        await broker.wait_connections(1)
        async with client(cc.ws_url()) as ws:
            await synced(ws)
            await broker.send(REFUSALS[name], *sent)
            got = [await recv_json(ws) for _ in want]
            assert [(m["s"], m["ot"]) for m in got] == want
        assert await cc.metric('candlecast_malformed_total{reason="refused"}') == 1
        assert await cc.metric("candlecast_upstream_connects_total") == 1


class QuietOkx:
    """A fake OKX business endpoint: like OKX, it closes a connection that sent it nothing for
    ``idle`` seconds (OKX: 30) and answers the text ``ping`` with the text ``pong`` (unless
    ``answer`` is off). Tests await what it received, never time."""

    def __init__(self, idle: float, *, answer: bool = True) -> None:
        self.idle = idle
        self.answer = answer
        self.connections = 0
        self.pings = 0
        self.dropped_quiet = 0
        self.port = 0
        self._changed = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v5/business"

    async def _note(self, **add: int) -> None:
        async with self._changed:
            for name, n in add.items():
                setattr(self, name, getattr(self, name) + n)
            self._changed.notify_all()

    async def handler(self, conn: ServerConnection) -> None:
        await self._note(connections=1)
        try:
            while True:
                try:
                    message = await asyncio.wait_for(conn.recv(), self.idle)
                except TimeoutError:
                    await self._note(dropped_quiet=1)
                    await conn.close(4004, "no data for a while")  # OKX's idle drop
                    return
                if message == "ping":
                    if self.answer:
                        await conn.send("pong")
                    await self._note(pings=1)
        except ConnectionClosed:
            return

    async def wait(self, what: str, n: int) -> None:
        with anyio.fail_after(DEADLINE):
            async with self._changed:
                await self._changed.wait_for(lambda: getattr(self, what) >= n)


@asynccontextmanager
async def quiet_okx(idle: float, *, answer: bool = True) -> AsyncIterator[QuietOkx]:
    okx = QuietOkx(idle, answer=answer)
    async with serve(okx.handler, "127.0.0.1", 0, compression=None) as server:
        okx.port = next(iter(server.sockets)).getsockname()[1]
        yield okx


#: The heartbeat's quiet interval in these tests (OKX's is 20 s, under its 30 s limit); the fake
#: drops a connection quiet for ten times as long.
QUIET = 50 * MS


async def test_okx_heartbeat_keeps_a_quiet_connection_and_pong_is_not_malformed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The feed goes quiet: candlecast sends the text ``ping`` each time, the fake OKX answers
    ``pong`` and keeps the connection (it drops connections quiet for 10x as long); the pongs are
    heartbeats, not ``json`` errors; data after them still arrives."""
    monkeypatch.setattr(parse_okx, "heartbeat", Heartbeat(HEARTBEAT.ping, HEARTBEAT.pong, QUIET))
    async with quiet_okx(idle=10 * QUIET) as okx:
        settings = Settings(source="ws", upstream=okx.url, format="okx", subscribe=EXAMPLES["okx"][1], **NO_HISTORY)
        async with candlecast(settings) as cc:
            await okx.wait("pings", 5)  # five quiet spells in a row, each answered
            assert (okx.connections, okx.dropped_quiet) == (1, 0)
            assert await cc.metric('candlecast_malformed_total{reason="json"}') == 0
            assert await cc.metric("candlecast_upstream_connects_total") == 1
            assert await cc.metric("candlecast_upstream_heartbeats_total") >= 4  # the pongs, counted


async def test_okx_unanswered_heartbeat_reconnects(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``pong`` within the quiet interval after a ``ping``: the connection is dropped and a new one made."""
    monkeypatch.setattr(parse_okx, "heartbeat", Heartbeat(HEARTBEAT.ping, HEARTBEAT.pong, QUIET))
    async with quiet_okx(idle=DEADLINE, answer=False) as okx:
        settings = Settings(
            source="ws",
            upstream=okx.url,
            format="okx",
            subscribe=EXAMPLES["okx"][1],
            reconnect_min=0.02,
            reconnect_max=0.1,
            **NO_HISTORY,
        )
        async with candlecast(settings):
            await okx.wait("pings", 1)
            await okx.wait("connections", 2)
            assert okx.dropped_quiet == 0  # candlecast gave up on it, OKX did not drop it


async def test_a_plugin_by_import_string_delivers_every_candle_of_a_batch() -> None:
    batch = {
        "type": "bars",
        "symbol": "BTC-EUR",
        "sent": 1_700_000_000_500,
        "bars": [
            {"start": 1_700_000_000_000, "o": "10", "h": "12", "l": "9", "c": "11", "vol": "3"},
            {"start": 1_700_000_060_000, "o": "11", "h": "11.5", "l": "10.5", "c": "11.2"},
        ],
    }
    refused = {"type": "error", "message": "no such symbol"}
    async with fake_broker() as broker:
        async with candlecast(ws_settings(broker, format="tests.example_format:parse")) as cc:
            await broker.wait_connections(1)
            async with client(cc.ws_url()) as ws:
                await synced(ws)
                await broker.send({"type": "heartbeat"}, refused, batch)
                first, second = await recv_json(ws), await recv_json(ws)
            assert (first["ot"], first["c"], first["v"]) == (1_700_000_000_000, 11.0, 3.0)
            assert (second["ot"], second["c"], "v" in second) == (1_700_000_060_000, 11.2, False)
            assert await cc.metric('candlecast_malformed_total{reason="refused"}') == 1
            assert await cc.metric("candlecast_upstream_connects_total") == 1


async def test_record_and_replay_take_a_plugin_registered_by_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site)  # name "acme" under candlecast.formats
    out = tmp_path / "acme.jsonl"
    bars = [{"start": 1_700_000_000_000 + 60_000 * i, "o": "1", "h": "2", "l": "1", "c": "2"} for i in range(3)]
    batch = {"type": "bars", "symbol": "ACME", "sent": 1_700_000_200_000, "bars": bars}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    async with fake_broker() as broker:
        cmd = [
            sys.executable,
            "-m",
            "candlecast",
            "record",
            "--upstream",
            broker.url,
            "--format",
            "acme",
            "--out",
            str(out),
            "--count",
            "2",
        ]
        async with await anyio.open_process(cmd, env=env, stderr=subprocess.STDOUT) as proc:
            await broker.wait_connections(1)
            await broker.send({"type": "heartbeat"}, batch)
            with anyio.fail_after(DEADLINE):
                assert await proc.wait() == 0
            assert proc.stdout is not None
            assert "2 messages (3 candles, 0 malformed)" in (await proc.stdout.receive()).decode()
    assert [orjson.loads(line)["msg"] for line in out.read_bytes().splitlines()] == [{"type": "heartbeat"}, batch]
    monkeypatch.syspath_prepend(str(site))
    settings = Settings(source="replay", replay_file=str(out), speed=0, format="acme")
    async with candlecast(settings) as cc, client(cc.ws_url("history=10")) as ws:
        seen: set[int] = set()
        with anyio.fail_after(DEADLINE):
            while len(seen) < 3:
                seen.add((await recv_json(ws))["ot"])
        assert seen == {b["start"] for b in bars}


@pytest.mark.parametrize(
    "argv",
    [
        ["--format", "no_such_module_xyz:parse"],
        ["record", "--upstream", "ws://127.0.0.1:9", "--format", "no_such_module_xyz:parse", "--out", "x"],
    ],
)
def test_a_bad_format_fails_at_start_with_one_line(argv: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "candlecast", *argv], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "cannot import no_such_module_xyz: ModuleNotFoundError" in lines[0]
