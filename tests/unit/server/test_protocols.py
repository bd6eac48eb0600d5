"""candlecast's uvicorn protocols (candlecast.server.protocols), one override a test.

Each protocol serves a real ASGI app on one end of a real socket pair; the other end is a real
WebSocket client parser (websockets' sans-I/O ClientProtocol) or bytes written by hand. Where a
test needs a state transition at a precise point it calls the protocol's callback itself, on
the loop thread, as the transport would. Then: uvicorn instantiating the bound classes on a
loopback port, the direct path beside uvicorn's own frames, and the uvicorn and websockets
internals the protocols read (these fail loudly when one changes).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Protocol, Side, State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from candlecast.access.guard import Guard
from candlecast.server import protocols, runner
from candlecast.server.protocols import (
    DIRECT,
    DirectChannel,
    Flag,
    GuardedHttpProtocol,
    GuardedWebSocketProtocol,
    Inbox,
    http_protocol,
    websocket_protocol,
)
from candlecast.server.runner import config
from candlecast.settings import Settings
from candlecast.wire.frames import text_frame
from tests.conftest import DEADLINE
from tests.integration.raw import on_read_pause

App = Callable[[Any, Any, Any], Any]


# -- the harness: a protocol on a socket pair ------------------------------------------------------


@dataclass
class Served:
    """One connection: the protocol uvicorn would have made, its transport, the client's socket."""

    protocol: Any
    transport: asyncio.Transport
    sock: socket.socket
    guard: Guard
    state: ServerState

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            await anyio.wait_writable(self.sock)
            view = view[self.sock.send(view) :]

    async def recv(self) -> bytes:
        """What the server wrote next; b"" at its end of stream."""
        await anyio.wait_readable(self.sock)
        try:
            return self.sock.recv(1 << 20)
        except ConnectionResetError:
            return b""

    async def recv_until(self, needle: bytes) -> bytes:
        got = b""
        with anyio.fail_after(DEADLINE):
            while needle not in got:
                data = await self.recv()
                assert data, f"the server closed before {needle!r}: {got[:200]!r}"
                got += data
        return got

    async def recv_to_end(self) -> bytes:
        got = b""
        with anyio.fail_after(DEADLINE):
            while data := await self.recv():
                got += data
        return got


@asynccontextmanager
async def served(
    protocol_class: type[asyncio.Protocol], guard: Guard, app: App, **options: Any
) -> AsyncIterator[Served]:
    """``protocol_class`` (bound to ``guard``) serving ``app`` on a socket pair, made as uvicorn
    makes it; the app's tasks are awaited when the connection ends."""
    uv = uvicorn.Config(app, lifespan="off", log_config=None, **options)  # the loggers left as they are
    uv.load()
    state = ServerState()
    server_side, client_side = socket.socketpair()
    client_side.setblocking(False)
    made: list[Any] = []

    def factory() -> asyncio.Protocol:
        protocol = protocol_class(config=uv, server_state=state, app_state={})  # type: ignore[call-arg]
        made.append(protocol)
        return protocol

    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(factory, server_side)
    try:
        yield Served(made[0], transport, client_side, guard, state)
    finally:
        transport.close()
        client_side.close()
        with anyio.fail_after(DEADLINE):
            await asyncio.gather(*state.tasks, return_exceptions=True)


def guard_of(**settings: Any) -> Guard:
    return Guard(Settings(**settings))


@contextmanager
def logged(*names: str) -> Iterator[list[logging.LogRecord]]:
    """Every record the named loggers (and their children) emit at info and above, as at
    ``--log-level info`` (the default)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.INFO)
    loggers = [logging.getLogger(name) for name in (*names, "uvicorn.error")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.INFO)
    for logger in loggers[: len(names)]:
        logger.addHandler(handler)
    try:
        yield records
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def loud(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.levelno >= logging.WARNING or r.exc_info]


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    """200 "ok" to any request; a WebSocket is accepted and held until the client goes."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass


GET = b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"


def http(guard: Guard, app: App = ok_app, **options: Any) -> Any:
    return served(http_protocol(guard), guard, app, ws=websocket_protocol(guard), **options)


# -- binding ---------------------------------------------------------------------------------------


