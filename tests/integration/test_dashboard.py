"""The dashboard in real headless Chromium (Playwright driving the system browser)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from service.settings import DEFAULT_CHART_JS, Settings
from tests.conftest import DEADLINE, IN_CI, require_binary
from tests.integration.harness import candlecast

OUT = Path(os.environ.get("CANDLECAST_TEST_OUTPUT", Path(__file__).resolve().parents[2] / "test-output"))
TIMEOUT_MS = DEADLINE * 1000
SIM = Settings(rate=60, symbols=("AAA", "BBB", "CCC", "DDD"), bar_seconds=1, history=200)


@pytest.fixture(autouse=True)
def _output_dir() -> None:
    OUT.mkdir(parents=True, exist_ok=True)


def require_chart_library() -> None:
    if DEFAULT_CHART_JS.is_file():
        return
    message = f"the chart library is not installed ({DEFAULT_CHART_JS}); run `npm ci`"
    if IN_CI:
        pytest.fail(f"CI=true: {message}")
    pytest.skip(message)


@asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    path = require_binary("chromium", env="CANDLECAST_CHROMIUM", default="/usr/bin/chromium")
    require_chart_library()
    async with async_playwright() as pw:
        b = await pw.chromium.launch(
            executable_path=path,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
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
        arg=frames, timeout=TIMEOUT_MS,
    )  # fmt: skip


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
        )  # fmt: skip
        assert await page.locator("#status").text_content() == "live"
        await page.wait_for_function("() => document.getElementById('latency').textContent.endsWith(' ms') "
                                     "&& !document.getElementById('latency').textContent.startsWith('–')",
                                     timeout=TIMEOUT_MS)  # fmt: skip
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
        await page.wait_for_function("() => new URLSearchParams(location.search).get('symbol') === 'DDD'",
                                     timeout=TIMEOUT_MS)  # fmt: skip
        await page.wait_for_function("() => window.candlecast.charts.get('DDD')?.series.data().length > 0",
                                     timeout=TIMEOUT_MS)  # fmt: skip
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
