"""The dashboard in real headless Chromium (Playwright driving the system browser)."""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, WebSocketRoute, async_playwright

from candlecast.settings import Settings
from tests.conftest import DEADLINE, require_binary, require_chart_library
from tests.integration.harness import candlecast

OUT = Path(os.environ.get("CANDLECAST_TEST_OUTPUT", Path(__file__).resolve().parents[2] / "test-output"))
TIMEOUT_MS = DEADLINE * 1000
SIM = Settings(rate=60, symbols=("AAA", "BBB", "CCC", "DDD"), bar_seconds=1, history=200)
#: What Chromium logs, as console errors, for a refused token (401 from api/symbols, 403 before the
#: WebSocket upgrade) and for a server that is down; the page itself must log no error.
REFUSED = ("status of 401", "WebSocket connection to", "ERR_CONNECTION_REFUSED")


@pytest.fixture(autouse=True)
def _output_dir() -> None:
    OUT.mkdir(parents=True, exist_ok=True)


@asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    path = require_binary("chromium", env="CANDLECAST_CHROMIUM", default="/usr/bin/chromium")
    require_chart_library()
    async with async_playwright() as pw:
        b = await pw.chromium.launch(
            executable_path=path,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield b
        finally:
            await b.close()


class Errors:
    """Console errors and uncaught page errors, collected while the page runs."""

    def __init__(self, page: Page, *, allow: tuple[str, ...] = ()) -> None:
        self.messages: list[str] = []
        self.allow = allow
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.messages.append(f"pageerror: {exc}"))

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error" and not any(a in msg.text for a in self.allow):
            self.messages.append(f"console: {msg.text}")


async def last_bar(page: Page, symbol: str) -> Any:
    return await page.evaluate("(s) => window.candlecast.charts.get(s)?.series.data().at(-1) ?? null", symbol)


async def wait_live(page: Page, frames: int = 3) -> None:
    await page.wait_for_function(
        "(n) => window.candlecast && window.candlecast.status === 'live' && window.candlecast.frames > n",
        arg=frames,
        timeout=TIMEOUT_MS,
    )


async def open_live(b: Browser, url: str, *, width: int = 1280, height: int = 720) -> tuple[Page, Errors]:
    """A new page at ``url``, collecting errors, once the dashboard is live."""
    page = await b.new_page(viewport={"width": width, "height": height})
    errors = Errors(page)
    await page.goto(url)
    await wait_live(page)
    return page, errors


async def test_single_view_renders_and_the_last_bar_moves() -> None:
    async with candlecast(SIM) as cc, browser() as b:
        page, errors = await open_live(b, cc.url + "/?symbol=BBB")
        assert await page.locator("canvas").count() > 0
        before = await last_bar(page, "BBB")
        assert before is not None and before["high"] >= before["low"]
        await page.wait_for_function(
            "(prev) => JSON.stringify(window.candlecast.charts.get('BBB').series.data().at(-1)) !== prev",
            arg=await page.evaluate("() => JSON.stringify(window.candlecast.charts.get('BBB').series.data().at(-1))"),
            timeout=TIMEOUT_MS,
        )
        assert await page.locator("#status").text_content() == "live"
        await page.wait_for_function(
            "() => document.getElementById('latency').textContent.endsWith(' ms') "
            "&& !document.getElementById('latency').textContent.startsWith('–')",
            timeout=TIMEOUT_MS,
        )
        await page.screenshot(path=str(OUT / "dashboard-single.png"))
        assert errors.messages == []


