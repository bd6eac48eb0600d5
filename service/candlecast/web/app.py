"""The application: :class:`Service` turns settings into an ASGI app and owns its runtime.

Event loop only. The lifespan builds the :class:`~candlecast.runtime.Runtime` (hub, feed,
pump) and keeps it on the service while it runs; every route and the ``/ws`` endpoint reach it
through :attr:`Service.runtime`, the only way in. :meth:`Service.drain` is what the server
calls on the first SIGTERM, before uvicorn's own shutdown: stop taking clients, end each with
1001, wait (bounded) for their sessions. The lifespan's exit stops the feed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from ..access.credentials import offered_token
from ..access.guard import Guard, GuardCollector
from ..access.tokens import Grant, TokenError
from ..metrics import CONTENT_TYPE_LATEST, render
from ..model.intervals import IntervalError
from ..model.streams import stream_name
from ..runtime import Runtime, running
from ..settings import Derived, Settings, derive
from .headers import SecurityHeaders
from .session import StreamEndpoint

__all__ = ["DRAIN_TIMEOUT", "PAGE_SUFFIXES", "STATIC", "PageFiles", "Service", "StreamFirst", "create_app"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent.parent / "static"
#: Longest :meth:`Service.drain` waits for sessions to close after the 1001s are sent.
DRAIN_TIMEOUT = 2.0


#: What ``/static`` serves: the page's own files, at the top of the package's ``static/``.
#: Nothing below it (``vendor/`` holds the chart module, served at ``/vendor/...`` from
#: ``--chart-js``, and build records), and no other kind of file.
PAGE_SUFFIXES = (".js", ".mjs", ".css", ".html", ".svg", ".png", ".ico", ".woff2")


class PageFiles(StaticFiles):
    """Starlette's static files, limited to the page's own files: a name without a folder and
    with one of :data:`PAGE_SUFFIXES`; anything else is a 404, as if it were not there."""

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        if "/" in path or "\\" in path or not path.endswith(PAGE_SUFFIXES):
            return "", None
        return super().lookup_path(path)


class Service:
    """candlecast as an ASGI app (:attr:`asgi`). Nothing starts until the lifespan does."""

    def __init__(self, settings: Settings, *, derived: Derived | None = None) -> None:
        #: What the settings imply, worked out once (a plug-in format imported, the key read).
        self.derived = derived if derived is not None else derive(settings)
        self.settings = settings
        self._runtime: Runtime | None = None
        #: Token checks and client limits; uvicorn's protocols count into it (see server.config).
        self.guard = Guard(settings, public_key=self.derived.public_key)
        self._chart_js = anyio.Path(settings.chart_js)
        if not Path(settings.chart_js).is_file():
            log.warning(
                "dashboard: chart library not found at %s; reinstall candlecast (a wheel or an sdist carries it; "
                "in a checkout, scripts/bootstrap runs npm ci) or set --chart-js; the page will say so",
                settings.chart_js,
            )
        routes = [
            Route("/", self.index),
            Route("/api/symbols", self.api_symbols),
            Route("/api/candles", self.api_candles),
            Route("/vendor/lightweight-charts.mjs", self.vendor_chart),
            Route("/healthz", self.healthz),
            Route("/readyz", self.readyz),
            Route("/metrics", self.metrics),
            Mount("/static", PageFiles(packages=[("candlecast", "static")]), name="static"),
        ]
        stream: StreamEndpoint | None = StreamEndpoint(lambda: self.runtime, self.guard)
        if settings.role == "ingest":  # it serves no client: health, readiness and metrics only
            routes = [r for r in routes if getattr(r, "path", "") in ("/healthz", "/readyz", "/metrics")]
            stream = None
        app = Starlette(routes=routes, lifespan=self._lifespan, middleware=[Middleware(SecurityHeaders)])
        #: What the server runs: ``/ws`` straight to its endpoint, everything else to Starlette.
        self.asgi: ASGIApp = app if stream is None else StreamFirst(stream, app)

    @property
    def runtime(self) -> Runtime:
        """The running state; raises :class:`RuntimeError` outside the lifespan."""
        if self._runtime is None:
            raise RuntimeError("candlecast is not running: its lifespan has not started (or has ended)")
        return self._runtime

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with running(self.settings, self.derived) as runtime:
            runtime.registry.register(GuardCollector(self.guard))
            self._runtime = runtime
            try:
                yield
            finally:
                self._runtime = None

    async def drain(self) -> None:
        """End every client with 1001 and wait (bounded) until their sessions have closed."""
        runtime = self._runtime
        if runtime is None or runtime.served is None:  # not started, or an ingest: no clients
            return
        hub = runtime.served
        log.info("draining %d client(s)", hub.clients)
        hub.close()
        with anyio.move_on_after(DRAIN_TIMEOUT):
            await hub.wait_idle()

    # -- routes -----------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def vendor_chart(self, request: Request) -> Response:
        if not await self._chart_js.is_file():
            return PlainTextResponse("// chart library missing: see the server log", status_code=404)
        return FileResponse(str(self._chart_js), media_type="text/javascript")

    async def healthz(self, request: Request) -> Response:
        if self._runtime is None:  # the lifespan ended under a serving server: the pump or the feed died
            return JSONResponse({"status": "dead", "reason": "the feed pump has stopped"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """200 ``ready`` or 503 ``not ready`` with the reason (which may name the broker's or
        Redis's address and an error text: for operators, who reach candlecast's own port).
        ``?brief`` answers the status alone; the nginx recipes ask for that on the public
        ``/readyz``, whatever the client sent."""
        state = self.runtime.intake.readiness(time.monotonic())
        if "brief" in request.query_params:
            ready = state.reason is None
            return JSONResponse({"status": "ready" if ready else "not ready"}, status_code=200 if ready else 503)
        if state.reason is not None:
            return JSONResponse({"status": "not ready", "reason": state.reason}, status_code=503)
        body: dict[str, object] = {"status": "ready"}
        if state.age is not None:
            body["last_message_age"] = round(state.age, 3)
        return JSONResponse(body)

    async def metrics(self, request: Request) -> Response:
        return Response(render(self.runtime.registry), media_type=CONTENT_TYPE_LATEST)

    def _grant(self, request: Request) -> Grant | Response:
        """What the request's token allows, or the 401 to answer with."""
        offered = offered_token(request.query_params.get("token"), request.headers.get("authorization"))
        try:
            return self.guard.check(offered)
        except TokenError as exc:
            return _error(401, exc.code, exc.detail)

    async def api_symbols(self, request: Request) -> Response:
        grant = self._grant(request)
        if not isinstance(grant, Grant):
            return grant
        hub = self.runtime.hub
        served = orjson.dumps(hub.intervals.names if hub.intervals else [])
        items = [
            b'{"symbol":%s,"intervals":%s,"latest":%s}' % (orjson.dumps(u.key[0]), served, u.text.encode())
            for u in hub.latest()
            if grant.allows(u.key[0])
        ]
        return Response(b"[" + b",".join(items) + b"]", media_type="application/json")

    async def api_candles(self, request: Request) -> Response:
        grant = self._grant(request)
        if not isinstance(grant, Grant):
            return grant
        history = self.settings.history
        symbol = request.query_params.get("symbol")
        if not symbol:
            return _error(400, "bad_query", "symbol is required")
        if not grant.allows(symbol):
            return _error(403, "forbidden_symbol", f"your token does not allow {symbol[:40]!r}")
        raw_limit = request.query_params.get("limit", str(history))
        try:
            limit = int(raw_limit)
        except ValueError:
            return _error(400, "bad_query", f"limit must be a whole number, got {raw_limit[:20]!r}")
        if not 1 <= limit <= history:
            return _error(400, "bad_query", f"limit must be between 1 and {history}")
        hub = self.runtime.hub
        interval = request.query_params.get("interval")
        stream = stream_name(symbol, interval)
        if hub.intervals is not None:
            try:
                stream = hub.intervals.stream(stream)
            except IntervalError as exc:
                return _error(400, "unknown_interval", str(exc))
            except ValueError as exc:
                return _error(400, "bad_query", str(exc))
        bars = hub.bars(stream, limit)
        if not bars:  # limit >= 1, and a known stream has at least one bar
            return _error(404, "unknown_symbol", f"no data for {stream[:48]!r}")
        body = ("[" + ",".join(u.text for u in bars) + "]").encode()
        return Response(body, media_type="application/json")


class StreamFirst:
    """Hands ``/ws`` WebSocket connections straight to the stream endpoint and everything else
    to Starlette. A connection lives for hours, and every layer it passes through keeps a
    suspended coroutine for that long: Starlette's middleware stack, exception handlers and
    router cost ~2 KB per client for nothing (the endpoint sends no HTTP response and handles
    its own errors). Any other WebSocket path gets Starlette's answer (403)."""

    __slots__ = ("_app", "_stream")

    def __init__(self, stream: ASGIApp, app: ASGIApp) -> None:
        self._stream = stream
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"][len(scope.get("root_path", "")) :] == "/ws":
            await self._stream(scope, receive, send)
        else:
            await self._app(scope, receive, send)


def create_app(settings: Settings) -> ASGIApp:
    """The ASGI app alone, for ASGI servers other than candlecast's own (no SIGTERM drain)."""
    return Service(settings).asgi


def _error(status: int, code: str, detail: str) -> Response:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)
