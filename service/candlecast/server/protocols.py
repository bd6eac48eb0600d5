"""uvicorn's connection protocols with candlecast's limits: module-level classes, bound per
:class:`~candlecast.access.guard.Guard`.

Event-loop thread (asyncio protocol callbacks). Each connection's timers are cancelled when it is
lost; nothing else is held.

- :class:`GuardedHttpProtocol`: uvicorn's httptools protocol plus a **request timeout**: a
  connection must deliver a complete request (head, and body if any) within ``--header-timeout``
  seconds of connecting, or of the first byte of its next request on a kept-alive connection;
  otherwise it gets a 408 and is closed (counted). A **bounded request head**: more than
  ``--max-header-bytes`` bytes before the head is complete, or more than ``--max-headers``
  header lines, gets a 431 and the connection is closed (counted as ``oversize_head``), so the
  parser never holds more than one read (256 KiB) past the cap. Idle kept-alive connections
  are closed by uvicorn after ``--keepalive-timeout``. An invalid request or unsupported
  upgrade is one throttled log line.
- :class:`GuardedWebSocketProtocol`: uvicorn's websockets-sansio protocol that offers the
  application a **direct path** (the ASGI extension :data:`DIRECT`, a :class:`DirectChannel`):
  prepared frames written straight to the connection's transport while it is open and below
  its high-water mark. A client's protocol violation (a text frame that is not UTF-8, an
  oversize frame, a framing error, a refused handshake) closes that connection as before (1007,
  1009, 1002, HTTP 400) but costs at most one short, throttled log line and a count
  (``candlecast_protocol_violations_total``), instead of a traceback per frame; the session's
  writer then sees a disconnected client, not an error. **Flow control both ways**: while the
  connection's outgoing buffer is above its high-water mark, the protocol stops reading from
  the socket, so a client that does not read cannot make the server buffer for it -- pongs
  to its pings, close replies and every other frame the server writes by itself included.

Binding: uvicorn instantiates its protocol classes itself (``cls(config=..., server_state=...,
app_state=..., _loop=...)``, in ``Server.startup`` and in the HTTP protocol's WebSocket upgrade),
so the guard cannot be a constructor argument. :func:`http_protocol` and
:func:`websocket_protocol` return a subclass made per server whose class attributes carry the
guard (and whether to offer the direct path); uvicorn's ``Config`` takes such a class as it is.

uvicorn's internals: each override is of a method uvicorn 0.54 names without an underscore,
and uses the state its ``__init__`` declares. What goes further -- two underscore methods of
uvicorn's HTTP protocol, the WebSocket protocol's message buffer and handshake objects, its
queue and event, websockets' ``parser_exc`` -- is read in one section at the end of this module,
one small function each, written against uvicorn 0.54.0 and websockets 17.4.
``tests/unit/server/test_protocols.py`` fails loudly if one of them changes; ``pyproject.toml``
pins uvicorn to that range and :func:`candlecast.server.runner.check_uvicorn` refuses to start
with another.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar, TypeVar, cast

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState, PayloadTooBig
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from ..access.guard import Guard

__all__ = [
    "DIRECT",
    "LINGER",
    "DirectChannel",
    "Flag",
    "GuardedHttpProtocol",
    "GuardedWebSocketProtocol",
    "Inbox",
    "http_protocol",
    "websocket_protocol",
]

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

_C = TypeVar("_C", bound=type)


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a request head over the cap."""


class _Bound:
    """What the protocols share: the guard, bound per server as a class attribute."""

    #: What the connection reads its limits from and counts into; set by the binding function.
    guard: ClassVar[Guard]

    def _check_bound(self) -> None:
        if not hasattr(type(self), "guard"):
            raise TypeError(
                f"{type(self).__name__} has no guard: build it with http_protocol(guard)/websocket_protocol(guard)"
            )


def _bind(cls: _C, **attributes: Any) -> _C:
    """A subclass of ``cls`` with ``attributes`` as class attributes, named as ``cls``."""
    namespace = {"__module__": cls.__module__, "__qualname__": cls.__qualname__, **attributes}
    return cast(_C, type(cls.__name__, (cls,), namespace))