async def test_grid_view_from_the_url_and_switching_symbols() -> None:
    async with candlecast(SIM) as cc, browser() as b:
        page, errors = await open_live(b, cc.url + "/?view=grid&symbols=AAA,CCC,DDD", height=800)
        await page.wait_for_function(
            "() => ['AAA','CCC','DDD'].every((s) => window.candlecast.charts.get(s)?.series.data().length > 0)",
            timeout=TIMEOUT_MS,
        )
        assert await page.locator("article.card").count() == 3
        assert await page.locator("#pick-grid input:checked").count() == 3
        await page.screenshot(path=str(OUT / "dashboard-grid.png"))
        # uncheck one symbol: the URL follows
        await page.locator("#pick-grid input[value=CCC]").uncheck()
        await page.wait_for_function("() => location.search.includes('symbols=AAA%2CDDD')", timeout=TIMEOUT_MS)
        assert await page.locator("article.card").count() == 2
        # to the single view, then pick another symbol with the keyboard-accessible select
        await page.locator("#view-single").click()
        await page.locator("#symbol").select_option("DDD")
        await page.wait_for_function(
            "() => new URLSearchParams(location.search).get('symbol') === 'DDD'", timeout=TIMEOUT_MS
        )
        await page.wait_for_function(
            "() => window.candlecast.charts.get('DDD')?.series.data().length > 0", timeout=TIMEOUT_MS
        )
        assert await page.locator("article.card").count() == 1
        assert errors.messages == []


async def test_page_reconnects_after_a_server_restart_without_duplicate_bars() -> None:
    async with browser() as b:
        page = await b.new_page()
        # the browser logs refused WebSocket connections while the server is down; nothing else
        errors = Errors(page, allow=("WebSocket connection to", "ERR_CONNECTION_REFUSED"))
        async with candlecast(SIM) as cc:
            port = cc.port
            await page.goto(cc.url + "/?symbol=AAA")
            await wait_live(page)
        await page.wait_for_function("() => window.candlecast.status !== 'live'", timeout=TIMEOUT_MS)
        frames = await page.evaluate("() => window.candlecast.frames")
        async with candlecast(SIM, port=port):
            await wait_live(page, frames + 3)
            assert await page.locator("#notice").is_hidden(), "live again: the outage notice is cleared"
            times = await page.evaluate("() => window.candlecast.charts.get('AAA').series.data().map((b) => b.time)")
        assert len(times) > 0
        assert times == sorted(set(times)), "bars must be unique and ascending after the re-sync"
        assert errors.messages == []


async def test_page_says_so_when_the_chart_library_is_missing(tmp_path: Path) -> None:
    settings = Settings(rate=20, symbols=("AAA",), chart_js=str(tmp_path / "missing.mjs"))
    async with candlecast(settings) as cc, browser() as b:
        page = await b.new_page()
        await page.goto(cc.url + "/")
        notice = page.locator("#notice")
        await notice.wait_for(state="visible", timeout=TIMEOUT_MS)
        assert "npm ci" in (await notice.text_content() or "")


async def notice_says(page: Page, text: str) -> str:
    """Wait until the visible notice contains ``text`` (case-insensitive); the notice."""
    await page.wait_for_function(
        "(t) => { const n = document.getElementById('notice'); "
        "return !n.hidden && n.textContent.toLowerCase().includes(t); }",
        arg=text.lower(),
        timeout=TIMEOUT_MS,
    )
    return await page.locator("#notice").text_content() or ""


@pytest.mark.parametrize("query", ["?token=wrong", "?symbol=AAA&token=wrong"])
async def test_page_says_so_when_the_token_is_refused(query: str) -> None:
    settings = dataclasses.replace(SIM, tokens=("s3cret",))
    async with candlecast(settings) as cc, browser() as b:
        page = await b.new_page()
        errors = Errors(page, allow=REFUSED)
        await page.goto(cc.url + "/" + query)
        text = await notice_says(page, "refused")  # the final explanation, whatever came first
        assert "token" in text
        assert await page.evaluate("() => window.candlecast.frames") == 0
        assert await page.locator("#status").text_content() != "live"
        assert errors.messages == []


