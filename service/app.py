"""The application: ``create_app(settings)`` and the lifespan that owns every background task.

Startup (in the lifespan): hub, bridge, producer thread, and the pump task (bridge -> hub) in
the lifespan's task group. Shutdown, in order: the hub ends every client with 1001, the
producer thread is stopped (stop event, ``source.wake()``, bridge closed), and the pump ends
on the bridge's end of stream. Each step is idempotent, so an earlier drain (see
:mod:`service.server`) makes these no-ops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypedDict

import anyio
import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from . import sources
from .bridge import Bridge, ProducerThread
from .candles import Candle
from .hub import Hub
from .metrics import Collector, Stats, make_registry, render
from .settings import Settings
from .sources.base import Normalizer, Source
from .ws import StreamEndpoint, token_ok

log = logging.getLogger(__name__)

Ingest = tuple[Candle, float]  # a candle and the time.monotonic() the producer saw it at
#: Most candles published per pump step before yielding to the client writers. Each step is
#: also capped at half the per-client bound, so a client that keeps up always has room.
PUMP_BATCH = 512
STATIC = Path(__file__).parent / "static"


class State(TypedDict):
    settings: Settings
    hub: Hub
    stats: Stats
    source: Source
    registry: Any


async def pump(bridge: Bridge[Ingest], hub: Hub) -> None:
    """Bridge -> hub, until the bridge ends. Yields to the loop after every batch."""
    publish = hub.publish
    limit = max(1, min(PUMP_BATCH, hub.client_queue // 2))
    while True:
        try:
            batch = await bridge.get_batch(limit)
        except anyio.EndOfStream:
            return
        for candle, received in batch:
            publish(candle, received)
        await anyio.lowlevel.checkpoint()


def create_app(settings: Settings, *, source_factory: Callable[[Settings], Source] = sources.build) -> Starlette:
    """The ASGI app. Nothing starts until the lifespan does."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        stats = Stats()
        hub = Hub(history=settings.history, client_queue=settings.client_queue,
                  max_clients=settings.max_clients, stats=stats)  # fmt: skip
        source = source_factory(settings)
        bridge: Bridge[Ingest] = Bridge(settings.bridge_size)
        put = bridge.put
        monotonic = time.monotonic

        def emit(candle: Candle) -> None:
            put((candle, monotonic()))

        producer = ProducerThread(source, emit, bridge)
        normalizer: Normalizer | None = getattr(source, "normalizer", None)
        registry = make_registry(Collector(stats, hub, bridge, source.upstream, normalizer))  # type: ignore[arg-type]
        app.state.hub = hub  # for the server's drain on SIGTERM
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump, bridge, hub, name="candlecast-pump")
            producer.start()
            log.info("candlecast: source %s started", settings.source)
            try:
                yield {"settings": settings, "hub": hub, "stats": stats, "source": source, "registry": registry}
            finally:
                hub.close()
                with anyio.CancelScope(shield=True):
                    await producer.stop()
                log.info("candlecast: stopped")

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    chart_js = anyio.Path(settings.chart_js)
    if not Path(settings.chart_js).is_file():
        log.warning(
            "dashboard: chart library not found at %s; run `npm ci` in the candlecast checkout "
            "(or set --chart-js / CANDLECAST_CHART_JS); the page will say so",
            settings.chart_js,
        )

    async def vendor_chart(request: Request) -> Response:
        if not await chart_js.is_file():
            return PlainTextResponse("// chart library missing: run `npm ci` (see the server log)", status_code=404)
        return FileResponse(str(chart_js), media_type="text/javascript")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        up = request.state.source.upstream
        age = up.message_age(time.monotonic())
        if not up.connected:
            reason = "upstream finished" if up.finished else "upstream not connected"
        elif age is None:
            reason = "no upstream data yet"
        elif age > settings.stale_after:
            reason = f"no upstream data for {age:.1f}s"
        else:
            return JSONResponse({"status": "ready", "last_message_age": round(age, 3)})
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)

    async def metrics(request: Request) -> Response:
        return Response(render(request.state.registry), media_type=CONTENT_TYPE_LATEST)

    def authorized(request: Request) -> bool:
        return token_ok(settings, request.query_params.get("token"), request.headers.get("authorization"))

    async def api_symbols(request: Request) -> Response:
        if not authorized(request):
            return _error(401, "unauthorized", "a valid token is required")
        hub: Hub = request.state.hub
        body = b"[" + b",".join(
            b'{"symbol":%s,"latest":%s}' % (orjson.dumps(u.key[0]), u.text.encode()) for u in hub.latest()
        ) + b"]"  # fmt: skip
        return Response(body, media_type="application/json")

    async def api_candles(request: Request) -> Response:
        if not authorized(request):
            return _error(401, "unauthorized", "a valid token is required")
        hub: Hub = request.state.hub
        symbol = request.query_params.get("symbol")
        if not symbol:
            return _error(400, "bad_query", "symbol is required")
        raw_limit = request.query_params.get("limit", str(settings.history))
        try:
            limit = int(raw_limit)
        except ValueError:
            return _error(400, "bad_query", f"limit must be a whole number, got {raw_limit[:20]!r}")
        if not 1 <= limit <= settings.history:
            return _error(400, "bad_query", f"limit must be between 1 and {settings.history}")
        bars = hub.bars(symbol, limit)
        if not bars:  # limit >= 1, and a known symbol has at least one bar
            return _error(404, "unknown_symbol", f"no data for symbol {symbol[:40]!r}")
        body = ("[" + ",".join(u.text for u in bars) + "]").encode()
        return Response(body, media_type="application/json")

    routes = [
        Route("/", index),
        WebSocketRoute("/ws", StreamEndpoint()),
        Route("/api/symbols", api_symbols),
        Route("/api/candles", api_candles),
        Route("/vendor/lightweight-charts.mjs", vendor_chart),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Mount("/static", StaticFiles(packages=[("service", "static")]), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def _error(status: int, code: str, detail: str) -> Response:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)
