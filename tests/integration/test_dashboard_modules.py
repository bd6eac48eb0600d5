"""The dashboard's ES modules: in real headless Chromium the page loads only modules the server
serves; the WebSocket client module (static/client.js) works with no DOM, in Node against a real
server and in a browser worker."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import anyio
from playwright.async_api import Request, Route

from tests.conftest import DEADLINE, require_binary
from tests.integration.harness import candlecast
from tests.integration.test_dashboard import SIM, TIMEOUT_MS, Errors, browser

STATIC = Path(__file__).resolve().parents[2] / "service/candlecast/static"


async def test_the_page_loads_every_module_of_static_and_nothing_else() -> None:
    """Each top-level .js of static/ is imported (none is dead), with the chart module from
    vendor/, all answered 200 by the server itself, by relative URL; no request fails."""
    async with candlecast(SIM) as cc, browser() as b:
        page = await b.new_page()
        errors = Errors(page)
        scripts: list[str] = []
        failed: list[str] = []

        async def finished(request: Request) -> None:
            response = await request.response()
            if response is None or response.status != 200:
                failed.append(f"{request.url} {response and response.status}")
            if request.resource_type == "script":
                scripts.append(request.url)

        page.on("requestfinished", finished)
        page.on("requestfailed", lambda request: failed.append(f"{request.url} {request.failure}"))
        await page.goto(cc.url + "/?symbol=AAA")
        await page.wait_for_function(
            "() => window.candlecast?.status === 'live' && window.candlecast.charts.get('AAA')?.seeded",
            timeout=TIMEOUT_MS,
        )
        expected = {f"{cc.url}/static/{p.name}" for p in STATIC.glob("*.js")}
        expected.add(f"{cc.url}/vendor/lightweight-charts.mjs")
        assert len(expected) >= 7  # app, client, chart, legend, switcher, views + the library
        assert set(scripts) == expected
        assert failed == []
        assert errors.messages == []


#: A script for Node (22+, or 20 with --experimental-websocket): a runtime with no DOM at all.
NODE_CLIENT = """
import { BACKOFF, CandlecastClient, backoffDelay, streamOf } from "./client.mjs";