def http_protocol(guard: Guard) -> type[asyncio.Protocol]:
    """:class:`GuardedHttpProtocol` counting into ``guard``, for uvicorn's ``Config(http=...)``
    (typed as uvicorn takes it: a protocol class it calls with keyword arguments)."""
    return _bind(GuardedHttpProtocol, guard=guard)


def websocket_protocol(guard: Guard, *, direct: bool = True) -> type[asyncio.Protocol]:
    """:class:`GuardedWebSocketProtocol` counting into ``guard``, for uvicorn's ``Config(ws=...)``;
    it offers the direct path unless ``direct`` is off (or permessage-deflate is on)."""
    return _bind(GuardedWebSocketProtocol, guard=guard, direct=direct)


class GuardedHttpProtocol(_Bound, HttpToolsProtocol):
    """uvicorn's httptools protocol with a request timeout, a bounded request head and quiet,
    counted bad requests. Unbound: :func:`http_protocol` gives it its guard."""

    _request_timer: asyncio.TimerHandle | None = None
    #: Bytes received since the last complete head (the parser buffers a partial header).
    _head_bytes = 0
    #: Bytes of the current head's URL and header lines, and its header count.
    _head_size = 0
    _head_count = 0
    _in_body = False
    #: Refused with 431: lingering, what the client still sends is dropped.
    _refused = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._check_bound()
        super().__init__(*args, **kwargs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(cast(asyncio.Transport, transport))
        self._arm_request_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_request_timer()
        super().connection_lost(exc)

    # -- the request timeout -------------------------------------------------------------------

    def _arm_request_timer(self) -> None:
        if self._request_timer is None:
            self._request_timer = self.loop.call_later(self.guard.header_timeout, self._request_timed_out)

    def _disarm_request_timer(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _request_timed_out(self) -> None:
        self._request_timer = None
        if not self.transport.is_closing():
            self.guard.header_timed_out(self.client)
            if self.cycle is None or not self.cycle.response_started:
                self.transport.write(_TIMEOUT_RESPONSE)
            self.transport.close()

    def on_message_begin(self) -> None:
        self._arm_request_timer()  # the first byte of a (next) request
        self._head_size = self._head_count = 0
        super().on_message_begin()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._disarm_request_timer()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._disarm_request_timer()  # the WebSocket protocol takes the connection over
        super().handle_websocket_upgrade()

    # -- the head cap --------------------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        if self._head_size > self.guard.max_header_bytes:
            raise _HeadTooLarge
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        self._head_count += 1
        if self._head_size > self.guard.max_header_bytes or self._head_count > self.guard.max_headers:
            raise _HeadTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_bytes, self._in_body = 0, True
        super().on_headers_complete()

    def _count_head_bytes(self, data: bytes) -> None:
        if not self._in_body:
            self._head_bytes += len(data)

    def _partial_head_over_cap(self) -> bool:
        """More bytes than the cap arrived and the head is still not complete."""
        return not self._in_body and self._head_bytes > self.guard.max_header_bytes

    def _refuse_head(self) -> None:
        self._refused = True
        self._disarm_request_timer()
        guard = self.guard
        guard.violation(
            "oversize_head",
            self.client,
            f"request head over {guard.max_header_bytes} bytes or {guard.max_headers} header lines: 431",
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

    # -- reading: uvicorn's data_received, with the head cap and quiet violations --------------

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # refused, closing: the parser is not fed again
        _stop_keepalive_timer(self)
        self._count_head_bytes(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._parse_failed(exc)
        except httptools.HttpParserUpgrade:
            self._upgrade_requested()
        else:
            if self._partial_head_over_cap():
                self._refuse_head()

    # -- quiet violations ----------------------------------------------------------------------

    def _parse_failed(self, exc: httptools.HttpParserError) -> None:
        """A 431 for a head over the cap, else uvicorn's 400 with one throttled line, not a warning each."""
        if isinstance(exc.__context__, _HeadTooLarge):  # raised by on_url/on_header
            self._refuse_head()
            return
        self.guard.violation("bad_request", self.client, "invalid HTTP request")
        self.send_400_response("Invalid HTTP request received.")

    def _upgrade_requested(self) -> None:
        """To WebSocket as uvicorn does; any other upgrade is counted (the request is served as HTTP)."""
        if _wants_websocket(self):
            self.handle_websocket_upgrade()
        else:
            self.guard.violation("bad_request", self.client, "unsupported upgrade request")


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


class GuardedWebSocketProtocol(_Bound, WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol whose client protocol violations are counted and
    logged in one throttled line, with flow control both ways, a handshake freed once accepted,
    and the direct path offered. Unbound: :func:`websocket_protocol` gives it its guard."""

    #: Offer the direct path (never with permessage-deflate: compressed frames are per connection).
    direct: ClassVar[bool] = True
    #: Reading is paused because the outgoing buffer is above its high-water mark.
    write_paused = False
    #: websockets' parser failure is counted (once: uvicorn asks again on every read).
    _failure_counted = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._check_bound()
        super().__init__(*args, **kwargs)
        _use_small_inbox_and_flag(self)
        self.channel: DirectChannel | None = None  # offered in the scope (handle_connect)

    # -- sending: uvicorn's, then what candlecast keeps in step with it -----------------------

    async def send(self, message: Any) -> None:
        await super().send(message)
        if self.write_paused:
            self._keep_reading_paused()
        kind = message["type"]
        if kind == "websocket.send":
            return  # the hot path: nothing more to do
        if kind == "websocket.accept":
            self._accepted()
        elif kind == "websocket.close":
            self._closing()

    def _accepted(self) -> None:
        if self.handshake_complete:  # not refused, the transport not closing
            self._free_handshake()
            if self.channel is not None and not self.close_sent:
                self.channel.open = True

    def _closing(self) -> None:
        if self.channel is not None:
            self.channel.open = False

    # -- the handshake, freed ------------------------------------------------------------------

    def _free_handshake(self) -> None:
        """The handshake's request and response are not needed again. websockets' parser keeps
        the request for the connection's lifetime (a local of its generator): its headers go,
        so only an empty shell stays."""
        _forget_handshake(self)

    # -- flow control, both ways ---------------------------------------------------------------
    # Reading is paused while a message waits for the app (uvicorn's read_paused) OR while the
    # outgoing buffer is above its high-water mark (write_paused), and resumed only when neither
    # holds. Without the second, a client that sends pings and never reads makes the server
    # queue a pong per ping.

    def pause_writing(self) -> None:
        super().pause_writing()
        self.write_paused = True
        if self.channel is not None:
            self.channel.writable = False
        if not self.transport.is_closing():
            self.transport.pause_reading()
            self.guard.backpressured(self.client)

    def resume_writing(self) -> None:
        super().resume_writing()
        self.write_paused = False
        if self.channel is not None:
            self.channel.writable = True
        self._resume_reading_unless_paused()

    async def receive(self) -> Any:
        message = await self.queue.get()
        if self.read_paused and self.queue.empty():
            self.read_paused = False
            self._resume_reading_unless_paused()
        return message

    def _keep_reading_paused(self) -> None:
        """Pause reading again after a send while the buffer is full: uvicorn resumes reading
        when the app sends its close frame."""
        if not self.transport.is_closing():
            self.transport.pause_reading()

    def _resume_reading_unless_paused(self) -> None:
        if not self.read_paused and not self.write_paused and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- quiet violations ----------------------------------------------------------------------

    def handle_parser_exception(self) -> None:
        """uvicorn's, after websockets failed the connection (1002, 1007, 1009): counted, one
        throttled line, and the app's sends see a gone client."""
        self._count_parser_failure()
        self._fail()

    def _count_parser_failure(self) -> None:
        exc = _parser_exception(self.conn)
        if exc is None or self._failure_counted:
            return
        self._failure_counted = True
        if isinstance(exc, PayloadTooBig):
            self.guard.violation("oversize", self.client, "frame or message over the size limit")
        elif isinstance(exc, UnicodeDecodeError):
            self.guard.violation("invalid_utf8", self.client, "invalid UTF-8 in a close frame")
        else:
            self.guard.violation("protocol", self.client, f"{type(exc).__name__}: {exc}")

    def _fail(self) -> None:
        super().handle_parser_exception()
        # The connection is being failed (close frame sent, transport closing): from now on
        # the app's sends see a gone client (ClientDisconnected, as after connection_lost)
        # instead of uvicorn's RuntimeError, a traceback per violation while data flows.
        self.disconnected = True

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        if self.transport.is_closing():
            self.disconnected = True  # likewise, for a client that stopped answering pings

    def handle_connect(self, event: Request) -> None:
        self._handshake_quietly(event)
        response = _handshake_response(self)
        if response.status_code != 101:
            status = f"{response.status_code} {response.reason_phrase}"
            self.guard.violation("bad_handshake", self.client, f"refused WebSocket handshake ({status})")
        else:
            self._offer_direct_path()

    def _handshake_quietly(self, event: Request) -> None:
        """uvicorn's handle_connect, with websockets' info line per refused handshake held back."""
        logger = self.conn.logger
        self.conn.logger = _QUIET
        try:
            super().handle_connect(event)
        finally:
            self.conn.logger = logger

    # -- the UTF-8 check -----------------------------------------------------------------------

    def send_receive_event_to_app(self) -> None:
        """uvicorn's, once a text message is known to be UTF-8; else 1007, counted, one line
        (uvicorn would log a traceback)."""
        if not self.close_sent:
            text = _pending_text(self)
            if text is not None:
                try:
                    text.decode()
                except UnicodeDecodeError as exc:
                    self._refuse_text(exc)
                    return
        super().send_receive_event_to_app()

    def _refuse_text(self, exc: UnicodeDecodeError) -> None:
        _discard_pending(self)
        self.guard.violation("invalid_utf8", self.client, f"text message not UTF-8 (byte {exc.start})")
        try:
            self.conn.send_close(1007, "invalid UTF-8")
        except InvalidState:
            pass  # a close frame went already (the client's, answered)
        if self.conn.close_sent is None:
            self.transport.close()
        else:
            self._fail()

    # -- the direct path -----------------------------------------------------------------------

    def _offer_direct_path(self) -> None:
        if self.direct and not self.config.ws_per_message_deflate:
            extensions = self.scope.get("extensions")
            if extensions is not None:
                self.channel = DirectChannel(self.transport)
                extensions[DIRECT] = {"channel": self.channel}


# -- uvicorn's and websockets' internals ----------------------------------------------------------
# Read from uvicorn 0.54.0 (protocols/http/httptools_impl.py, protocols/websockets/
# websockets_sansio_impl.py) and websockets 17.4 (protocol.py): the only places this module
# touches state those libraries do not document. tests/unit/server/test_protocols.py's
# test_internals_* fail if one changes; pyproject.toml pins uvicorn to the range read.


def _stop_keepalive_timer(protocol: HttpToolsProtocol) -> None:
    """What uvicorn's ``data_received`` does first: new bytes cancel the idle keep-alive timer."""
    protocol._unset_keepalive_if_required()


def _wants_websocket(protocol: HttpToolsProtocol) -> bool:
    """uvicorn's own answer to an upgrade request (the one ``on_headers_complete`` also asks):
    to WebSocket, with a WebSocket protocol configured."""
    return protocol._should_upgrade()


def _parser_exception(conn: ServerProtocol) -> Exception | None:
    """What stopped websockets' frame parser (it has failed the connection for it), if anything."""
    return conn.parser_exc


def _pending_text(protocol: WebSocketsSansIOProtocol) -> bytes | None:
    """The complete text message uvicorn is about to decode and queue; None for a binary one."""
    if protocol.curr_msg_data_type != "text":
        return None
    frames = protocol.frames
    return frames[0] if len(frames) == 1 else b"".join(frames)


def _discard_pending(protocol: WebSocketsSansIOProtocol) -> None:
    protocol.frames = []


def _handshake_response(protocol: WebSocketsSansIOProtocol) -> Response:
    """The response ``handle_connect`` prepared: 101, or the refusal it sent."""
    return protocol.response


def _forget_handshake(protocol: WebSocketsSansIOProtocol) -> None:
    """Drop the handshake request and response uvicorn keeps after the accept (unused after it)."""
    protocol.request.headers.clear()
    protocol.request = protocol.response = cast(Any, None)


def _use_small_inbox_and_flag(protocol: WebSocketsSansIOProtocol) -> None:
    """uvicorn's per-connection ``asyncio.Queue`` and ``asyncio.Event``, replaced by
    :class:`Inbox` and :class:`Flag` (the methods uvicorn calls, a fraction of the memory)."""
    protocol.queue = cast("asyncio.Queue[Any]", Inbox())
    protocol.writable = cast(asyncio.Event, Flag())
    protocol.writable.set()
