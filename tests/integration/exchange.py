"""A fake exchange on loopback: Binance's REST klines and its kline WebSocket stream, one server.

Its bars are a deterministic function of the symbol and the bar's open time, on a *virtual*
clock the test moves (:meth:`FakeExchange.advance`), so the test knows bar for bar what the
broker holds: :meth:`FakeExchange.bars` is the truth candlecast's history is compared with.
Every bar of every interval is the aggregate of its 1-minute bars; the open 1-minute bar has a
partial state until the clock passes its end (then its final one).

One ``websockets`` server: a plain HTTP ``GET`` (no upgrade) is answered from ``process_request``
(``/api/v3/klines``, Binance's shape, at most 1,000 bars a call, newest last), anything else is
the kline stream in the combined form (``{"stream": …, "data": {"e": "kline", …}}``). Knobs for
the unhappy paths: a gate REST requests wait on, answers of 429 with ``Retry-After``, canned
answers for the next requests (another exchange's limit answer: Bybit's 403, OKX's bare 429,
Kraken's error array), a request that hangs, and an outage of the stream (connections closed,
new ones refused) while the clock goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from tests.conftest import DEADLINE

MINUTE = 60_000
#: The virtual clock's start: 2024-01-01 10:07:30 UTC.
T0 = 1_704_103_650_000
INTERVALS = {"1m": MINUTE, "5m": 5 * MINUTE, "15m": 15 * MINUTE, "1h": 60 * MINUTE, "4h": 240 * MINUTE}


@dataclass(frozen=True)
class Bar:
    ot: int
    o: float
    h: float
    l: float  # noqa: E741
    c: float
    v: float

    def key(self) -> tuple[int, float, float, float, float, float]:
        return (self.ot, self.o, self.h, self.l, self.c, self.v)


def _price(symbol: str, k: int) -> float:
    base = 100 + sum(symbol.encode()) % 50
    return round(base + ((k * 37) % 23) - 11 + ((k * 13) % 7) / 4, 2)


def minute_bar(symbol: str, ot: int, now: int) -> Bar:
    """The 1-minute bar opening at ``ot`` as of ``now``: final once ``now`` passed its end."""
    k = ot // MINUTE
    o, c = _price(symbol, k), _price(symbol, k + 1)
    d = round(0.25 + (k % 4) * 0.5, 2)
    v = float(1 + k % 5)
    if now >= ot + MINUTE:
        return Bar(ot, o, round(max(o, c) + d, 2), round(min(o, c) - d, 2), c, v)
    c = round((o + c) / 2, 2)
    return Bar(ot, o, round(max(o, c) + d / 2, 2), round(min(o, c) - d / 2, 2), c, v / 2)


def bar(symbol: str, ms: int, ot: int, now: int) -> Bar:
    """The bar of ``ms`` opening at ``ot`` as of ``now``: the aggregate of its minutes so far."""
    minutes = [minute_bar(symbol, m, now) for m in range(ot, min(ot + ms, now - now % MINUTE + MINUTE), MINUTE)]
    return Bar(
        ot,
        minutes[0].o,
        max(b.h for b in minutes),
        min(b.l for b in minutes),
        minutes[-1].c,
        round(sum(b.v for b in minutes), 8),
    )


class FakeExchange:
    def __init__(self, symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT"), *, now: int = T0) -> None:
        self.symbols = symbols
        self.now = now
        self.port = 0
        self.connections: list[ServerConnection] = []
        self.requests: list[tuple[float, dict[str, str]]] = []  # (monotonic, query) per REST call
        self.gate = asyncio.Event()  # REST requests wait for it
        self.gate.set()
        self.rate_limit = 0  # answer this many next requests with 429
        self.retry_after = 1
        self.answers: list[tuple[int, dict[str, str], str]] = []  # (status, headers, body) for the next requests
        self.hang = 0  # this many next requests never answer
        self.hanging = asyncio.Event()  # a request is hanging now
        self.down = False
        self._connected = asyncio.Condition()
        self._released = asyncio.Event()  # ends every hanging request at teardown

    # -- the truth --------------------------------------------------------------------------------

    def bars(self, symbol: str, interval: str, count: int) -> list[Bar]:
        """The last ``count`` bars of ``interval`` as of now, oldest first (the open one last)."""
        ms = INTERVALS[interval]
        current = self.now - self.now % ms
        return [bar(symbol, ms, ot, self.now) for ot in range(current - (count - 1) * ms, current + ms, ms)]

    # -- the stream -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        streams = "/".join(f"{s.lower()}@kline_1m" for s in self.symbols)
        return f"ws://127.0.0.1:{self.port}/stream?streams={streams}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _event(self, symbol: str, ot: int, now: int) -> bytes:
        b = minute_bar(symbol, ot, now)
        k = {
            "t": ot,
            "T": ot + MINUTE - 1,
            "s": symbol,
            "i": "1m",
            "o": repr(b.o),
            "c": repr(b.c),
            "h": repr(b.h),
            "l": repr(b.l),
            "v": repr(b.v),
            "x": now >= ot + MINUTE,
        }
        data = {"e": "kline", "E": now, "s": symbol, "k": k}
        return orjson.dumps({"stream": f"{symbol.lower()}@kline_1m", "data": data})

    async def tick(self) -> None:
        """Send every symbol's open bar as of now on every open connection."""
        current = self.now - self.now % MINUTE
        for conn in list(self.connections):
            for s in self.symbols:
                await conn.send(self._event(s, current, self.now).decode())

    async def advance(self, ms: int) -> None:
        """Move the clock; while the stream is up, send each bar's final state as it closes and
        the new open bar's state, as Binance does."""
        start, self.now = self.now, self.now + ms
        if self.down:
            return
        for ot in range(start - start % MINUTE, self.now - self.now % MINUTE, MINUTE):
            for conn in list(self.connections):
                for s in self.symbols:
                    await conn.send(self._event(s, ot, ot + MINUTE).decode())
        await self.tick()

    async def outage(self) -> None:
        """Close every stream connection and refuse new ones until :meth:`restore`."""
        self.down = True
        for conn in list(self.connections):
            await conn.close()
        self.connections.clear()

    def restore(self) -> None:
        self.down = False

    async def wait_connected(self) -> None:
        with anyio.fail_after(DEADLINE):
            async with self._connected:
                await self._connected.wait_for(lambda: bool(self.connections))

    async def _handler(self, conn: ServerConnection) -> None:
        async with self._connected:
            self.connections.append(conn)
            self._connected.notify_all()
        try:
            async for _ in conn:
                pass
        finally:
            if conn in self.connections:
                self.connections.remove(conn)

    # -- REST -------------------------------------------------------------------------------------

    async def _http(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            if self.down:
                return conn.respond(HTTPStatus.SERVICE_UNAVAILABLE, "down\n")
            return None
        url = urlsplit(request.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.requests.append((time.monotonic(), query))
        await self.gate.wait()
        if self.hang:
            self.hang -= 1
            self.hanging.set()
            await self._released.wait()
            return conn.respond(HTTPStatus.SERVICE_UNAVAILABLE, "released\n")
        if self.answers:
            status, headers, body = self.answers.pop(0)
            response = conn.respond(HTTPStatus(status), body)
            for name, value in headers.items():
                response.headers[name] = value
            return response
        if self.rate_limit:
            self.rate_limit -= 1
            response = conn.respond(HTTPStatus.TOO_MANY_REQUESTS, '{"code":-1003,"msg":"Too many requests."}')
            response.headers["Retry-After"] = str(self.retry_after)
            return response
        if url.path != "/api/v3/klines":
            return conn.respond(HTTPStatus.NOT_FOUND, "not found\n")
        status, body = self.klines(query)
        response = conn.respond(status, body)
        response.headers["Content-Type"] = "application/json"
        response.headers["X-MBX-USED-WEIGHT-1M"] = str(2 * len(self.requests))
        return response

    def klines(self, q: dict[str, str]) -> tuple[HTTPStatus, str]:
        """``GET /api/v3/klines`` as Binance answers it."""
        symbol, interval = q.get("symbol", ""), q.get("interval", "")
        limit = int(q.get("limit", "500"))
        if symbol not in self.symbols or interval not in INTERVALS or not 1 <= limit <= 1000:
            return HTTPStatus.BAD_REQUEST, '{"code":-1100,"msg":"Illegal characters found in a parameter."}'
        ms = INTERVALS[interval]
        current = self.now - self.now % ms
        end = min(int(q.get("endTime", current)), current)
        end -= end % ms
        if "startTime" in q:
            start = int(q["startTime"])
            first = start + (-start) % ms
            ots = [ot for ot in range(first, end + 1, ms)][:limit]
        else:
            ots = list(range(end - (limit - 1) * ms, end + 1, ms))
        rows: list[list[Any]] = []
        for ot in ots:
            b = bar(symbol, ms, ot, self.now)
            rows.append([ot, repr(b.o), repr(b.h), repr(b.l), repr(b.c), repr(b.v), ot + ms - 1, "0", 1, "0", "0", "0"])
        return HTTPStatus.OK, orjson.dumps(rows).decode()


@asynccontextmanager
async def fake_exchange(*symbols: str, port: int = 0) -> AsyncIterator[FakeExchange]:
    exchange = FakeExchange(symbols or ("BTCUSDT", "ETHUSDT"))
    async with serve(exchange._handler, "127.0.0.1", port, compression=None, process_request=exchange._http) as server:
        exchange.port = next(iter(server.sockets)).getsockname()[1]
        try:
            yield exchange
        finally:
            exchange._released.set()
            exchange.gate.set()


__all__ = ["INTERVALS", "MINUTE", "T0", "Bar", "FakeExchange", "bar", "fake_exchange", "minute_bar"]