const [base, token] = process.argv.slice(2);
const log = { dom: [typeof document, typeof window], statuses: [], snapshots: [], candles: {}, replies: [] };
const client = new CandlecastClient(base, { token, history: 5, batch: true });
const done = (extra) => {
  client.close();
  console.log(JSON.stringify({ ...log, ...extra }));
  process.exit(0);
};
log.backoff = [backoffDelay(0, BACKOFF, () => 0), backoffDelay(1, BACKOFF, () => 0.999), backoffDelay(30)];
log.streamOf = [streamOf({ s: "A" }), streamOf({ s: "A", i: "5m" })];
let afterUnsubscribe = 0;
client.on("status", ({ status }) => log.statuses.push(status));
client.on("reply", ({ message }) => {
  log.replies.push(message);
  if (message.op === "unsubscribed") afterUnsubscribe = 1;
});
client.on("error", (e) => done({ failed: `server error ${e.error}: ${e.detail}` }));
client.on("close", (e) => done({ failed: `closed ${e.code} ${e.reason}` }));
client.on("snapshot", ({ stream, candles }) => {
  log.snapshots.push({ stream, n: candles.length, streams: [...new Set(candles.map(streamOf))] });
  if (stream === "AAA") {
    log.subscribeId = client.subscribe(["BBB@5m"]);
    log.awaiting = client.streamState("BBB@5m");
  }
  if (stream === "BBB@5m") log.unsubscribeId = client.unsubscribe(["AAA"]);
});
client.on("candles", ({ stream, candles }) => {
  log.candles[stream] = (log.candles[stream] ?? 0) + candles.length;
  if (afterUnsubscribe && stream === "BBB@5m" && ++afterUnsubscribe > 3) done({ streams: client.streams });
});
log.symbols = await client.fetchSymbols();
client.connect(["AAA"]);
"""


async def test_the_client_module_works_without_the_dom_in_node(tmp_path: Path) -> None:
    """client.js in Node (no document, no window) against a real server that needs a token:
    auth by first message, snapshot, live candles, subscribe with an id (frames dropped until
    its reply, then the new stream's snapshot), unsubscribe, close; capped, jittered backoff."""
    node = require_binary("node")
    (tmp_path / "client.mjs").write_bytes((STATIC / "client.js").read_bytes())
    (tmp_path / "run.mjs").write_text(NODE_CLIENT)
    probe = await anyio.run_process([node, "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"], check=False)
    flags = [] if probe.returncode == 0 else ["--experimental-websocket"]
    settings = dataclasses.replace(SIM, tokens=("s3cret",))
    async with candlecast(settings) as cc:
        with anyio.fail_after(DEADLINE):
            done = await anyio.run_process([node, *flags, str(tmp_path / "run.mjs"), cc.url + "/", "s3cret"])
    log: dict[str, Any] = json.loads(done.stdout)
    assert "failed" not in log, log
    assert log["dom"] == ["undefined", "undefined"]
    assert log["symbols"]["status"] == 200 and log["symbols"]["symbols"] == ["AAA", "BBB", "CCC", "DDD"]
    assert log["symbols"]["intervals"][0] == "1s"
    assert log["statuses"][:2] == ["connecting", "open"] and log["statuses"][-1] == "closed"
    first, second = log["snapshots"][:2]
    assert first["stream"] == "AAA" and first["streams"] == ["AAA"] and 1 <= first["n"] <= 5
    assert second["stream"] == "BBB@5m" and second["streams"] == ["BBB@5m"] and 1 <= second["n"] <= 5
    assert isinstance(log["subscribeId"], int)
    assert log["awaiting"] == {"seeded": False, "awaiting": log["subscribeId"]}
    subscribed = [r for r in log["replies"] if r["op"] == "subscribed"]
    assert subscribed and subscribed[0]["id"] == log["subscribeId"]
    assert log["unsubscribeId"] == log["subscribeId"] + 1
    assert log["streams"] == ["BBB@5m"]
    assert log["candles"]["BBB@5m"] >= 3  # three batches at least after the unsubscribe reply
    assert log["backoff"][0] == 250 and 990 < log["backoff"][1] < 1000 and 7500 <= log["backoff"][2] < 15000
    assert log["streamOf"] == ["A", "A@5m"]


WORKER = """
import { CandlecastClient } from "./client.js";

self.onmessage = async (event) => {
  const client = new CandlecastClient(new URL("..", self.location.href), { token: event.data.token });
  postMessage({ dom: [typeof document, typeof window], symbols: await client.fetchSymbols() });
};
"""


async def test_the_client_module_loads_in_a_browser_worker_and_sends_the_token_in_a_header() -> None:
    """The page's own client.js, imported by a module worker (no document, no window), asks
    api/symbols with the token in an Authorization header (a wrong token: 401), no token in a URL."""
    settings = dataclasses.replace(SIM, tokens=("s3cret",))
    async with candlecast(settings) as cc, browser() as b:
        page = await b.new_page()
        errors = Errors(page, allow=("status of 401",))
        urls: list[str] = []
        page.on("request", lambda request: urls.append(request.url))

        async def serve_worker(route: Route) -> None:
            await route.fulfill(status=200, content_type="text/javascript", body=WORKER)

        await page.route("**/static/worker-under-test.js", serve_worker)
        await page.goto(cc.url + "/?symbol=AAA")
        ask = """(token) => new Promise((resolve) => {
          const w = new Worker("static/worker-under-test.js", { type: "module" });
          w.onmessage = (e) => { resolve(e.data); w.terminate(); };
          w.onerror = (e) => resolve({ failed: e.message || "worker error" });
          w.postMessage({ token });
        })"""
        good = await page.evaluate(ask, "s3cret")
        assert good == {
            "dom": ["undefined", "undefined"],
            "symbols": {
                "status": 200,
                "symbols": ["AAA", "BBB", "CCC", "DDD"],
                "intervals": good["symbols"]["intervals"],
            },
        }
        assert (await page.evaluate(ask, "wrong"))["symbols"] == {"status": 401, "symbols": [], "intervals": []}
        assert f"{cc.url}/static/client.js" in urls
        assert not any("s3cret" in u or "wrong" in u for u in urls), urls
        assert errors.messages == []
