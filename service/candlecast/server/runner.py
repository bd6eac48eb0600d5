"""Running the app under uvicorn, with candlecast's own two-phase shutdown.

uvicorn, left alone, fails every WebSocket with 1012 before the lifespan ends, and re-raises
the signal after a graceful exit (so the process dies of SIGTERM, not exit 0). :class:`Server`
instead, on the first SIGINT/SIGTERM: stops accepting, runs the ``drain`` it was given (the
application's: end every client with 1001, wait, bounded, until their sessions have closed), and
only then lets uvicorn shut down (lifespan teardown stops the feed).
A second SIGINT forces the exit; a repeated SIGTERM changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Generator

import uvicorn
from starlette.types import ASGIApp

from ..access.guard import Guard
from ..settings import Settings
from . import logs
from .protocols import http_protocol, websocket_protocol

log = logging.getLogger(__name__)


def config(app: ASGIApp, settings: Settings, *, guard: Guard | None = None) -> uvicorn.Config:
    """uvicorn's configuration for ``app``: candlecast's HTTP protocol (request timeout) and, for
    ``--ws-impl websockets-sansio``, its WebSocket protocol (quiet, counted protocol violations),
    both counting into ``guard`` (the service's: :attr:`candlecast.web.app.Service.guard`). Installs
    the log filter that masks tokens, once uvicorn has set up its loggers."""
    guard = guard if guard is not None else Guard(settings)
    ws = (
        websocket_protocol(guard, direct=settings.ws_direct)
        if settings.ws_impl == "websockets-sansio"
        else settings.ws_impl
    )
    cfg = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        root_path=settings.root_path,
        log_level=settings.log_level,
        http=http_protocol(guard),
        ws=ws,
        timeout_keep_alive=settings.keepalive_timeout,
        loop=settings.loop,
        ws_ping_interval=settings.ws_ping_interval or None,
        ws_ping_timeout=settings.ws_ping_timeout or None,
        ws_per_message_deflate=settings.ws_compression,
        ws_max_size=64 * 1024,
        proxy_headers=settings.proxy_headers,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=2,
        lifespan="on",
    )
    logs.install()
    return cfg


class Server(uvicorn.Server):
    """uvicorn's server with candlecast's drain on the first signal (or :meth:`request_exit`)."""

    def __init__(self, config: uvicorn.Config, *, drain: Callable[[], Awaitable[None]] | None = None) -> None:
        super().__init__(config)
        self._drain = drain
        self._drain_requested = False
        self._drained = False

    def request_exit(self, sig: int = signal.SIGTERM) -> None:
        """Begin the graceful shutdown; a second SIGINT forces it. Loop thread only."""
        if self._drain_requested and sig == signal.SIGINT:
            self.force_exit = True
            self.should_exit = True
        self._drain_requested = True

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        loop = asyncio.get_running_loop()
        sigs = (signal.SIGINT, signal.SIGTERM)
        try:
            for sig in sigs:
                loop.add_signal_handler(sig, self.request_exit, sig)
        except (NotImplementedError, RuntimeError):  # not the main thread: the caller stops us
            yield
            return
        try:
            yield
        finally:
            for sig in sigs:
                loop.remove_signal_handler(sig)

    async def on_tick(self, counter: int) -> bool:
        if self._drain_requested and not self._drained:
            self._drained = True
            await self.drain()
            return True
        return await super().on_tick(counter)

    async def drain(self) -> None:
        """Stop accepting, then run the application's drain."""
        for server in self.servers:
            server.close()
        if self._drain is not None:
            await self._drain()
