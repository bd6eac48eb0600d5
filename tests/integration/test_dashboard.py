"""The dashboard in real headless Chromium (Playwright driving the system browser)."""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

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
        text = await notice_says(page, "token")
        assert "refused" in text
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
            assert "refused" in await notice_says(page, "token")
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
        assert "refused" in await notice_says(page, "token")
        assert errors.messages == []