def test_binding_makes_a_subclass_per_guard_and_leaves_the_module_classes_unbound() -> None:
    """Two servers, two guards: each bound class carries its own; the module's classes none."""
    a, b = guard_of(), guard_of()
    http_a, http_b = http_protocol(a), http_protocol(b)
    assert issubclass(http_a, GuardedHttpProtocol) and issubclass(http_b, GuardedHttpProtocol)
    assert http_a is not http_b and (http_a.guard, http_b.guard) == (a, b)
    assert http_a.__name__ == "GuardedHttpProtocol" and http_a.__module__ == protocols.__name__
    ws_off, ws_on = websocket_protocol(a, direct=False), websocket_protocol(a)
    assert issubclass(ws_off, GuardedWebSocketProtocol) and issubclass(ws_on, GuardedWebSocketProtocol)
    assert ws_off.guard is a and ws_off.direct is False and ws_on.direct is True
    assert not hasattr(GuardedHttpProtocol, "guard") and not hasattr(GuardedWebSocketProtocol, "guard")


def test_an_unbound_protocol_refuses_to_be_made() -> None:
    uv = uvicorn.Config(ok_app, lifespan="off")
    uv.load()
    for cls in (GuardedHttpProtocol, GuardedWebSocketProtocol):
        with pytest.raises(TypeError, match="has no guard"):
            cls(config=uv, server_state=ServerState(), app_state={})


async def test_uvicorn_makes_the_bound_protocols_and_they_count_into_the_services_guard() -> None:
    """runner.config() on a real uvicorn on loopback: uvicorn instantiates the bound HTTP class
    (a bad request is counted into the guard given) and, on an upgrade, the bound WebSocket
    class (its direct path offered)."""
    guard = guard_of()
    offered: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] == "websocket":
            offered.append(DIRECT in scope["extensions"])
        await ok_app(scope, receive, send)

    server = runner.Server(config(app, Settings(log_level="warning", ws_ping_interval=0), guard=guard))
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(DEADLINE):
                async with await anyio.connect_tcp("127.0.0.1", port) as conn:
                    await conn.send(b"NOT HTTP AT ALL\r\n\r\n")
                    assert (await conn.receive()).startswith(b"HTTP/1.1 400")
                async with connect(f"ws://127.0.0.1:{port}/ws"):
                    pass
            server.request_exit()
    assert guard.violations["bad_request"] == 1
    assert offered == [True]


# -- HTTP: the request timeout ---------------------------------------------------------------------


async def test_http_request_timeout_answers_408_when_no_complete_request_comes() -> None:
    """Half a head, then nothing: 408 and closed, counted."""
    guard = guard_of(header_timeout=0.05)
    async with http(guard) as conn:
        await conn.send(b"GET /x HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        got = await conn.recv_to_end()
    assert got.startswith(b"HTTP/1.1 408 ") and b"connection: close" in got
    assert guard.header_timeouts == 1


async def test_http_request_timer_is_disarmed_by_a_complete_request_and_rearmed_by_the_next() -> None:
    """Armed on connecting; off once a request is complete (an idle kept-alive connection is
    uvicorn's keep-alive timeout's); on again at the first byte of the next request."""
    async with http(guard_of()) as conn:
        proto = conn.protocol
        assert proto._request_timer is not None
        await conn.send(GET)
        await conn.recv_until(b"ok")
        assert proto._request_timer is None
        proto.data_received(b"G")  # as the transport delivers it
        assert proto._request_timer is not None


async def test_http_websocket_upgrade_hands_over_without_the_request_timer() -> None:
    async with http(guard_of()) as conn:
        client = ClientProtocol(parse_uri("ws://127.0.0.1/ws"))
        client.send_request(client.connect())
        await conn.send(b"".join(client.data_to_send()))
        await conn.recv_until(b"\r\n\r\n")
        assert conn.protocol._request_timer is None
        assert conn.transport.get_protocol().__class__.__name__ == "GuardedWebSocketProtocol"


# -- HTTP: the head cap ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b"GET /" + b"u" * 2000 + b" HTTP/1.1\r\n\r\n",  # the URL (on_url)
        b"GET / HTTP/1.1\r\nX-Big: " + b"v" * 2000 + b"\r\n\r\n",  # a header line (on_header)
        b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 11 + b"\r\n",  # too many lines (on_header)
        b"GET / HTTP/1.1\r\nX-Endless: " + b"v" * 3000,  # a head still incomplete (data_received)
    ],
    ids=["url", "header", "count", "partial"],
)
async def test_http_head_over_the_cap_gets_431_and_is_counted(head: bytes) -> None:
    guard = guard_of(max_header_bytes=1024, max_headers=10)
    with logged("uvicorn", "candlecast") as records:
        async with http(guard) as conn:
            await conn.send(head)
            got = await conn.recv_until(b"\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 431 ")
    assert guard.violations["oversize_head"] == 1
    assert [m for m in loud(records) if "oversize_head" not in m] == []