async def test_a_refused_token_is_explained_after_a_reconnect_and_the_notice_clears_on_recovery() -> None:
    """Only the WebSocket fails here (403 before the upgrade, seen as 1006): the page asks api/symbols."""
    good = dataclasses.replace(SIM, tokens=("s3cret",))
    async with browser() as b:
        page = await b.new_page()
        errors = Errors(page, allow=REFUSED)
        async with candlecast(good) as cc:
            port = cc.port
            await page.goto(cc.url + "/?symbol=AAA&token=s3cret")
            await wait_live(page)
            assert await page.locator("#notice").is_hidden()
        async with candlecast(dataclasses.replace(SIM, tokens=("rotated",)), port=port):
            assert "token" in await notice_says(page, "refused")
        frames = await page.evaluate("() => window.candlecast.frames")
        async with candlecast(good, port=port):
            await wait_live(page, frames + 1)
            assert await page.locator("#notice").is_hidden()
        assert errors.messages == []


async def test_frames_that_are_not_json_are_counted_and_error_frames_are_shown() -> None:
    routes: list[WebSocketRoute] = []

    def forward(ws: WebSocketRoute) -> None:
        ws.connect_to_server()  # both directions are forwarded; the test adds frames of its own
        routes.append(ws)

    async with candlecast(SIM) as cc, browser() as b:
        page = await b.new_page()
        errors = Errors(page)
        await page.route_web_socket(re.compile(r"/ws\?"), forward)
        await page.goto(cc.url + "/?symbol=AAA")
        await wait_live(page)
        routes[-1].send("this is not JSON {")
        routes[-1].send("null")
        routes[-1].send('{"op":"error","error":"bad_op","detail":"unknown op \'frobnicate\'"}')
        text = await notice_says(page, "unknown op 'frobnicate'")
        assert "bad_op" in text
        await page.wait_for_function("() => window.candlecast.badFrames === 2", timeout=TIMEOUT_MS)
        frames = await page.evaluate("() => window.candlecast.frames")
        await wait_live(page, frames + 3)  # still live on the same socket
        assert len(routes) == 1
        assert errors.messages == []


CHART_COLOURS = """() => {
  const css = getComputedStyle(document.documentElement);
  const v = (name) => css.getPropertyValue(name).trim();
  const c = window.candlecast.charts.get('AAA');
  const chart = c.chart.options(), series = c.series.options();
  const volume = c.volume.data().at(-1);
  const bar = c.series.data().at(-1);
  return {
    css: { up: v('--up'), down: v('--down'), bg: v('--chart-bg'), text: v('--chart-text'), grid: v('--chart-grid'),
           border: v('--chart-border'), volume: bar.close >= bar.open ? v('--volume-up') : v('--volume-down') },
    chart: { up: series.upColor, down: series.downColor, bg: chart.layout.background.color,
             text: chart.layout.textColor, grid: chart.grid.vertLines.color,
             border: chart.timeScale.borderColor, volume: volume.color },
  };
}"""


async def test_chart_colours_come_from_the_stylesheet() -> None:
    async with candlecast(SIM) as cc, browser() as b:
        page, errors = await open_live(b, cc.url + "/?symbol=AAA")
        await page.wait_for_function("() => window.candlecast.charts.get('AAA')?.volume !== null", timeout=TIMEOUT_MS)
        colours = await page.evaluate(CHART_COLOURS)
        assert colours["chart"] == colours["css"]
        assert all(colours["css"].values()), "every chart colour is defined in style.css"
        # restyle the page and rebuild the charts (to the grid view): they follow the stylesheet
        await page.evaluate("() => document.documentElement.style.setProperty('--up', 'rgb(1, 2, 3)')")
        await page.locator("#view-grid").click()
        await page.wait_for_function(
            "() => window.candlecast.charts.get('AAA')?.series.options().upColor === 'rgb(1, 2, 3)'",
            timeout=TIMEOUT_MS,
        )
        assert errors.messages == []


