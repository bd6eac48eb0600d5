"""Raw WebSocket clients for attacks: a handshake sent by hand, masked frames built by hand,
and a TCP connection whose receive buffer is tiny, so the server's writes stall on it."""

from __future__ import annotations

import base64
import os

import anyio
from anyio.abc import SocketStream

from candlecast.access.guard import Guard
from tests.conftest import DEADLINE
from tests.support import stalled_socket


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (FIN set) masked with a zero key, so the payload goes as it is."""
    n = len(payload)
    length = bytes([0x80 | n]) if n <= 125 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return bytes([0x80 | opcode]) + length + b"\0\0\0\0" + payload


PING = masked_frame(0x9, b"p" * 125)


async def stalled_stream(port: int) -> SocketStream:
    """A TCP connection to ``port`` with a tiny receive buffer (set before connecting)."""
    sock = stalled_socket()
    sock.setblocking(True)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return await SocketStream.from_socket(sock)


async def upgrade(stream: SocketStream, path: str = "/ws?symbols=NONE") -> None:
    """Send a WebSocket handshake and read its 101 response, and nothing after it."""
    key = base64.b64encode(os.urandom(16)).decode()
    await stream.send(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    with anyio.fail_after(DEADLINE):
        while b"\r\n\r\n" not in head:
            head += await stream.receive(1)  # byte by byte: any frame after it stays unread
    assert head.startswith(b"HTTP/1.1 101"), head


def on_read_pause(guard: Guard) -> anyio.Event:
    """An event set when a connection counting into ``guard`` stops being read for backpressure
    (the guard still counts it)."""
    paused = anyio.Event()
    counted = guard.backpressured

    def hook(peer: tuple[str, int] | None) -> None:
        counted(peer)
        paused.set()

    guard.backpressured = hook  # type: ignore[method-assign]
    return paused
