"""The direct path of candlecast's uvicorn WebSocket protocol, driven through a real socket pair
and read back with a real WebSocket client parser (websockets' sans-I/O ClientProtocol)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
import uvicorn
from uvicorn.server import ServerState
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import Protocol, Side, State
from websockets.uri import parse_uri

from candlecast.access.guard import Guard
from candlecast.server.protocols import DIRECT, DirectChannel, Flag, Inbox, websocket_protocol
from candlecast.settings import Settings
from candlecast.wire.frames import text_frame
from tests.conftest import DEADLINE


@pytest.mark.parametrize("n", [0, 1, 125, 126, 65_535, 65_536])
def test_text_frame_is_what_a_websocket_parser_reads(n: int) -> None:
    """Every length class of the header (7-bit, 16-bit, 64-bit) parses back to the payload."""
    client = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)  # the frame parser alone
    payload = ("é" * (n // 2) + "a" * (n % 2)).encode()
    client.receive_data(text_frame(payload))
    [event] = client.events_received()
    assert isinstance(event, Frame) and event.opcode is Opcode.TEXT and event.fin and event.data == payload


class Peer:
    """The client side of the socket pair: handshake, then every event parsed."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.proto = ClientProtocol(parse_uri("ws://127.0.0.1/ws"))
        self.events: list[Any] = []

    async def handshake(self) -> None:
        request = self.proto.connect()
        self.proto.send_request(request)
        await self.flush()
        while not any(isinstance(e, Response) for e in self.events):
            await self.read()

    async def flush(self) -> None:
        for data in self.proto.data_to_send():
            if data:
                await anyio.wait_writable(self.sock)
                self.sock.send(data)

    async def read(self) -> None:
        await anyio.wait_readable(self.sock)
        data = self.sock.recv(1 << 20)
        if data:
            self.proto.receive_data(data)
        else:
            self.proto.receive_eof()
        self.events.extend(self.proto.events_received())

    def texts(self) -> list[str]:
        return [bytes(e.data).decode() for e in self.events if isinstance(e, Frame) and e.opcode is Opcode.TEXT]


@dataclass
class Served:
    """candlecast's WebSocket protocol serving ``app`` on one end of a socket pair; the peer on
    the other."""

    protocol: Any
    transport: asyncio.BaseTransport
    peer: Peer


@asynccontextmanager
async def served(app: Any, **config: Any) -> AsyncIterator[Served]:
    uv = uvicorn.Config(app, lifespan="off", **config)
    uv.load()
    protocol_class = websocket_protocol(Guard(Settings()))
    server_side, client_side = socket.socketpair()
    client_side.setblocking(False)
    made: list[Any] = []

    def factory() -> asyncio.Protocol:
        protocol: asyncio.Protocol = protocol_class(config=uv, server_state=ServerState(), app_state={})  # type: ignore[call-arg]
        made.append(protocol)
        return protocol

    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(factory, server_side)
    try:
        yield Served(made[0], transport, Peer(client_side))
    finally:
        transport.close()
        client_side.close()


async def test_direct_frames_interleave_with_sends_pings_and_stop_after_the_close() -> None:
    """Prepared frames written directly, frames sent through ASGI and uvicorn's keepalive pings
    arrive as a valid stream in order; after the close frame the channel refuses to be ready."""
    channels: list[DirectChannel] = []
    done = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        channel = scope["extensions"][DIRECT]["channel"]
        channels.append(channel)
        assert channel.ready()
        channel.write(text_frame(b'"d1"') + text_frame(b'"d2"'))  # two frames, one write
        await send({"type": "websocket.send", "text": '"s3"'})
        protocol.send_keepalive_ping()  # uvicorn's own ping, between our frames
        channel.write(text_frame(b'"d4"'))
        await send({"type": "websocket.close", "code": 1001, "reason": "bye"})
        assert not channel.ready()  # closed: nothing more may be written
        done.set()

    async with served(app, ws_ping_interval=None, ws_per_message_deflate=False) as conn:
        protocol = conn.protocol
        peer = conn.peer
        with anyio.fail_after(DEADLINE):
            await peer.handshake()
            await done.wait()
            while not any(isinstance(e, Frame) and e.opcode is Opcode.CLOSE for e in peer.events):
                await peer.read()
    assert peer.texts() == ['"d1"', '"d2"', '"s3"', '"d4"']
    opcodes = [e.opcode for e in peer.events if isinstance(e, Frame)]
    assert opcodes == [Opcode.TEXT, Opcode.TEXT, Opcode.TEXT, Opcode.PING, Opcode.TEXT, Opcode.CLOSE]
    assert peer.proto.close_rcvd is not None and peer.proto.close_rcvd.code == 1001


async def test_no_direct_path_with_compression() -> None:
    """permessage-deflate frames are per connection: the extension is not offered."""
    offered: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        offered.append(DIRECT in scope["extensions"])
        await send({"type": "websocket.close", "code": 1000})

    async with served(app, ws_per_message_deflate=True) as conn:
        with anyio.fail_after(DEADLINE):
            await conn.peer.handshake()
            while not offered:
                await conn.peer.read()
    assert offered == [False]


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

    async with served(app, ws_ping_interval=None, ws_per_message_deflate=False) as conn:
        peer, transport = conn.peer, conn.transport
        with anyio.fail_after(DEADLINE):
            await peer.handshake()
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