async def test_the_page_works_with_a_token_that_never_appears_in_a_url_it_requests() -> None:
    """The token comes in the page's #fragment; api/* get it in a header, the WebSocket in its
    first message: no URL the page requests carries it, and a wrong one is still explained."""
    secret = "jwt-secret-" + "0123456789abcdef" * 3
    token = jwt.encode({"exp": time.time() + 300, "symbols": ["AAA", "BBB"]}, secret, algorithm="HS256")
    settings = dataclasses.replace(SIM, jwt_secret=secret)
    async with candlecast(settings) as cc, browser() as b:
        page = await b.new_page()
        errors = Errors(page)
        urls: list[str] = []
        page.on("request", lambda request: urls.append(request.url))
        page.on("websocket", lambda ws: urls.append(ws.url))
        await page.goto(cc.url + f"/?symbol=AAA#token={token}")
        await wait_live(page)
        assert await page.evaluate("() => window.candlecast.known") == ["AAA", "BBB"]  # what the token allows
        assert any("/ws?" in u for u in urls) and any("api/symbols" in u for u in urls)
        assert not any(token in u.split("#")[0] for u in urls), urls
        assert errors.messages == []
        # a wrong token: refused over the WebSocket (an error frame, then 1008), and said so
        page = await b.new_page()
        errors = Errors(page, allow=REFUSED)
        await page.goto(cc.url + f"/?symbol=AAA#token={token}x")
        # the error frame is shown first, then the 1008 close says the connection was refused
        assert "token" in await notice_says(page, "refused")
        assert errors.messages == []


# -- intervals: the switcher, re-seeding over the same socket, the legend -------------------------


async def api_count(cc: Any, symbol: str, interval: str, limit: int) -> int:
    """How many bars the server has for ``limit`` (what the page's ``history=limit`` gets)."""
    async with httpx.AsyncClient() as http:
        res = await http.get(cc.url + "/api/candles", params={"symbol": symbol, "interval": interval, "limit": limit})
    assert res.status_code == 200, res.text
    return len(res.json())


async def wait_seeded(page: Page, stream: str) -> dict[str, Any]:
    """Wait until the chart of ``stream`` ("AAA" or "AAA@5m") is seeded; its bar count and times."""
    await page.wait_for_function(
        "(s) => { const c = window.candlecast.charts.get(s); return c && c.seeded && c.awaiting === null; }",
        arg=stream,
        timeout=TIMEOUT_MS,
    )
    chart: dict[str, Any] = await page.evaluate(
        "(s) => { const c = window.candlecast.charts.get(s); "
        "return {seededWith: c.seededWith, times: c.series.data().map((b) => b.time), interval: c.interval}; }",
        stream,
    )
    return chart