async def test_http_431_lingers_dropping_what_the_client_still_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reply, then FIN; what the client sends after is read and dropped (the parser is not
    fed again), and the connection is closed after LINGER."""
    monkeypatch.setattr(protocols, "LINGER", 0.25)
    lost = anyio.Event()
    guard = guard_of(max_header_bytes=1024)

    class Watched(http_protocol(guard)):  # type: ignore[misc]
        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            lost.set()

    async with served(Watched, guard, ok_app) as conn:
        await conn.send(b"GET /" + b"u" * 2000)
        got = await conn.recv_to_end()  # the reply and the FIN
        assert got.startswith(b"HTTP/1.1 431 ")
        assert not conn.transport.is_closing()  # lingering
        await conn.send(b"\x00 more of the same, not HTTP")  # read and dropped (the parser is not fed)
        with anyio.fail_after(DEADLINE):
            await lost.wait()
    assert (guard.violations["oversize_head"], guard.violations["bad_request"]) == (1, 0)


# -- HTTP: quiet violations ------------------------------------------------------------------------


async def test_http_invalid_request_is_a_400_and_one_counted_line_not_uvicorns_warning() -> None:
    guard = guard_of()
    with logged("uvicorn", "candlecast") as records:
        async with http(guard) as conn:
            await conn.send(b"\x16\x03\x01 not http\r\n\r\n")
            got = await conn.recv_to_end()
    assert got.startswith(b"HTTP/1.1 400 ")
    assert guard.violations["bad_request"] == 1
    messages = loud(records)
    assert len(messages) == 1 and "protocol violation (bad_request)" in messages[0], messages


async def test_http_unsupported_upgrade_is_served_as_http_and_counted_quietly() -> None:
    guard = guard_of()
    with logged("uvicorn", "candlecast") as records:
        async with http(guard) as conn:
            await conn.send(b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
            got = await conn.recv_until(b"ok")
    assert got.startswith(b"HTTP/1.1 200 ")
    assert guard.violations["bad_request"] == 1
    messages = loud(records)
    assert len(messages) == 1 and "unsupported upgrade" in messages[0], messages


# -- WebSocket: a client on the socket pair ---------------------------------------------------------


class Peer:
    """A WebSocket client on ``conn``'s socket: handshake, then every frame the server sends parsed."""

    def __init__(self, conn: Served) -> None:
        self.conn = conn
        self.proto = ClientProtocol(parse_uri("ws://127.0.0.1/ws"), max_size=None)
        self.events: list[Any] = []

    async def handshake(self) -> Response:
        self.proto.send_request(self.proto.connect())
        await self.flush()
        with anyio.fail_after(DEADLINE):
            while not any(isinstance(e, Response) for e in self.events):
                await self.read()
        [response] = [e for e in self.events if isinstance(e, Response)]
        return response

    async def flush(self) -> None:
        for data in self.proto.data_to_send():
            if data:
                await self.conn.send(data)

    async def read(self) -> None:
        data = await self.conn.recv()
        if data:
            self.proto.receive_data(data)
        else:
            self.proto.receive_eof()
        self.events.extend(self.proto.events_received())

    async def closed(self) -> tuple[int, str]:
        """Read until the server's close frame: its code and reason."""
        with anyio.fail_after(DEADLINE):
            while self.proto.close_rcvd is None:
                await self.read()
        return self.proto.close_rcvd.code, self.proto.close_rcvd.reason

    def texts(self) -> list[bytes]:
        return [bytes(e.data) for e in self.events if isinstance(e, Frame) and e.opcode is Opcode.TEXT]


def ws(guard: Guard, app: App, *, direct: bool = True, **options: Any) -> Any:
    options = {"ws_ping_interval": None, "ws_per_message_deflate": False, **options}
    return served(websocket_protocol(guard, direct=direct), guard, app, **options)


