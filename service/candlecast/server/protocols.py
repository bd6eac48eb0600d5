"""uvicorn's connection protocols, with candlecast's limits: built per :class:`~candlecast.access.guard.Guard`.

Event-loop thread (asyncio protocol callbacks). Each connection's timers are cancelled when it is
lost; nothing else is held.

- :func:`http_protocol`: uvicorn's httptools protocol plus a **request timeout**: a connection
  must deliver a complete request (head, and body if any) within ``--header-timeout`` seconds of
  connecting, or of the first byte of its next request on a kept-alive connection; otherwise it
  gets a 408 and is closed (counted). A **bounded request head**: more than
  ``--max-header-bytes`` bytes before the head is complete, or more than ``--max-headers``
  header lines, gets a 431 and the connection is closed (counted as ``oversize_head``), so the
  parser never holds more than one read (256 KiB) past the cap. Idle kept-alive connections
  are closed by uvicorn after ``--keepalive-timeout``. An invalid request or unsupported
  upgrade is one throttled log line.
- :func:`websocket_protocol`: uvicorn's websockets-sansio protocol that offers the application a
  **direct path** (the ASGI extension :data:`DIRECT`, a :class:`DirectChannel`): prepared frames
  written straight to the connection's transport while it is open and below its high-water
  mark. A client's protocol violation (a text frame that is not UTF-8, an oversize frame, a
  framing error, a refused handshake) closes that connection as before (1007, 1009, 1002, HTTP
  400) but costs at most one short, throttled log line and a count
  (``candlecast_protocol_violations_total``), instead of a traceback per frame; the session's
  writer then sees a disconnected client, not an error. **Flow control both ways**: while the
  connection's outgoing buffer is above its high-water mark, the protocol stops reading from
  the socket, so a client that does not read cannot make the server buffer for it -- pongs
  to its pings, close replies and every other frame the server writes by itself included.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState, PayloadTooBig
from websockets.http11 import Request

from ..access.guard import Guard

#: websockets logs every refused handshake at info; while one is refused, it logs here instead
#: (warnings and errors only, so a real failure still shows).
_QUIET = logging.getLogger("candlecast.server.protocols.handshake")
_QUIET.setLevel(logging.WARNING)

#: The ASGI extension key under which a WebSocket scope offers its :class:`DirectChannel`.
DIRECT = "candlecast.direct"

_TIMEOUT_RESPONSE = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_HEAD_TOO_LARGE_RESPONSE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
)


#: Seconds a connection refused with 431 is still read (and what it sends dropped) before it is closed.
LINGER = 2.0


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a request head over the cap."""


