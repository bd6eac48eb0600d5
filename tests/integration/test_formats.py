"""Formats end to end: each broker format behind a real (fake) broker WebSocket with its
documented subscribe message and sample messages; a plug-in by import string and by entry point
through the WebSocket source, ``candlecast record`` and ``--source replay``; a bad name at start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from candlecast.formats.registry import EXAMPLES
from candlecast.settings import Settings
from tests.conftest import DEADLINE
from tests.integration.harness import FakeBroker, candlecast, client, fake_broker, recv_json, synced, ws_settings
from tests.unit.formats.test_bybit import BYBIT_KLINE
from tests.unit.formats.test_kraken import KRAKEN_SNAPSHOT
from tests.unit.formats.test_okx import OKX_ACK, OKX_PUSH
from tests.unit.formats.test_registry import install_plugin

ROOT = Path(__file__).resolve().parents[2]
#: Per format: what the broker sends (an ack or heartbeat first, then its documented sample) and
#: the (symbol, ot) of every candle the dashboards must get from it.
SAMPLES: dict[str, tuple[list[Any], list[tuple[str, int]]]] = {
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


async def subscribe_received(broker: FakeBroker) -> list[str | bytes]:
    """What the broker has received, once everything candlecast sent before a ping has been read."""
    await broker.current.ping()  # the pong comes after every frame candlecast sent earlier
    await anyio.wait_all_tasks_blocked()  # and the broker's handler has taken them off the queue
    return broker.received


@pytest.mark.parametrize("name", sorted(SAMPLES))
async def test_broker_format_behind_a_websocket_with_its_subscribe_message(name: str) -> None:
    sent, want = SAMPLES[name]
    subscribe = EXAMPLES[name][1]
    async with fake_broker() as broker, candlecast(ws_settings(broker, format=name, subscribe=subscribe)) as cc:
        await broker.wait_connections(1)
        async with client(cc.ws_url()) as ws:
            await synced(ws)
            await broker.send(*sent)
            got = [await recv_json(ws) for _ in want]
            assert [(m["s"], m["ot"]) for m in got] == want
            assert all(isinstance(m["t"], int) and m["t"] >= m["ot"] for m in got), "epoch ms, like Binance"
        assert await subscribe_received(broker) == [subscribe]
        assert await cc.metric('candlecast_malformed_total{reason="shape"}') == 0


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
