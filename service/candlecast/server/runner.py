"""Running the app under uvicorn, with candlecast's own two-phase shutdown.

uvicorn, left alone, fails every WebSocket with 1012 before the lifespan ends, and re-raises
the signal after a graceful exit (so the process dies of SIGTERM, not exit 0). :class:`Server`
instead, on the first SIGINT/SIGTERM: stops accepting, runs the ``drain`` it was given (the
application's: end every client with 1001, wait, bounded, until their sessions have closed), and
only then lets uvicorn shut down (lifespan teardown stops the feed).
A second SIGINT forces the exit; a repeated SIGTERM changes nothing.

:func:`config` first checks the uvicorn installed (:func:`check_uvicorn`): candlecast's protocols
(:mod:`candlecast.server.protocols`) override uvicorn's and read some of its internals, so another
release than :data:`UVICORN_RANGE` (pinned the same in ``pyproject.toml``) refuses to start, in
one line. Event-loop thread (the server's); holds nothing to close beyond uvicorn's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
from collections.abc import Awaitable, Callable, Generator
from typing import Final

import uvicorn
from starlette.types import ASGIApp

from ..access.guard import Guard
from ..settings import Settings, derive
from . import logs
from .protocols import http_protocol, websocket_protocol

__all__ = ["UVICORN_RANGE", "Server", "UnsupportedUvicorn", "check_uvicorn", "config", "uvicorn_requirement"]

log = logging.getLogger(__name__)

#: The uvicorn releases :mod:`candlecast.server.protocols` was written against and is tested with:
#: at least the first (major, minor), below the second. ``pyproject.toml`` pins the same range.
UVICORN_RANGE: Final = ((0, 54), (0, 55))


class UnsupportedUvicorn(RuntimeError):
    """The uvicorn installed is outside :data:`UVICORN_RANGE`; the message is one line."""


def uvicorn_requirement() -> str:
    """:data:`UVICORN_RANGE` as a version specifier: ``>=0.54,<0.55``."""
    (lo_major, lo_minor), (hi_major, hi_minor) = UVICORN_RANGE
    return f">={lo_major}.{lo_minor},<{hi_major}.{hi_minor}"


def check_uvicorn() -> None:
    """Raise :class:`UnsupportedUvicorn` unless the uvicorn imported (its ``__version__``) is in
    :data:`UVICORN_RANGE`."""
    installed = uvicorn.__version__
    release = re.match(r"(\d+)\.(\d+)", installed)
    version = (int(release[1]), int(release[2])) if release else None
    low, high = UVICORN_RANGE
    if version is None or not low <= version < high:
        raise UnsupportedUvicorn(
            f"uvicorn {installed} is installed, but candlecast supports uvicorn{uvicorn_requirement()} only "
            "(its protocols override uvicorn's internals): install a supported uvicorn"
        )


def config(app: ASGIApp, settings: Settings, *, guard: Guard | None = None) -> uvicorn.Config:
    """uvicorn's configuration for ``app``: candlecast's HTTP protocol (request timeout) and, for
    ``--ws-impl websockets-sansio``, its WebSocket protocol (quiet, counted protocol violations),
    both counting into ``guard`` (the service's: :attr:`candlecast.web.app.Service.guard`). Installs
    the log filter that masks tokens, once uvicorn has set up its loggers. Raises
    :class:`UnsupportedUvicorn` for a uvicorn outside :data:`UVICORN_RANGE`."""
    check_uvicorn()
    guard = guard if guard is not None else Guard(settings, public_key=derive(settings).public_key)
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
