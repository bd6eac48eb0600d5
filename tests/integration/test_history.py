"""History over the broker's REST API, end to end: a real candlecast against a fake exchange
(REST + WebSocket on loopback, Binance's shapes, a virtual clock; tests/integration/exchange.py).

Start-up backfill of ``--history`` bars per symbol and interval, paging, 429 + ``Retry-After``,
a REST timeout that live frames do not wait for, and a stream outage filled after the reconnect:
every time, the clients' history is compared bar for bar with the exchange's. And the REST
client's manners against the same exchange: a backfill of many symbols × intervals never sends
more than the declared rate in any window, and each exchange's limit answer holds every request
for its stated time (small declared rates and scaled-down holds keep them fast).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import anyio
import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection

from candlecast.formats.binance import BinanceHistory
from candlecast.formats.bybit import BybitHistory
from candlecast.formats.contract import HistoryFormat, Rate, Request, Wanted
from candlecast.formats.kraken import KrakenHistory
from candlecast.formats.okx import OkxHistory
from candlecast.history.client import Historian, RestClient
from candlecast.model.intervals import parse_interval
from candlecast.settings import Settings
from tests.conftest import DEADLINE
from tests.integration.exchange import FakeExchange, fake_exchange
from tests.integration.harness import Candlecast, candlecast, client, recv_json, synced

Key = tuple[str, str]  # (symbol, interval)


def settings_for(exchange: FakeExchange, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "source": "ws",
        "upstream": exchange.url,
        "format": "binance",
        "rest_url": exchange.rest_url,
        "intervals": ("1m", "5m", "1h"),
        "history": 40,
        "backfill": 40,
        "reconnect_min": 0.02,
        "reconnect_max": 0.1,
    }
    values.update(overrides)
    return Settings(**values)


def streams(symbols: tuple[str, ...], intervals: tuple[str, ...]) -> str:
    return ",".join(s if i == "1m" else f"{s}@{i}" for s in symbols for i in intervals)


def by_stream(frames: list[Any]) -> dict[Key, list[tuple[Any, ...]]]:
    """Candle frames grouped by (symbol, interval), each bar as (ot, o, h, l, c, v)."""
    out: dict[Key, list[tuple[Any, ...]]] = {}
    for f in frames:
        if isinstance(f, dict) and "ot" in f:
            out.setdefault((f["s"], f.get("i", "1m")), []).append((f["ot"], f["o"], f["h"], f["l"], f["c"], f["v"]))
    return out


def truth(exchange: FakeExchange, intervals: tuple[str, ...], count: int) -> dict[Key, list[tuple[Any, ...]]]:
    return {(s, i): [b.key() for b in exchange.bars(s, i, count)] for s in exchange.symbols for i in intervals}


async def until_resyncs(ws: ClientConnection, n: int = 1) -> None:
    """Read until the ``n``-th ``{"op":"resync"}`` frame."""
    seen = 0
    with anyio.fail_after(DEADLINE):
        while seen < n:
            msg = await recv_json(ws)
            if isinstance(msg, dict) and msg.get("op") == "resync":
                seen += 1


async def released(exchange: FakeExchange, ws: ClientConnection) -> dict[Key, list[tuple[Any, ...]]]:
    """Let the exchange answer the backfill's REST requests (held at its gate while ``ws``
    subscribed); what the client holds after the re-snapshot that follows."""
    await synced(ws)
    exchange.gate.set()
    await until_resyncs(ws)
    return by_stream(await synced(ws))


async def readyz(cc: Candlecast) -> tuple[int, Any]:
    async with httpx.AsyncClient() as http:
        r = await http.get(cc.url + "/readyz")
    return r.status_code, r.json()


async def test_backfill_loads_history_per_symbol_and_interval_equal_to_the_exchange() -> None:
    """Start-up backfill: the hub holds --history bars of every symbol and interval, bar for bar the
    exchange's, and /readyz says "backfilling" until then."""
    intervals = ("1m", "5m", "1h")
    async with fake_exchange() as exchange:
        exchange.gate.clear()
        async with candlecast(settings_for(exchange)) as cc:
            await exchange.wait_connected()
            await exchange.tick()
            status, body = await readyz(cc)
            assert (status, body["reason"]) == (503, "backfilling")
            async with client(cc.ws_url(f"symbols={streams(exchange.symbols, intervals)}&history=40")) as ws:
                got = await released(exchange, ws)
            assert got == truth(exchange, intervals, 40)
            assert (await readyz(cc))[0] == 200
            async with httpx.AsyncClient() as http:
                api = (await http.get(cc.url + "/api/candles", params={"symbol": "ETHUSDT@1h", "limit": 40})).json()
            assert [c["ot"] for c in api] == [b.ot for b in exchange.bars("ETHUSDT", "1h", 40)]
            assert await cc.metric("candlecast_history_backfills_total") == 1
            # base bars reach back to the start of the open hour, so its aggregate is whole: one
            # call per symbol and interval (40 bars, then 60 minutes of the hour at most: 2 for 1m)
            assert len(exchange.requests) <= 2 * 4