def masked(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A client frame masked with a zero key (the payload goes as it is); up to 125 bytes."""
    assert len(payload) <= 125
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


class Recorder:
    """An app that accepts, then records what it receives and how its sends end, until the
    disconnect; ``done`` is set when it returns."""

    def __init__(self) -> None:
        self.received: list[Any] = []
        self.send_after: BaseException | None = None
        self.scope: Any = None
        self.accepted = anyio.Event()
        self.done = anyio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scope = scope
        try:
            await receive()
            await send({"type": "websocket.accept"})
            self.accepted.set()
            while (message := await receive())["type"] != "websocket.disconnect":
                self.received.append(message)
            self.received.append(message)
            try:
                await send({"type": "websocket.send", "text": "after"})
            except Exception as exc:
                self.send_after = exc
        finally:
            self.done.set()


# -- WebSocket: the UTF-8 check ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "frames",
    [[(True, b"\xff\xfe not utf-8")], [(False, b"caf\xc3"), (True, b"\xa9 \xff")]],
    ids=["one-frame", "fragmented"],
)
async def test_ws_text_not_utf8_is_closed_1007_counted_in_one_line(frames: list[tuple[bool, bytes]]) -> None:
    """uvicorn would log a traceback: here one throttled line, a count, 1007, and the app sees
    a disconnect, then a gone client (ClientDisconnected), not uvicorn's RuntimeError."""
    guard, app = guard_of(), Recorder()
    with logged("uvicorn", "candlecast", "websockets") as records:
        async with ws(guard, app) as conn:
            peer = Peer(conn)
            await peer.handshake()
            for n, (fin, data) in enumerate(frames):
                await conn.send(masked(0x1 if n == 0 else 0x0, data, fin=fin))
            assert await peer.closed() == (1007, "invalid UTF-8")
            with anyio.fail_after(DEADLINE):
                await app.done.wait()
    assert [m["type"] for m in app.received] == ["websocket.disconnect"]
    assert isinstance(app.send_after, ClientDisconnected)
    assert guard.violations["invalid_utf8"] == 1
    messages = loud(records)
    assert len(messages) == 1 and "invalid_utf8" in messages[0] and "not UTF-8" in messages[0], messages


async def test_ws_valid_text_and_binary_messages_reach_the_app_once_decoded() -> None:
    guard, app = guard_of(), Recorder()
    async with ws(guard, app) as conn:
        peer = Peer(conn)
        await peer.handshake()
        await conn.send(masked(0x1, "café".encode()) + masked(0x2, b"\xff") + masked(0x1, b"a", fin=False))
        await conn.send(masked(0x0, b"b"))
        peer.proto.send_close(1000)
        await peer.flush()
        with anyio.fail_after(DEADLINE):
            await app.done.wait()
    assert app.received[:3] == [
        {"type": "websocket.receive", "text": "café"},
        {"type": "websocket.receive", "bytes": b"\xff"},
        {"type": "websocket.receive", "text": "ab"},
    ]
    assert sum(guard.violations.values()) == 0


# -- WebSocket: quiet violations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code", "kind"),
    [
        (masked(0x1, b"x" * 100), 1009, "oversize"),
        (b"\x81\x01a", 1002, "protocol"),  # unmasked: a framing error
        (masked(0x8, b"\x03\xe8\xff"), 1007, "invalid_utf8"),  # a close reason not UTF-8
    ],
    ids=["oversize", "framing", "close-reason"],
)
async def test_ws_parser_failure_is_closed_counted_once_in_one_line(frame: bytes, code: int, kind: str) -> None:
    """websockets fails the connection (its parser_exc); the protocol counts it, logs one line
    without a traceback, and the app's sends see a gone client."""
    guard, app = guard_of(), Recorder()
    with logged("uvicorn", "candlecast", "websockets") as records:
        async with ws(guard, app, ws_max_size=64) as conn:
            peer = Peer(conn)
            await peer.handshake()
            await conn.send(frame)
            assert (await peer.closed())[0] == code
            conn.protocol.handle_parser_exception()  # asked again (uvicorn asks on every read)
            with anyio.fail_after(DEADLINE):
                await app.done.wait()
    assert isinstance(app.send_after, ClientDisconnected)
    assert guard.violations[kind] == 1 and sum(guard.violations.values()) == 1
    messages = loud(records)
    assert len(messages) == 1 and f"({kind})" in messages[0], messages


