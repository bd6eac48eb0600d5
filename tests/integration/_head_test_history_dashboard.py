"""The dashboard in headless Chromium keeps its history across a restart of candlecast: the new
process backfills from the (fake) exchange's REST API, and the page shows every bar again."""

from __future__ import annotations

from tests.integration.exchange import MINUTE, fake_exchange
from tests.integration.harness import candlecast
from tests.integration._head_test_dashboard import TIMEOUT_MS, Errors, browser, wait_live
from tests.integration.test_history import settings_for

BARS = 120


async def test_after_a_restart_the_dashboard_shows_the_full_history_again() -> None:
    """Bars made while candlecast was down are there too: the chart equals the exchange's last
    --history bars, times unique and ascending."""
    async with fake_exchange("BTCUSDT") as exchange, browser() as b:
        settings = settings_for(exchange, intervals=("1m",), history=BARS, backfill=BARS)
        page = await b.new_page()
        errors = Errors(page, allow=("WebSocket connection to", "ERR_CONNECTION_REFUSED"))
        url_query = f"/?symbol=BTCUSDT&history={BARS}"
        async with candlecast(settings) as cc:
            port = cc.port
            await exchange.wait_connected()
            await exchange.tick()
            await page.goto(cc.url + url_query)
            await wait_live(page, 0)
            expected = [b.ot // 1000 for b in exchange.bars("BTCUSDT", "1m", BARS)]
            await page.wait_for_function(
                "(want) => JSON.stringify(window.candlecast.charts.get('BTCUSDT').series.data().map((b) => b.time))"
                " === JSON.stringify(want)",
                arg=expected,
                timeout=TIMEOUT_MS,
            )
        await page.wait_for_function("() => window.candlecast.status !== 'live'", timeout=TIMEOUT_MS)
        await exchange.advance(5 * MINUTE)  # the exchange goes on while candlecast is down
        async with candlecast(settings, port=port):
            await exchange.wait_connected()
            await exchange.tick()
            expected = [b.ot // 1000 for b in exchange.bars("BTCUSDT", "1m", BARS)]
            closes = [b.c for b in exchange.bars("BTCUSDT", "1m", BARS)]
            await page.wait_for_function(
                "(want) => JSON.stringify(window.candlecast.charts.get('BTCUSDT').series.data().map((b) => b.time))"
                " === JSON.stringify(want)",
                arg=expected,
                timeout=TIMEOUT_MS,
            )
            shown = await page.evaluate(
                "() => window.candlecast.charts.get('BTCUSDT').series.data().map((b) => b.close)"
            )
        assert shown == closes
        assert errors.messages == []