async def test_backfill_pages_through_more_bars_than_one_call_returns() -> None:
    """2,500 bars take three calls of at most 1,000 (the exchange refuses more); all arrive, in order."""
    async with fake_exchange("BTCUSDT") as exchange:
        exchange.gate.clear()
        async with candlecast(settings_for(exchange, intervals=("1m",), history=2500, backfill=2500)) as cc:
            await exchange.wait_connected()
            await exchange.tick()
            async with client(cc.ws_url("symbols=BTCUSDT&history=2500")) as ws:
                got = await released(exchange, ws)
        assert got == truth(exchange, ("1m",), 2500)
        limits = [int(q["limit"]) for _, q in exchange.requests]
        assert len(limits) == 3 and max(limits) == 1000
        assert [("endTime" in q) for _, q in exchange.requests] == [False, True, True]


async def test_backfill_waits_out_a_429_retry_after() -> None:
    """A 429 with Retry-After: 1 stops the requests for a second (measured at the exchange), then
    the backfill completes; the 429 is counted."""
    async with fake_exchange("BTCUSDT") as exchange:
        exchange.gate.clear()
        exchange.rate_limit, exchange.retry_after = 1, 1
        async with candlecast(settings_for(exchange, intervals=("1m",))) as cc:
            await exchange.wait_connected()
            await exchange.tick()
            async with client(cc.ws_url("symbols=BTCUSDT&history=40")) as ws:
                got = await released(exchange, ws)
            assert got == truth(exchange, ("1m",), 40)
            assert await cc.metric("candlecast_history_rate_limited_total") == 1
        (first, _), (second, _) = exchange.requests[:2]
        assert second - first >= 1.0


async def test_a_rest_timeout_does_not_delay_live_frames() -> None:
    """While a REST request hangs, live frames reach the client at once; the request times out,
    is counted, retried, and the backfill lands."""
    async with fake_exchange("BTCUSDT") as exchange:
        exchange.hang = 1
        async with candlecast(settings_for(exchange, intervals=("1m",), rest_timeout=2.0)) as cc:
            await exchange.wait_connected()
            with anyio.fail_after(DEADLINE):
                await exchange.hanging.wait()
            async with client(cc.ws_url("symbols=BTCUSDT&history=40")) as ws:
                await synced(ws)
                sent = time.monotonic()
                await exchange.tick()
                live = await recv_json(ws)
                took = time.monotonic() - sent
                assert live["ot"] == exchange.now - exchange.now % 60_000 and "op" not in live
                assert took < 1.0
                assert (await readyz(cc))[1]["reason"] == "backfilling"  # the REST request still hangs
                await until_resyncs(ws)
                got = by_stream(await synced(ws))
            assert got == truth(exchange, ("1m",), 40)
            assert await cc.metric('candlecast_history_rejected_total{reason="timeout"}') == 1


async def test_an_outage_is_filled_after_the_reconnect_with_no_hole_and_no_duplicate() -> None:
    """The stream drops for 7 minutes while the exchange goes on making bars: after the reconnect
    every client (connected throughout, or new) holds the exchange's bars of every interval."""
    intervals = ("1m", "5m", "1h")
    symbols = ("BTCUSDT", "ETHUSDT")
    query = f"symbols={streams(symbols, intervals)}&history=40"
    async with fake_exchange(*symbols) as exchange:
        exchange.gate.clear()
        async with candlecast(settings_for(exchange)) as cc:
            await exchange.wait_connected()
            await exchange.tick()
            async with client(cc.ws_url(query)) as ws:
                await synced(ws)
                exchange.gate.set()
                await until_resyncs(ws)
                await synced(ws)
                await exchange.advance(60_000)  # one bar closes live
                await exchange.outage()
                await exchange.advance(7 * 60_000 + 10_000)  # nothing sent: the stream is down
                exchange.restore()
                await exchange.wait_connected()
                await exchange.tick()  # the first live bars after the reconnect: a gap per symbol
                expected = truth(exchange, intervals, 40)
                assert await converged(ws, expected) == expected  # re-snapshotted, then live
            async with client(cc.ws_url(query)) as fresh:
                assert by_stream(await synced(fresh)) == expected
            assert await cc.metric("candlecast_history_fills_total") == 2
            assert await cc.metric("candlecast_upstream_connects_total") == 2


