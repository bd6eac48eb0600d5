"""History over the broker's REST API: the start-up backfill and the gap fill after a reconnect.

:class:`RestClient` is the one HTTP client (httpx, kept for the process) that asks the broker
for bars through a format's pure history half (:mod:`candlecast.formats.contract`), as a good citizen of the
broker's limits: at most :data:`CONCURRENCY` requests at once, and each request paced to the rate
the half declares for it (:func:`~candlecast.formats.contract.rate_of`; the pure
:class:`~candlecast.history.rates.Pacer`, shared by every fetch); connect and read timeouts; a
*limit answer* -- an HTTP 429 or 418, or what the half's ``limited`` calls one (Bybit's 403 and
retCode 10006, Kraken's ``EGeneral:Too many requests``) -- holds *every* request for the time
:func:`~candlecast.history.rates.hold_for` gives (``Retry-After``, the half's, or 60 s), counted
and logged once, and the request is retried; the half reads the exchange's weight headers into a
pause before the next request. A timeout, a transport error, another HTTP error or a malformed
answer fails the page (:class:`FetchFailed`); bars of an answer that are out of order or disagree
with what was asked are skipped. Every rejection is counted by reason (``/metrics``).

:class:`Historian` knows what to fetch: for each symbol the stream carries, the last ``bars``
bars of the base interval -- reaching back to the start of the current bar of the largest higher
interval that spans at most a day of base bars, so the hub's aggregates of the open bars are
whole -- and of every higher interval the exchange serves (paging backwards); after a reconnect,
the bars between the last one received before the drop and the first live one (paging forwards).

Runs in the event loop, in the feed's task group (:meth:`candlecast.feed.source.SourceFeed.run`), beside
the live stream, which never waits for it: the results reach the hub as a
:class:`~candlecast.feed.source.History` batch, merged in order. :meth:`RestClient.aclose` closes the
HTTP client; the feed calls it when its run ends.
"""

from __future__ import annotations

import email.utils
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import anyio
import httpx
import orjson

from ..formats.contract import HistoryFormat, Rate, Wanted, limited_of, rate_of
from ..model.candle import REASONS, Candle, MalformedMessage
from ..model.intervals import Interval, align, cover_span
from .pages import check_page, tagged
from .rates import Pacer, hold_for

__all__ = [
    "CONCURRENCY",
    "MAX_PAGES",
    "MAX_RETRY_AFTER",
    "REJECT_REASONS",
    "FetchFailed",
    "Historian",
    "RestClient",
    "RestStats",
    "live_owned",
    "retry_after",
]

log = logging.getLogger("candlecast.history")

#: Requests in flight at once, across every symbol and interval.
CONCURRENCY: Final = 4
#: Most pages one fetch asks for (a guard against a broker that pages forever).
MAX_PAGES: Final = 200
#: Longest ``Retry-After`` honoured as given (seconds); longer ones are capped.
MAX_RETRY_AFTER: Final = 600.0
#: Why REST answers or bars were rejected (``candlecast_history_rejected_total{reason}``):
#: ``http`` (an error status), ``timeout``, ``transport``, ``json``, the format's reasons, and
#: ``order`` / ``disagree`` for single bars (see :func:`candlecast.formats.rest.check_page`).
REJECT_REASONS: Final = ("http", "timeout", "transport", "json", *REASONS, "order", "disagree")


class FetchFailed(Exception):
    """A page could not be had (timeout, transport error, HTTP error, malformed answer)."""


@dataclass
class RestStats:
    """Counters for ``/metrics``; written in the event loop only."""

    requests: int = 0
    rate_limited: int = 0
    bars: int = 0
    backfills: int = 0
    fills: int = 0
    fill_failures: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REJECT_REASONS, 0))


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), if readable."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