def seconds(interval: str) -> int:
    return int(interval[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[interval[-1]]


async def assert_reseeded(page: Page, cc: Any, symbol: str, interval: str, history: int) -> None:
    """The chart of ``symbol@interval`` was seeded with the server's bars of that interval."""
    chart = await wait_seeded(page, f"{symbol}@{interval}")
    assert chart["interval"] == interval
    assert chart["seededWith"] == await api_count(cc, symbol, interval, history)
    assert len(chart["times"]) >= chart["seededWith"]  # live bars may have followed
    assert all(t % seconds(interval) == 0 for t in chart["times"]), chart["times"][:5]
    assert chart["times"] == sorted(set(chart["times"]))


async def test_switching_the_interval_in_the_single_view_reseeds_over_the_same_socket() -> None:
    async with candlecast(SIM) as cc, browser() as b:
        page = await b.new_page(viewport={"width": 1280, "height": 720})
        errors = Errors(page)
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        await page.goto(cc.url + "/?symbol=AAA&history=50")
        await wait_live(page)
        base = await wait_seeded(page, "AAA")
        assert base["seededWith"] == await api_count(cc, "AAA", "1s", 50)
        assert await page.locator(".intervals button[aria-pressed=true]").text_content() == "1s"

        await page.locator(".intervals button[data-interval='15m']").click()
        await assert_reseeded(page, cc, "AAA", "15m", 50)
        assert await page.evaluate("() => window.candlecast.charts.has('AAA')") is False
        query = await page.evaluate("() => Object.fromEntries(new URLSearchParams(location.search))")
        assert query == {"symbol": "AAA", "interval": "15m", "history": "50"}
        assert await page.locator(".intervals button[aria-pressed=true]").text_content() == "15m"
        await page.screenshot(path=str(OUT / "dashboard-interval-single.png"))
        # to 1d and back to the base: the same socket all along
        await page.locator(".intervals button[data-interval='1d']").click()
        await assert_reseeded(page, cc, "AAA", "1d", 50)
        await page.locator(".intervals button[data-interval='1s']").click()
        await page.wait_for_function("() => !location.search.includes('interval=')", timeout=TIMEOUT_MS)
        assert (await wait_seeded(page, "AAA"))["seededWith"] == await api_count(cc, "AAA", "1s", 50)
        await page.locator(".intervals button[data-interval='1h']").click()
        await assert_reseeded(page, cc, "AAA", "1h", 50)
        assert len(sockets) == 1, sockets
        assert "symbols=AAA&" in sockets[0]

        await page.reload()  # the URL restores the choice: the new socket asks for AAA@1h
        await wait_live(page)
        await assert_reseeded(page, cc, "AAA", "1h", 50)
        assert await page.locator(".intervals button[aria-pressed=true]").text_content() == "1h"
        assert len(sockets) == 2 and "symbols=AAA%401h&" in sockets[1], sockets
        assert errors.messages == []


async def test_switching_the_interval_of_one_grid_chart_leaves_the_others_alone() -> None:
    async with candlecast(SIM) as cc, browser() as b:
        page = await b.new_page(viewport={"width": 1280, "height": 800})
        errors = Errors(page)
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        await page.goto(cc.url + "/?view=grid&symbols=AAA,BBB@5m,CCC&history=40")
        await wait_live(page)
        await assert_reseeded(page, cc, "BBB", "5m", 40)
        await wait_seeded(page, "AAA")
        await wait_seeded(page, "CCC")
        ccc = page.locator("article.card", has_text="CCC")
        await ccc.locator(".intervals button[data-interval='1h']").click()
        await assert_reseeded(page, cc, "CCC", "1h", 40)
        await page.wait_for_function(
            "() => new URLSearchParams(location.search).get('symbols') === 'AAA,BBB@5m,CCC@1h'", timeout=TIMEOUT_MS
        )
        # only CCC was re-seeded (once more); the others go on, live on the same socket
        frames = await page.evaluate("() => window.candlecast.frames")
        await wait_live(page, frames + 3)
        seeds = await page.evaluate(
            "() => Object.fromEntries([...window.candlecast.charts].map(([k, c]) => [k, c.seeds]))"
        )
        assert seeds == {"AAA": 1, "BBB@5m": 1, "CCC@1h": 2}
        assert await page.evaluate("() => [...window.candlecast.charts.keys()].sort()") == ["AAA", "BBB@5m", "CCC@1h"]
        pressed = await page.locator(".intervals button[aria-pressed=true]").all_text_contents()
        assert pressed == ["1s", "5m", "1h"]
        assert len(sockets) == 1, sockets
        await page.screenshot(path=str(OUT / "dashboard-interval-grid.png"))

        await page.reload()
        await wait_live(page)
        await assert_reseeded(page, cc, "CCC", "1h", 40)
        assert await page.locator(".intervals button[aria-pressed=true]").all_text_contents() == pressed
        assert errors.messages == []


async def test_the_interval_switcher_works_with_the_keyboard() -> None:
    async with candlecast(SIM) as cc, browser() as b:
        page, errors = await open_live(b, cc.url + "/?symbol=AAA&history=30")
        await wait_seeded(page, "AAA")
        # Tab from the top of the page until the switcher has the focus: one stop, the pressed button
        focused = ""
        for _ in range(10):
            await page.keyboard.press("Tab")
            focused = await page.evaluate("() => document.activeElement?.closest('.intervals') ? 'switcher' : ''")
            if focused:
                break
        assert focused == "switcher"
        assert await page.evaluate("() => document.activeElement.getAttribute('aria-pressed')") == "true"
        assert await page.evaluate("() => document.activeElement.matches(':focus-visible')")
        await page.keyboard.press("ArrowRight")  # 1s -> 1m: focus moves, nothing switches yet
        assert await page.evaluate("() => document.activeElement.dataset.interval") == "1m"
        await page.keyboard.press("Enter")
        await assert_reseeded(page, cc, "AAA", "1m", 30)
        await page.keyboard.press("ArrowRight")
        await page.keyboard.press("Space")
        await assert_reseeded(page, cc, "AAA", "5m", 30)
        await page.keyboard.press("End")  # the last interval; Home: the first
        assert await page.evaluate("() => document.activeElement.dataset.interval") == "1d"
        await page.keyboard.press("Home")
        assert await page.evaluate("() => document.activeElement.dataset.interval") == "1s"
        assert await page.evaluate("() => new URLSearchParams(location.search).get('interval')") == "5m"
        assert errors.messages == []


def decimals(x: float) -> int:
    exponent = Decimal(repr(x)).as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


LEGEND = """(x) => {
  const c = window.candlecast.charts.get('AAA@1h');
  const text = (k) => c.legend.querySelector(`[data-k="${k}"]`)?.textContent ?? null;
  const time = c.chart.timeScale().coordinateToTime(x);
  const data = c.series.data();
  return {
    time, shown: c.shown?.time ?? null, last: data.at(-1), bar: data.find((b) => b.time === time) ?? null,
    precision: window.candlecast.precision.get('AAA'), format: c.series.options().priceFormat,
    prices: data.flatMap((b) => [b.open, b.high, b.low, b.close]),
    legend: { O: text('O'), H: text('H'), L: text('L'), C: text('C'), V: text('V'), change: text('change') },
  };
}"""


def legend_of(bar: dict[str, float], p: int) -> dict[str, str]:
    change = bar["close"] - bar["open"]
    if round(change, p) == 0:
        change = 0.0
    sign = "+" if change > 0 else ""
    pct = change / bar["open"] * 100
    return {
        "O": f"{bar['open']:.{p}f}",
        "H": f"{bar['high']:.{p}f}",
        "L": f"{bar['low']:.{p}f}",
        "C": f"{bar['close']:.{p}f}",
        "change": f"{sign}{change:.{p}f} ({sign}{pct:.2f}%)",
    }


def decimals_shown(text: str) -> int:
    number = text.strip().split()[0]
    return len(number.split(".")[1]) if "." in number else 0


async def test_the_legend_shows_the_bar_under_the_cursor_with_the_symbols_precision() -> None:
    async with candlecast(SIM) as cc, browser() as b:
        # 1 h bars: no new bar appears under the cursor while the test looks
        page, errors = await open_live(b, cc.url + "/?symbol=AAA&interval=1h&history=100")
        await wait_seeded(page, "AAA@1h")
        box = await page.locator(".plot").bounding_box()
        assert box is not None
        x = box["width"] * 0.6
        await page.mouse.move(box["x"] + x, box["y"] + box["height"] * 0.4)
        await page.wait_for_function("() => window.candlecast.charts.get('AAA@1h').hover !== null", timeout=TIMEOUT_MS)
        seen = await page.evaluate(LEGEND, x)
        p = seen["precision"]
        assert max(decimals(v) for v in seen["prices"]) <= p <= 8
        assert seen["format"]["precision"] == p and seen["format"]["minMove"] == pytest.approx(10**-p)
        assert seen["bar"] is not None and seen["time"] != seen["last"]["time"], "an older bar is under the cursor"
        assert seen["shown"] == seen["time"]
        legend = seen["legend"]
        assert legend.pop("V")  # the bar's volume, compact
        assert legend == legend_of(seen["bar"], p)
        await page.screenshot(path=str(OUT / "dashboard-legend.png"))
        # off the chart: the legend shows the latest bar
        await page.mouse.move(1, 1)
        await page.wait_for_function("() => window.candlecast.charts.get('AAA@1h').hover === null", timeout=TIMEOUT_MS)
        seen = await page.evaluate(LEGEND, x)
        p = seen["precision"]  # more decimals may have been seen since
        assert seen["shown"] == seen["last"]["time"]
        legend = seen["legend"]
        legend.pop("V")
        assert legend == legend_of(seen["last"], p)
        header = await page.locator(".card .last").text_content()  # live: its value moves on
        assert header is not None and decimals_shown(header) == p, "the header price uses the precision"
        assert errors.messages == []