def http_protocol(guard: Guard) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with the request timeout and quiet bad-request handling."""

    max_bytes, max_headers = guard.max_header_bytes, guard.max_headers

    class GuardedHttpProtocol(HttpToolsProtocol):
        _request_timer: asyncio.TimerHandle | None = None
        #: Bytes received since the last complete head (the parser buffers a partial header).
        _head_bytes = 0
        #: Bytes of the current head's URL and header lines, and its header count.
        _head_size = 0
        _head_count = 0
        _in_body = False
        _refused = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(cast(asyncio.Transport, transport))
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._request_timer is None:
                self._request_timer = self.loop.call_later(guard.header_timeout, self._timed_out)

        def _disarm(self) -> None:
            if self._request_timer is not None:
                self._request_timer.cancel()
                self._request_timer = None

        def _timed_out(self) -> None:
            self._request_timer = None
            if not self.transport.is_closing():
                guard.header_timed_out(self.client)
                if self.cycle is None or not self.cycle.response_started:
                    self.transport.write(_TIMEOUT_RESPONSE)
                self.transport.close()

        def on_message_begin(self) -> None:
            self._arm()  # the first byte of a (next) request
            self._head_size = self._head_count = 0
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._head_size += len(url)
            if self._head_size > max_bytes:
                raise _HeadTooLarge
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._head_size += len(name) + len(value) + 4
            self._head_count += 1
            if self._head_size > max_bytes or self._head_count > max_headers:
                raise _HeadTooLarge
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._head_bytes, self._in_body = 0, True
            super().on_headers_complete()

        def _refuse_head(self) -> None:
            self._refused = True
            self._disarm()
            guard.violation(
                "oversize_head",
                self.client,
                f"request head over {max_bytes} bytes or {max_headers} header lines: 431",
            )
            if not self.transport.is_closing():
                # A lingering close, as nginx's: the reply, then FIN, then what the client still
                # sends is read and dropped for a moment, so its kernel does not reset the
                # connection (and lose the reply) over data we never read.
                self.transport.write(_HEAD_TOO_LARGE_RESPONSE)
                if self.transport.can_write_eof():
                    self.transport.write_eof()
                    self.loop.call_later(LINGER, self.transport.close)
                else:
                    self.transport.close()

        def on_message_complete(self) -> None:
            self._in_body = False
            self._disarm()
            super().on_message_complete()

        def handle_websocket_upgrade(self) -> None:
            self._disarm()  # the WebSocket protocol takes the connection over
            super().handle_websocket_upgrade()

        def data_received(self, data: bytes) -> None:
            # uvicorn's, with its per-request warnings counted and throttled, and the head capped
            if self._refused:
                return  # refused, closing: the parser is not fed again
            self._unset_keepalive_if_required()
            if not self._in_body:
                self._head_bytes += len(data)
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError as exc:
                if isinstance(exc.__context__, _HeadTooLarge):  # raised by on_url/on_header
                    self._refuse_head()
                    return
                guard.violation("bad_request", self.client, "invalid HTTP request")
                self.send_400_response("Invalid HTTP request received.")
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    guard.violation("bad_request", self.client, "unsupported upgrade request")
            else:
                if not self._in_body and self._head_bytes > max_bytes:  # a head incomplete after that many
                    self._refuse_head()

    return GuardedHttpProtocol


class Inbox:
    """What uvicorn's WebSocket protocol uses of ``asyncio.Queue`` -- ``put_nowait``, ``get``,
    ``empty`` -- on one list and at most one waiter (the session's receive): an empty queue
    holds three deques (~2.3 KB), this holds an empty list. Unbounded like the queue it
    replaces, but short: uvicorn pauses reading from the socket while a message waits here, so
    it holds at most the messages of one read."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            if self._waiter is not None:
                raise RuntimeError("Inbox.get() is already awaited by another task")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


class Flag:
    """What uvicorn's WebSocket protocol uses of ``asyncio.Event`` for ``writable`` -- ``set``,
    ``clear``, ``is_set``, ``wait`` -- without the event's deque per connection (~0.75 KB): the
    list of waiters exists only while someone waits (a send held by a full socket buffer)."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return True


class DirectChannel:
    """The application's way to write prepared, complete, unmasked frames to one connection.

    Only whole frames go through it, and only while :meth:`ready`: the handshake is done, no
    close frame has been sent, the transport is not closing (uvicorn closes it when a close
    frame arrives, on a protocol error, a keepalive timeout or a lost connection) and is below
    its high-water mark. uvicorn never fragments what it sends and writes its own pings, pongs
    and close frame as whole frames too, so frames never interleave badly; once a close is sent
    or the transport is closing, :meth:`ready` is false for good and nothing more is written.

    The protocol keeps :attr:`open` and :attr:`writable` up to date as its state changes, so
    :meth:`ready` -- asked for every caught-up client in every pump step -- reads two flags of
    this small object and the transport it writes to next, not the protocol's state.
    """

    __slots__ = ("_transport", "open", "writable")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        #: Accepted, and no close frame sent.
        self.open = False
        #: Below the transport's high-water mark (``pause_writing``/``resume_writing``).
        self.writable = True

    def ready(self) -> bool:
        return self.open and self.writable and not self._transport.is_closing()

    def write(self, data: bytes) -> None:
        """Write ``data`` (whole frames) now; the caller checked :meth:`ready` in this step."""
        self._transport.write(data)


def websocket_protocol(guard: Guard, *, direct: bool = True) -> type[asyncio.Protocol]:
    """uvicorn's websockets-sansio protocol whose client protocol violations are counted and
    logged in one throttled line, offering the direct path (unless ``direct`` is off, or
    permessage-deflate is on: compressed frames are per connection)."""

    class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.queue = cast("asyncio.Queue[Any]", Inbox())
            self.writable = cast(asyncio.Event, Flag())
            self.writable.set()
            self.channel: DirectChannel | None = None  # offered in the scope (handle_connect)

        async def send(self, message: Any) -> None:
            await super().send(message)
            if self.write_paused and not self.transport.is_closing():
                self.transport.pause_reading()  # uvicorn resumes reading after a close frame
            kind = message["type"]
            if kind == "websocket.accept" and self.handshake_complete:
                # The handshake's request and response are not needed again. websockets' parser
                # keeps the request for the connection's lifetime (a local of its generator):
                # its headers go, so only an empty shell stays.
                self.request.headers.clear()
                self.request = self.response = cast(Any, None)
                if self.channel is not None and not self.close_sent:
                    self.channel.open = True
            elif kind == "websocket.close" and self.channel is not None:
                self.channel.open = False

        # Flow control, both ways: reading is paused while a message waits for the app
        # (uvicorn's read_paused) OR while the outgoing buffer is above its high-water mark
        # (write_paused), and resumed only when neither holds. Without the second, a client
        # that sends pings and never reads makes the server queue a pong per ping.
        write_paused = False

        def pause_writing(self) -> None:
            super().pause_writing()
            self.write_paused = True
            if self.channel is not None:
                self.channel.writable = False
            if not self.transport.is_closing():
                self.transport.pause_reading()
                guard.backpressured(self.client)

        def resume_writing(self) -> None:
            super().resume_writing()
            self.write_paused = False
            if self.channel is not None:
                self.channel.writable = True
            if not self.read_paused and not self.transport.is_closing():
                self.transport.resume_reading()

        async def receive(self) -> Any:
            message = await self.queue.get()
            if self.read_paused and self.queue.empty():
                self.read_paused = False
                if not self.write_paused and not self.transport.is_closing():
                    self.transport.resume_reading()
            return message

        def handle_parser_exception(self) -> None:
            super().handle_parser_exception()
            # The connection is being failed (close frame sent, transport closing): from now on
            # the app's sends see a gone client (ClientDisconnected, as after connection_lost)
            # instead of uvicorn's RuntimeError, a traceback per violation while data flows.
            self.disconnected = True

        def keepalive_timeout(self) -> None:
            super().keepalive_timeout()
            if self.transport.is_closing():
                self.disconnected = True  # likewise, for a client that stopped answering pings

        def data_received(self, data: bytes) -> None:
            failed = self.conn.parser_exc is not None
            super().data_received(data)
            exc = self.conn.parser_exc
            if exc is not None and not failed:
                if isinstance(exc, PayloadTooBig):
                    guard.violation("oversize", self.client, "frame or message over the size limit")
                elif isinstance(exc, UnicodeDecodeError):
                    guard.violation("invalid_utf8", self.client, "invalid UTF-8 in a close frame")
                else:
                    guard.violation("protocol", self.client, f"{type(exc).__name__}: {exc}")

        def send_receive_event_to_app(self) -> None:
            if self.curr_msg_data_type == "text" and not self.close_sent:
                data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
                try:
                    data.decode()
                except UnicodeDecodeError as exc:
                    self.frames = []
                    guard.violation("invalid_utf8", self.client, f"text message not UTF-8 (byte {exc.start})")
                    try:
                        self.conn.send_close(1007, "invalid UTF-8")
                    except InvalidState:
                        pass
                    if self.conn.close_sent is None:
                        self.transport.close()
                    else:
                        self.handle_parser_exception()
                    return
            super().send_receive_event_to_app()

        def handle_connect(self, event: Request) -> None:
            logger = self.conn.logger
            self.conn.logger = _QUIET
            try:
                super().handle_connect(event)
            finally:
                self.conn.logger = logger
            if self.response.status_code != 101:
                status = f"{self.response.status_code} {self.response.reason_phrase}"
                guard.violation("bad_handshake", self.client, f"refused WebSocket handshake ({status})")
            elif direct and not self.config.ws_per_message_deflate:
                extensions = self.scope.get("extensions")
                if extensions is not None:
                    self.channel = DirectChannel(self.transport)
                    extensions[DIRECT] = {"channel": self.channel}

    return GuardedWebSocketProtocol