async def test_ws_refused_handshake_is_counted_in_one_line_and_websockets_info_held_back() -> None:
    """websockets logs each refused handshake at info ("connection rejected"): held back; the
    guard's one throttled line stays."""
    guard, app = guard_of(), Recorder()
    with logged("uvicorn", "candlecast", "websockets") as records:
        async with ws(guard, app) as conn:
            await conn.send(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            got = await conn.recv_to_end()
    assert got.startswith(b"HTTP/1.1 400 ")
    assert guard.violations["bad_handshake"] == 1
    assert [r.getMessage() for r in records if r.levelno >= logging.INFO] == [
        m for m in loud(records) if "bad_handshake" in m
    ]
    assert len(loud(records)) == 1
    assert conn.protocol.conn.logger is not protocols._QUIET  # put back after the handshake


async def test_ws_keepalive_timeout_makes_the_apps_sends_see_a_gone_client() -> None:
    guard, app = guard_of(), Recorder()
    async with ws(guard, app) as conn:
        peer = Peer(conn)
        await peer.handshake()
        conn.protocol.keepalive_timeout()  # uvicorn's pong timer, fired now
        assert conn.protocol.disconnected and conn.transport.is_closing()
        with anyio.fail_after(DEADLINE):
            await app.done.wait()
    assert isinstance(app.send_after, ClientDisconnected)


# -- WebSocket: flow control, both ways ---------------------------------------------------------------


class Flooder:
    """An app that accepts, then on command writes frames straight to its channel until the
    transport is above its high-water mark, and receives only when told to."""

    def __init__(self) -> None:
        self.channel: DirectChannel | None = None
        self.accepted = anyio.Event()
        self.go_receive = anyio.Event()
        self.go_close = anyio.Event()
        self.received: list[Any] = []
        self.got = anyio.Event()
        self.done = anyio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await receive()
            await send({"type": "websocket.accept"})
            self.channel = scope["extensions"][DIRECT]["channel"]
            self.accepted.set()
            await self.go_receive.wait()
            self.received.append(await receive())
            self.got.set()
            await self.go_close.wait()
            await send({"type": "websocket.close", "code": 1000})
        finally:
            self.done.set()

    def flood(self) -> int:
        assert self.channel is not None
        frame = text_frame(b'"' + b"x" * 60_000 + b'"')
        for n in range(10_000):  # bounded: the socket pair's buffers are far smaller
            if not self.channel.ready():
                return n
            self.channel.write(frame)
        raise AssertionError("the transport never paused")


def noticing(guard: Guard, messages: int) -> tuple[type[asyncio.Protocol], anyio.Event]:
    """The bound WebSocket protocol, setting an event once ``messages`` messages were queued for the app."""
    queued = anyio.Event()
    count = 0

    class Noticing(websocket_protocol(guard)):  # type: ignore[misc]
        def send_receive_event_to_app(self) -> None:
            nonlocal count
            super().send_receive_event_to_app()
            count += 1
            if count >= messages:
                queued.set()

    return Noticing, queued


async def test_ws_reading_stops_while_the_outgoing_buffer_is_full_and_resumes_when_it_drains() -> None:
    """A client that does not read is not read: its messages wait in its own socket; counted."""
    guard, app = guard_of(), Flooder()
    paused = on_read_pause(guard)
    async with ws(guard, app) as conn:
        peer = Peer(conn)
        await peer.handshake()
        with anyio.fail_after(DEADLINE):
            await app.accepted.wait()
            written = app.flood()
            await paused.wait()
            assert conn.protocol.write_paused and not conn.transport.is_reading()
            assert guard.read_pauses == 1
            app.go_receive.set()
            await conn.send(masked(0x1, b"while full"))
            while len(peer.texts()) < written:  # the client reads: the server reads it again
                await peer.read()
            await app.got.wait()
            app.go_close.set()
    assert app.received == [{"type": "websocket.receive", "text": "while full"}]
    assert not conn.protocol.write_paused


@pytest.mark.parametrize("lifted_first", ["buffer", "message"])
async def test_ws_reading_resumes_only_when_neither_the_buffer_nor_a_message_holds_it(lifted_first: str) -> None:
    """Two reasons to pause (a message waiting for the app, a full outgoing buffer): lifting
    either one first (the buffer drains, or the app takes the message) leaves reading paused;
    lifting the second resumes it."""
    guard, app = guard_of(), Flooder()
    paused = on_read_pause(guard)
    protocol_class, queued = noticing(guard, 1)
    async with served(protocol_class, guard, app, ws_ping_interval=None, ws_per_message_deflate=False) as conn:
        peer = Peer(conn)
        await peer.handshake()

        async def drain() -> None:
            while len(peer.texts()) < written:  # once the peer has it all, resume_writing ran
                await peer.read()
            assert not conn.protocol.write_paused

        async def take() -> None:
            app.go_receive.set()
            await app.got.wait()
            assert not conn.protocol.read_paused

        with anyio.fail_after(DEADLINE):
            await app.accepted.wait()
            await conn.send(masked(0x1, b"waits"))
            await queued.wait()  # uvicorn pauses reading once the message is queued
            assert conn.protocol.read_paused
            written = app.flood()
            await paused.wait()
            first, second = (drain, take) if lifted_first == "buffer" else (take, drain)
            await first()
            assert not conn.transport.is_reading()  # the other reason still holds
            await second()
            assert conn.transport.is_reading()
            app.go_close.set()


async def test_ws_a_close_that_fills_the_buffer_keeps_reading_paused() -> None:
    """uvicorn resumes reading when the app sends its close frame; if that frame took the buffer
    over its high-water mark, reading stays paused."""
    guard, app = guard_of(), Flooder()
    protocol_class, queued = noticing(guard, 2)
    async with served(protocol_class, guard, app, ws_ping_interval=None, ws_per_message_deflate=False) as conn:
        peer = Peer(conn)
        await peer.handshake()
        with anyio.fail_after(DEADLINE):
            await app.accepted.wait()
            await conn.send(masked(0x1, b"one") + masked(0x1, b"two"))
            await queued.wait()
            app.go_receive.set()
            await app.got.wait()  # one taken, one waits: uvicorn's read_paused holds
            assert conn.protocol.read_paused
            # the socket's buffers full and a few bytes in the transport's, just below its mark
            transport, channel = conn.transport, app.channel
            assert channel is not None
            transport.set_write_buffer_limits(high=1 << 24)
            frame = text_frame(b'"' + b"x" * 60_000 + b'"')
            for _ in range(10_000):
                if transport.get_write_buffer_size():
                    break
                channel.write(frame)
            transport.set_write_buffer_limits(high=transport.get_write_buffer_size() + 1, low=0)
            assert not conn.protocol.write_paused
            app.go_close.set()  # the close frame takes the buffer over the mark again
            await app.done.wait()
            assert conn.protocol.close_sent and conn.protocol.write_paused
            assert not transport.is_reading()


# -- WebSocket: the handshake freed, the direct path offered ------------------------------------------


async def test_ws_accept_frees_the_handshake_request_and_response() -> None:
    """uvicorn keeps the handshake's request and response (``request``, ``response``); after the
    accept they are dropped, and the request websockets' parser still holds is emptied."""
    guard = guard_of()
    held: list[tuple[Any, Any]] = []
    accepted = anyio.Event()
    served_conn: list[Served] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        proto = served_conn[0].protocol
        held.append((proto.request, proto.response))
        await send({"type": "websocket.accept"})
        accepted.set()
        while (await receive())["type"] != "websocket.disconnect":
            pass

    async with ws(guard, app) as conn:
        served_conn.append(conn)
        await Peer(conn).handshake()
        with anyio.fail_after(DEADLINE):
            await accepted.wait()
        assert conn.protocol.request is None and conn.protocol.response is None
    [(request, response)] = held
    assert isinstance(request, Request) and isinstance(response, Response) and response.status_code == 101
    assert len(request.headers) == 0


@pytest.mark.parametrize(
    ("direct", "deflate", "offered"),
    [(True, False, True), (False, False, False), (True, True, False)],
    ids=["on", "off", "deflate"],
)
async def test_ws_direct_path_is_offered_only_when_on_and_uncompressed(
    direct: bool, deflate: bool, offered: bool
) -> None:
    """Offered, the channel opens at the accept and closes with the app's close frame."""
    guard, app = guard_of(), Recorder()
    async with ws(guard, app, direct=direct, ws_per_message_deflate=deflate) as conn:
        with anyio.fail_after(DEADLINE):
            await Peer(conn).handshake()
            await app.accepted.wait()
        assert (DIRECT in app.scope["extensions"]) is offered
        channel = conn.protocol.channel
        assert (channel is not None) is offered
        if channel is not None:
            assert app.scope["extensions"][DIRECT] == {"channel": channel}
            assert channel.open and channel.ready()


async def test_ws_direct_channel_opens_at_the_accept_and_closes_with_the_close_frame() -> None:
    guard, app = guard_of(), Flooder()
    async with ws(guard, app) as conn:
        peer = Peer(conn)
        with anyio.fail_after(DEADLINE):
            await peer.handshake()
            await app.accepted.wait()
            channel = app.channel
            assert channel is not None and channel.open and channel is conn.protocol.channel
            await conn.send(masked(0x1, b"x"))
            app.go_receive.set()
            app.go_close.set()
            await app.done.wait()
            assert not channel.open and not channel.ready()
            assert (await peer.closed())[0] == 1000


# -- the direct path: prepared frames beside uvicorn's own, the writable flag, the inbox -----------


async def test_direct_frames_interleave_with_sends_pings_and_stop_after_the_close() -> None:
    """Prepared frames written directly, frames sent through ASGI and uvicorn's keepalive pings
    arrive as a valid stream in order; after the close frame the channel refuses to be ready."""
    done = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        channel = scope["extensions"][DIRECT]["channel"]
        assert channel.ready()
        channel.write(text_frame(b'"d1"') + text_frame(b'"d2"'))  # two frames, one write
        await send({"type": "websocket.send", "text": '"s3"'})
        protocol.send_keepalive_ping()  # uvicorn's own ping, between our frames
        channel.write(text_frame(b'"d4"'))
        await send({"type": "websocket.close", "code": 1001, "reason": "bye"})
        assert not channel.ready()  # closed: nothing more may be written
        done.set()

    async with ws(guard_of(), app) as conn:
        protocol = conn.protocol
        peer = Peer(conn)
        await peer.handshake()
        with anyio.fail_after(DEADLINE):
            await done.wait()
        assert (await peer.closed())[0] == 1001
    assert peer.texts() == [b'"d1"', b'"d2"', b'"s3"', b'"d4"']
    opcodes = [e.opcode for e in peer.events if isinstance(e, Frame)]
    assert opcodes == [Opcode.TEXT, Opcode.TEXT, Opcode.TEXT, Opcode.PING, Opcode.TEXT, Opcode.CLOSE]


async def test_no_direct_path_with_compression() -> None:
    """permessage-deflate frames are per connection: the extension is not offered."""
    offered: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        offered.append(DIRECT in scope["extensions"])
        await send({"type": "websocket.close", "code": 1000})

    async with ws(guard_of(), app, ws_per_message_deflate=True) as conn:
        peer = Peer(conn)
        peer.proto.send_request(peer.proto.connect())
        await peer.flush()
        with anyio.fail_after(DEADLINE):
            while not offered:
                await peer.read()
    assert offered == [False]


async def test_channel_is_ready_only_while_open_and_below_the_high_water_mark() -> None:
    """Not before accept; not while the transport is paused (the peer reads nothing), again once
    the peer has drained it; never after the peer's close frame or a lost connection."""
    accepted = anyio.Event()
    states: dict[str, bool] = {}
    channels: list[DirectChannel] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        channel = scope["extensions"][DIRECT]["channel"]
        channels.append(channel)
        states["before accept"] = channel.ready()
        await send({"type": "websocket.accept"})
        states["accepted"] = channel.ready()
        accepted.set()
        while (await receive())["type"] != "websocket.disconnect":
            pass

    async with ws(guard_of(), app) as conn:
        peer, transport = Peer(conn), conn.transport
        await peer.handshake()
        with anyio.fail_after(DEADLINE):
            await accepted.wait()
            assert states == {"before accept": False, "accepted": True}
            [channel] = channels
            frame = text_frame(b'"' + b"x" * 65_000 + b'"')
            written = 0
            for _ in range(10_000):  # bounded: the socket pair's buffers are far smaller
                if not channel.ready():
                    break
                channel.write(frame)
                written += 1
            assert not channel.ready() and not channel.writable  # paused by the transport
            while len(peer.texts()) < written:  # the peer drains: uvicorn resumes writing
                await peer.read()
            assert channel.ready()
            peer.proto.send_close(1000)
            await peer.flush()
            while channel.ready():  # uvicorn answers the close and closes the transport
                await peer.read()
            assert transport.is_closing()  # closed by uvicorn after echoing the close
    assert not channel.ready()


async def test_flag_wakes_every_waiter_on_set_and_blocks_after_clear() -> None:
    """The writable flag behaves as uvicorn expects of asyncio.Event: set wakes all waiters
    (a session's send and its close), clear makes the next wait block."""
    flag = Flag()
    assert not flag.is_set()
    woken: list[int] = []

    async def wait(n: int) -> None:
        assert await flag.wait() is True
        woken.append(n)

    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait, 1)
            tg.start_soon(wait, 2)
            await anyio.wait_all_tasks_blocked()
            assert woken == []
            flag.set()
        assert sorted(woken) == [1, 2] and flag.is_set()
        assert await flag.wait() is True  # set: no wait at all
        flag.clear()
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait, 3)
            await anyio.wait_all_tasks_blocked()
            assert 3 not in woken  # cleared: the wait blocks
            tg.cancel_scope.cancel()
        flag.set()  # nothing left to wake: the cancelled wait took its waiter with it
        assert 3 not in woken