async def converged(ws: ClientConnection, want: dict[Key, list[tuple[Any, ...]]]) -> dict[Key, list[tuple[Any, ...]]]:
    """Read frames as a dashboard applies them -- a ``resync`` empties the chart, every candle
    frame sets its bar -- until, after at least one re-snapshot, the last bars of each stream are
    ``want`` (or the deadline). An edge re-snapshots once per batch that inserted bars, and live
    updates may follow the last re-snapshot, so neither "the last frame was a snapshot" nor a
    number of re-snapshots is assumed."""
    chart: dict[Key, dict[Any, tuple[Any, ...]]] = {}
    resynced = False

    def view() -> dict[Key, list[tuple[Any, ...]]]:
        return {key: [bars[ot] for ot in sorted(bars)][-len(want.get(key, ())) :] for key, bars in chart.items()}

    with anyio.fail_after(DEADLINE):
        while not (resynced and view() == want):
            msg = await recv_json(ws)
            if isinstance(msg, dict) and msg.get("op") == "resync":
                chart.clear()
                resynced = True
            for key, bars in by_stream(msg if isinstance(msg, list) else [msg]).items():
                for b in bars:
                    chart.setdefault(key, {})[b[0]] = b
    return view()


async def test_with_the_backplane_the_ingest_backfills_and_fills_and_edges_resync() -> None:
    """role=ingest asks the exchange; an edge's clients get the backfill and, after an outage,
    the gap fill, bar for bar the exchange's, never calling the broker themselves."""
    from tests.integration.scale import redis_server, role_settings

    intervals = ("1m", "5m")
    query = f"symbols={streams(('BTCUSDT',), intervals)}&history=40"
    async with redis_server() as redis, fake_exchange("BTCUSDT") as exchange:
        exchange.gate.clear()
        ingest_settings = settings_for(exchange, intervals=intervals)
        ingest_settings = role_settings(
            "ingest",
            redis.url,
            **{k: getattr(ingest_settings, k) for k in ("upstream", "rest_url", "intervals", "history", "backfill")},
            format="binance",
        )
        async with candlecast(ingest_settings) as ingest:
            await exchange.wait_connected()
            await exchange.tick()
            async with candlecast(role_settings("edge", redis.url, intervals=intervals, history=40)) as edge:
                async with client(edge.ws_url(query)) as ws:
                    with anyio.fail_after(DEADLINE):  # the edge has the live bar: in a snapshot
                        frames = await synced(ws)  # (a resync) or live, had it followed a new stream
                        while not by_stream(frames):
                            frames = [await recv_json(ws)]
                    exchange.gate.set()
                    assert await converged(ws, truth(exchange, intervals, 40)) == truth(exchange, intervals, 40)
                    requests = len(exchange.requests)
                    await exchange.outage()
                    await exchange.advance(6 * 60_000)
                    exchange.restore()
                    await exchange.wait_connected()
                    await exchange.tick()
                    assert await converged(ws, truth(exchange, intervals, 40)) == truth(exchange, intervals, 40)
                assert len(exchange.requests) > requests  # the gap was filled over REST, by the ingest
            assert await ingest.metric("candlecast_history_fills_total") == 1


# -- the client's manners: declared rates and limit answers ----------------------------------------


class Paced(BinanceHistory):
    """Binance's requests and bars (the fake exchange's shape) at a small declared ``rate``, with
    another exchange's limit signals (``signals``), its holds scaled by ``scale``: test-only."""

    def __init__(self, rate: Rate, signals: HistoryFormat | None = None, scale: float = 1.0) -> None:
        self._rate, self.signals, self.scale = rate, signals, scale

    def rate(self, request: Request) -> Rate:
        return self._rate

    def limited(self, status: int, headers: Mapping[str, str], body: object, now_ms: int) -> float | None:
        limited = getattr(self.signals, "limited", None)
        hold = limited(status, headers, body, now_ms) if limited is not None else None
        return None if hold is None else hold * self.scale