class RestClient:
    """The broker's REST API through one history half. Create and use it in the event loop."""

    def __init__(
        self,
        half: HistoryFormat,
        base_url: str,
        *,
        upstream: str,
        timeout: float = 10.0,
        concurrency: int = CONCURRENCY,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.half = half
        self.upstream = upstream
        self.stats = RestStats()
        self.http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers={"accept": "application/json", "user-agent": "candlecast"},
            transport=transport,
            trust_env=False,
        )
        self._limiter = anyio.CapacityLimiter(concurrency)
        self.pacer = Pacer()  # the declared rates and the hold, in time.monotonic() seconds

    async def aclose(self) -> None:
        await self.http.aclose()

    def _reject(self, reason: str, detail: str) -> FetchFailed:
        self.stats.rejected[reason] = self.stats.rejected.get(reason, 0) + 1
        return FetchFailed(f"{reason}: {detail}")

    async def _slot(self, rate: Rate) -> None:
        """Wait until a request of ``rate`` may go (its slot taken): pacing, not synchronization."""
        while True:
            wait = self.pacer.wait(rate, time.monotonic())
            if wait <= 0:
                return
            await anyio.sleep(wait)  # the next slot of the rate, or the end of the hold

    async def page(
        self, symbol: str, interval: Interval, *, start: int | None, end: int | None, limit: int
    ) -> list[Candle]:
        """One page of bars, oldest first, the untrustworthy ones skipped (and counted).

        Waits for the request's slot of its rate (inside the concurrency cap, so a slot is a
        send), waits out a limit answer (every request does) and retries it; raises
        :class:`FetchFailed` for anything else that goes wrong."""
        request = self.half.request(symbol, interval, start=start, end=end, limit=limit, upstream=self.upstream)
        try:
            rate = rate_of(self.half, request)
        except Exception as exc:  # a plug-in's bug fails the page, never the feed
            raise self._reject("format", f"{request.path}: rate: {type(exc).__name__}: {exc}") from None
        while True:
            async with self._limiter:
                await self._slot(rate)
                self.stats.requests += 1
                try:
                    response = await self.http.get(request.path, params=dict(request.params))
                except httpx.TimeoutException as exc:
                    raise self._reject("timeout", f"{request.path}: {type(exc).__name__}") from None
                except httpx.TransportError as exc:
                    raise self._reject("transport", f"{request.path}: {type(exc).__name__}: {exc}") from None
                now, now_ms = time.monotonic(), time.time_ns() // 1_000_000
                status, headers = response.status_code, response.headers
                try:
                    body: object = orjson.loads(response.content)
                    bad_json: orjson.JSONDecodeError | None = None
                except orjson.JSONDecodeError as exc:
                    body, bad_json = None, exc
                try:
                    signal = limited_of(self.half, status, headers, body, now_ms)
                except Exception as exc:  # a plug-in's bug fails the page, never the feed
                    raise self._reject("format", f"{request.path}: limited: {type(exc).__name__}: {exc}") from None
                hold = hold_for(status, signal, retry_after(headers.get("retry-after"), time.time()))
                if hold is not None:
                    self.stats.rate_limited += 1
                    if self.pacer.hold(hold, now):
                        log.warning(
                            "history: %s answered %d (too many requests): none for %.1fs", request.path, status, hold
                        )
                    continue
                pause = self.half.pause(status, headers, now_ms)
                if pause > 0:
                    self.pacer.hold(pause, now)
                if status != 200:
                    raise self._reject("http", f"{request.path} answered {status}")
                if bad_json is not None:
                    raise self._reject("json", f"{request.path}: {bad_json}")
            try:
                candles = self.half.parse(symbol, interval, body)
            except MalformedMessage as exc:
                raise self._reject(exc.reason, f"{request.path}: {exc.detail}") from None
            except Exception as exc:  # a plug-in's bug fails the page, never the feed
                raise self._reject("format", f"{request.path}: {type(exc).__name__}: {exc}") from None
            kept, rejected = check_page(candles, symbol, interval)
            for reason in rejected:
                self.stats.rejected[reason] += 1
            return kept