async def test_inbox_is_first_in_first_out_with_one_waiter() -> None:
    inbox = Inbox()
    assert inbox.empty() and inbox.qsize() == 0
    got: list[str] = []

    async def get_two() -> None:
        got.append(await inbox.get())
        got.append(await inbox.get())

    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            tg.start_soon(get_two)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(RuntimeError, match="already awaited"):
                await inbox.get()
            inbox.put_nowait("a")
            inbox.put_nowait("b")
            inbox.put_nowait("c")
    assert got == ["a", "b"] and inbox.qsize() == 1


# -- the internals the protocols read (uvicorn 0.54.0, websockets 17.4) ---------------------------------


async def test_internals_uvicorn_http_protocol_has_the_methods_and_state_read() -> None:
    """``_unset_keepalive_if_required`` and ``_should_upgrade`` (protocols' _stop_keepalive_timer,
    _wants_websocket), and the timer attribute the first cancels."""
    for name in ("_unset_keepalive_if_required", "_should_upgrade", "send_400_response", "handle_websocket_upgrade"):
        assert callable(getattr(HttpToolsProtocol, name, None)), f"uvicorn's HttpToolsProtocol.{name} is gone"
    uv = uvicorn.Config(ok_app, lifespan="off")
    uv.load()
    proto = HttpToolsProtocol(config=uv, server_state=ServerState(), app_state={})
    assert proto.timeout_keep_alive_task is None