class Recording(httpx.AsyncBaseTransport):
    """The real transport, noting when each request was sent (client side, monotonic)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[float] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(time.monotonic())
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def backfill(
    exchange: FakeExchange, half: HistoryFormat, intervals: tuple[str, ...]
) -> tuple[RestClient, Recording]:
    """A whole backfill of every symbol × interval (40 bars each) through a RestClient."""
    transport = Recording()
    rest = RestClient(half, exchange.rest_url, upstream=exchange.url, transport=transport)
    try:
        base, *higher = [parse_interval(i) for i in intervals]
        historian = Historian(rest, [Wanted(s) for s in exchange.symbols], base=base, higher=higher, bars=40)
        with anyio.fail_after(DEADLINE):
            got = await historian.backfill()
    finally:
        await rest.aclose()
    assert set(got) == set(exchange.symbols)
    for s in exchange.symbols:  # the base bars are the exchange's
        assert [c.ot for c in got[s] if c.i is None][-40:] == [b.ot for b in exchange.bars(s, "1m", 40)]
    return rest, transport


def most_in_a_window(times: list[float], window: float) -> int:
    """The most of ``times`` in any half-open window ``[t, t + window)``."""
    return max(sum(1 for u in times if t <= u < t + window) for t in times)


async def test_a_backfill_of_many_symbols_and_intervals_never_exceeds_the_declared_rate() -> None:
    """5 symbols × 4 intervals (20 requests, 4 at once allowed) at a declared 5 requests / 0.5 s:
    the exchange never sees more than 5 in any 0.5 s (nor does the client send more)."""
    rate = Rate(5, 0.5)
    async with fake_exchange("AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT", "EEEUSDT") as exchange:
        _, transport = await backfill(exchange, Paced(rate), ("1m", "5m", "15m", "1h"))
    arrivals = [at for at, _ in exchange.requests]
    assert len(arrivals) >= 20
    assert most_in_a_window(transport.sent, rate.window) <= rate.requests
    assert most_in_a_window(arrivals, rate.window) <= rate.requests
    assert arrivals[-1] - arrivals[0] >= (len(arrivals) - 1) * rate.window / rate.requests  # paced, not bunched


# Each exchange's limit answer, from its documented sample (see tests/unit/formats/test_<broker>.py
# for the pages): Bybit v5 "Rate Limit Rules": HTTP 403 "access too frequent", wait >= 10 minutes
# (the body is reconstructed); OKX API v5 error code 50011 with HTTP 429 and no Retry-After (hold:
# its 2 s window; body reconstructed from the error code table); Kraken "Spot REST Rate Limits":
# {"error": ["EGeneral:Too many requests"]} with HTTP 200 (reconstructed; hold: candlecast's 10 s).
LIMIT_ANSWERS: dict[str, tuple[BybitHistory | OkxHistory | KrakenHistory, float, tuple[int, dict[str, str], str]]] = {
    "bybit-403": (BybitHistory(), 600.0, (403, {}, "access too frequent")),
    "okx-429": (OkxHistory(), 2.0, (429, {}, '{"code":"50011","msg":"Rate limit reached.","data":[]}')),
    "kraken-error": (
        KrakenHistory(),
        10.0,
        (200, {"Content-Type": "application/json"}, orjson.dumps({"error": ["EGeneral:Too many requests"]}).decode()),
    ),
}
HOLD = 0.3  # each exchange's hold, scaled down to this


@pytest.mark.parametrize("case", LIMIT_ANSWERS)
async def test_a_limit_answer_holds_every_request_for_the_stated_time(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The first request of a backfill (2 symbols × 2 intervals, 4 at once) draws the exchange's
    limit answer: no request is sent until its hold (scaled) has passed, the limited request is
    then retried, the backfill completes; counted once, logged once."""
    signals, hold, answer = LIMIT_ANSWERS[case]
    assert signals.limited(answer[0], {}, orjson.loads(answer[2]) if answer[2].startswith("{") else None, 0) == hold
    async with fake_exchange("AAAUSDT", "BBBUSDT") as exchange:
        exchange.answers.append(answer)
        with caplog.at_level(logging.WARNING, logger="candlecast.history"):
            rest, transport = await backfill(exchange, Paced(Rate(20, 1.0), signals, HOLD / hold), ("1m", "5m"))
    assert rest.stats.rate_limited == 1
    assert [r.message for r in caplog.records if "too many requests" in r.message] == [
        f"history: /api/v3/klines answered {answer[0]} (too many requests): none for {HOLD:.1f}s"
    ]
    resume_at = rest.pacer.resume_at
    held_from = resume_at - HOLD
    assert not [t for t in transport.sent if held_from <= t < resume_at]  # nothing sent during the hold
    (first, limited), *rest_of = exchange.requests
    retried = next(at for at, q in rest_of if q == limited)
    assert retried - first >= HOLD  # measured at the exchange: the retry waited out the hold