class Historian:
    """What to fetch, for the start-up backfill and the gap fills (see the module docstring)."""

    def __init__(
        self, client: RestClient, wanted: Sequence[Wanted], *, base: Interval, higher: Sequence[Interval], bars: int
    ) -> None:
        self.client = client
        self.symbols = [w.symbol for w in wanted]
        self.base = base
        self.served = [i for i in higher if client.half.serves(i)]
        self.bars = bars
        self._cover = cover_span((i.ms for i in higher), base.ms, bars)  # its open bar is made whole

    async def backfill(self) -> dict[str, list[Candle]]:
        """Per symbol, its base bars then each served higher interval's (tagged with ``i``), the
        symbols fetched side by side; raises the first :class:`FetchFailed` once all are done."""
        out: dict[str, list[Candle]] = {}
        if self.bars <= 0:
            return out

        failed: list[FetchFailed] = []

        async def one(symbol: str) -> None:
            try:
                base = await self.back(symbol, self.base, self.bars, cover=self._cover)
                higher: list[Candle] = []
                for interval in self.served:
                    higher.extend(tagged(await self.back(symbol, interval, self.bars), interval.name))
            except FetchFailed as exc:
                failed.append(exc)
                return
            out[symbol] = base + higher

        async with anyio.create_task_group() as tg:
            for symbol in self.symbols:
                tg.start_soon(one, symbol)
        if failed:
            raise failed[0]
        return {s: out[s] for s in self.symbols if s in out}

    async def back(self, symbol: str, interval: Interval, count: int, *, cover: int = 0) -> list[Candle]:
        """The last ``count`` bars (at least back to the start of the ``cover`` ms bucket the
        newest one is in), paging backwards from the most recent."""
        client, max_limit = self.client, self.client.half.max_limit
        got: list[Candle] = []
        end: int | None = None
        target: int | None = None
        for _ in range(MAX_PAGES):
            need = count - len(got)
            if target is not None and got and got[0].ot > target:
                need = max(need, (int(got[0].ot) - target) // interval.ms)
            if need <= 0:
                break
            page = await client.page(symbol, interval, start=None, end=end, limit=min(max_limit, need))
            if end is not None:
                page = [c for c in page if c.ot <= end]
            if got:
                page = [c for c in page if c.ot < got[0].ot]
            if not page:
                break
            got = page + got
            if target is None and cover:
                newest = int(got[-1].ot)
                target = align(newest, cover)
            end = int(got[0].ot) - 1
        return got

    async def fill(self, symbol: str, since: int | float, until: int | float) -> list[Candle]:
        """Bars opening in ``[since, until)`` (the last bar before a drop, which the broker has
        finished meanwhile, up to the first live one), base first, then each served higher
        interval's bars that closed before ``until``."""
        base = [c for c in await self.forward(symbol, self.base, int(since), int(until)) if c.ot < until]
        higher: list[Candle] = []
        for interval in self.served:
            start = interval.start(since)
            bars = await self.forward(symbol, interval, start, int(until))
            higher.extend(tagged([c for c in bars if c.ot + interval.ms <= until], interval.name))
        return base + higher

    async def forward(self, symbol: str, interval: Interval, start: int, until: int) -> list[Candle]:
        """Bars from ``start`` on, paging forwards, until one opens at or after ``until``."""
        client, max_limit = self.client, self.client.half.max_limit
        got: list[Candle] = []
        for _ in range(MAX_PAGES):
            page = await client.page(symbol, interval, start=start, end=None, limit=max_limit)
            page = [c for c in page if c.ot >= start and (not got or c.ot > got[-1].ot)]
            if not page:
                break
            got.extend(page)
            if got[-1].ot >= until - interval.ms:
                break
            start = int(got[-1].ot) + interval.ms
        return got


def live_owned(
    candles: Sequence[Candle], first_live: Mapping[str, int | float], intervals: Mapping[str, int]
) -> list[Candle]:
    """``candles`` less what the live stream owns: base bars at or after the first live bar of
    their symbol, and higher-interval bars still open then (the hub aggregates those)."""
    out: list[Candle] = []
    for c in candles:
        first = first_live.get(c.s)
        if first is None:
            out.append(c)
        elif c.i is None:
            if c.ot < first:
                out.append(c)
        elif c.ot + intervals.get(c.i, 0) <= first:
            out.append(c)
    return out