async def test_internals_stopping_the_keepalive_timer_cancels_uvicorns() -> None:
    """After a response uvicorn arms its keep-alive timer; the next bytes cancel it."""
    async with http(guard_of()) as conn:
        await conn.send(GET)
        await conn.recv_until(b"ok")
        timer = conn.protocol.timeout_keep_alive_task
        assert timer is not None
        conn.protocol.data_received(b"G")
        assert conn.protocol.timeout_keep_alive_task is None and timer.cancelled()


async def test_internals_uvicorn_websocket_protocol_has_the_state_read() -> None:
    """The message buffer (``frames``, ``curr_msg_data_type``), the queue and event replaced
    by Inbox and Flag, and the methods overridden."""
    uv = uvicorn.Config(ok_app, lifespan="off", ws_per_message_deflate=False)
    uv.load()
    proto = WebSocketsSansIOProtocol(config=uv, server_state=ServerState(), app_state={})
    assert proto.frames == [] and proto.curr_msg_data_type == "bytes"
    assert isinstance(proto.queue, asyncio.Queue) and isinstance(proto.writable, asyncio.Event)
    assert isinstance(proto.conn, ServerProtocol) and proto.read_paused is False
    for name in (
        "send_receive_event_to_app",
        "handle_parser_exception",
        "handle_connect",
        "keepalive_timeout",
        "pause_writing",
        "resume_writing",
    ):
        assert callable(getattr(WebSocketsSansIOProtocol, name, None)), f"uvicorn's {name} is gone"
    bound: Any = websocket_protocol(guard_of())(config=uv, server_state=ServerState(), app_state={})  # type: ignore[call-arg]
    assert isinstance(bound.queue, Inbox) and isinstance(bound.writable, Flag) and bound.writable.is_set()


@pytest.mark.parametrize(
    ("frame", "exc"),
    [(b"\x81\x01a", "ProtocolError"), (masked(0x1, b"too long"), "PayloadTooBig")],
)
def test_internals_websockets_parser_exc_is_what_stopped_the_parser(frame: bytes, exc: str) -> None:
    """``Protocol.parser_exc`` (protocols' _parser_exception): None, then the exception."""
    server = Protocol(Side.SERVER, state=State.OPEN, max_size=4)
    assert server.parser_exc is None
    server.receive_data(frame)
    assert type(server.parser_exc).__name__ == exc
