"""The broker WebSocket source, on ``websockets``' sync client, in the producer thread.

Connects, sends the optional subscribe message, and feeds every message through the
normalizer. On any failure it reconnects with capped exponential backoff and jitter, forever,
until stopped. A session that delivered data resets the backoff however it ended (a clean close,
or a connection dropped without one): after a healthy session the next attempt waits only
``reconnect_min``; only failures in a row back off.

Keepalive: the client pings every 20 s and drops a broker that does not pong within 20 s
(Binance, for its part, pings every 20 s; the sync client answers automatically). A format may
also declare a text heartbeat (:class:`~candlecast.formats.contract.Heartbeat`; OKX's ``ping``,
which OKX needs because it closes a connection quiet for 30 s): once no message has come for its
``quiet`` seconds the source sends its ``ping``, and if nothing comes within as long again it
drops the connection and reconnects. Its answer (``pong``) is counted in
:attr:`Upstream.heartbeats`, not as data, and never reaches the format.

:meth:`WebSocketSource.wake` (called from the loop's thread at shutdown) shuts the socket down,
which ends a blocked ``recv`` at once; the backoff wait ends on the stop event.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import threading
import time

from websockets.exceptions import ConnectionClosedOK, WebSocketException
from websockets.sync.client import ClientConnection, connect

from ..model.candle import MAX_MESSAGE_BYTES
from ..model.pacing import backoff
from .source import Emit, Normalizer, Upstream

__all__ = ["WebSocketSource"]

log = logging.getLogger("candlecast.upstream")


class WebSocketSource:
    def __init__(
        self,
        url: str,
        normalizer: Normalizer,
        *,
        subscribe: str | None = None,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
    ) -> None:
        self.url = url
        self.normalizer = normalizer
        self.subscribe = subscribe
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.upstream = Upstream()
        self.malformed = normalizer.malformed
        self._rng = random.Random()
        self._lock = threading.Lock()
        self._conn: ClientConnection | None = None
        self._stopping = False
        self._got_data = False  # the current session has delivered a message

    def run(self, emit: Emit, stop: threading.Event) -> None:
        attempt = 0
        up = self.upstream
        while not stop.is_set():
            self._got_data = False
            try:
                self._session(emit, stop)
            except (OSError, WebSocketException, TimeoutError) as exc:
                if not stop.is_set():
                    log.warning("upstream %s: %s: %s", self.url, type(exc).__name__, exc)
            if stop.is_set():
                break
            attempt = 0 if self._got_data else attempt + 1
            delay = backoff(attempt, initial=self.reconnect_min, maximum=self.reconnect_max, rng=self._rng)
            log.info("upstream %s: reconnecting in %.2fs", self.url, delay)
            stop.wait(delay)
            up.reconnects += 1

    def _session(self, emit: Emit, stop: threading.Event) -> None:
        """One connection, until it closes or fails; sets ``_got_data`` on the first message."""
        up = self.upstream
        with connect(
            self.url,
            open_timeout=self.open_timeout,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            close_timeout=1.0,
            max_size=MAX_MESSAGE_BYTES * 4,  # oversize messages reach the normalizer and are counted
            compression=None,
            proxy=None,
        ) as conn:
            with self._lock:
                if self._stopping:
                    return
                self._conn = conn
            try:
                up.connected = True
                up.connects += 1
                log.info("upstream %s: connected", self.url)
                if self.subscribe is not None:
                    conn.send(self.subscribe)
                self._receive(conn, emit, stop)
                if not stop.is_set():
                    log.warning("upstream %s: closed by the broker (code %s)", self.url, conn.close_code)
            finally:
                up.connected = False
                with self._lock:
                    self._conn = None

    def _receive(self, conn: ClientConnection, emit: Emit, stop: threading.Event) -> None:
        """Messages until the connection closes or ``stop`` is set; the format's heartbeat sent
        when the feed has been quiet. Raises :class:`TimeoutError` when the heartbeat goes
        unanswered, and what ``websockets`` raises for a connection that failed."""
        up = self.upstream
        normalize = self.normalizer
        beat = normalize.heartbeat
        quiet = None if beat is None else beat.quiet
        pinged = False
        while not stop.is_set():
            try:
                raw = conn.recv(timeout=quiet)
            except ConnectionClosedOK:
                return
            except TimeoutError:
                assert beat is not None  # no timeout without a heartbeat
                if pinged:
                    raise TimeoutError(f"no answer to {beat.ping!r} within {beat.quiet:g}s") from None
                conn.send(beat.ping)
                pinged = True
                continue
            pinged = False
            if normalize.is_heartbeat(raw):
                up.heartbeats += 1
                continue
            up.messages += 1
            up.last_message = time.monotonic()
            self._got_data = True
            for candle in normalize(raw):
                emit(candle)

    def wake(self) -> None:
        with self._lock:
            self._stopping = True
            conn = self._conn
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.socket.shutdown(socket.SHUT_RDWR)
