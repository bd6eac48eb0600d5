"""Real servers for integration tests: candlecast under uvicorn, and a fake broker.

Both listen on 127.0.0.1 port 0. candlecast gets a socket the test bound itself, so clients
can connect at once (the kernel queues them until uvicorn accepts): no start-up wait.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import orjson
from anyio.streams.buffered import BufferedByteReceiveStream
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve

from candlecast.server.runner import Server, config
from candlecast.settings import Settings
from candlecast.web.app import Service
from tests.conftest import DEADLINE
from tests.support import free_port


def bind(port: int = 0, *, sndbuf: int | None = None) -> socket.socket:
    """A listening loopback socket; ``sndbuf`` (inherited by accepted sockets on Linux) keeps
    the server's kernel send buffers small, so a client that stops reading stalls it soon."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sndbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


@dataclasses.dataclass
class Candlecast:
    server: Server
    service: Service
    port: int
    settings: Settings

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/ws" + (f"?{query}" if query else "")

    async def metric(self, name: str) -> float:
        """One sample from ``/metrics`` (``name`` with its labels, e.g. ``x_total{reason="json"}``)."""
        async with httpx.AsyncClient() as http:
            text = (await http.get(self.url + "/metrics")).text
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"{name} not in /metrics")


@asynccontextmanager
async def candlecast(
    settings: Settings, *, port: int = 0, log_level: str = "warning", sndbuf: int | None = None
) -> AsyncIterator[Candlecast]:
    """A real candlecast (uvicorn + app + producer thread) on a loopback port (0: ephemeral)."""
    sock = bind(port, sndbuf=sndbuf)
    port = sock.getsockname()[1]
    service = Service(dataclasses.replace(settings, port=port))
    server = Server(
        config(service.asgi, dataclasses.replace(settings, port=port, log_level=log_level), guard=service.guard),
        drain=service.drain,
    )
    with sock:  # closed however the test ends
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            try:
                yield Candlecast(server, service, port, settings)
            finally:
                server.request_exit()


class FakeBroker:
    """A real WebSocket server playing the broker. Tests push messages on command."""

    def __init__(self) -> None:
        self.connections: list[ServerConnection] = []
        self.received: list[str | bytes] = []
        self._connected = asyncio.Condition()
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stream"

    async def _handler(self, conn: ServerConnection) -> None:
        async with self._connected:
            self.connections.append(conn)
            self._connected.notify_all()
        async for message in conn:
            self.received.append(message)

    async def wait_connections(self, n: int) -> ServerConnection:
        """Wait until the broker has seen ``n`` connections in all; the latest one."""
        with anyio.fail_after(DEADLINE):
            async with self._connected:
                await self._connected.wait_for(lambda: len(self.connections) >= n)
        return self.connections[-1]

    @property
    def current(self) -> ServerConnection:
        return self.connections[-1]

    async def send(self, *messages: Any) -> None:
        """Send each message (dicts as JSON) on the latest connection."""
        conn = self.current
        for msg in messages:
            await conn.send(msg if isinstance(msg, str | bytes) else orjson.dumps(msg).decode())


@asynccontextmanager
async def fake_broker(port: int = 0) -> AsyncIterator[FakeBroker]:
    broker = FakeBroker()
    async with serve(broker._handler, "127.0.0.1", port, compression=None) as server:
        broker.port = next(iter(server.sockets)).getsockname()[1]
        yield broker


def seed(symbol: str, i: int, *, price: float = 100.0) -> dict[str, Any]:
    """A seed-format message whose ``ot`` and ``time`` carry the sequence number ``i``."""
    return {"symbol": symbol, "time": i, "candles": [i, price, price + 0.5, price + 1.0, price - 1.0]}


@asynccontextmanager
async def client(url: str, **kwargs: Any) -> AsyncIterator[ClientConnection]:
    async with connect(url, compression=None, proxy=None, open_timeout=DEADLINE, **kwargs) as ws:
        yield ws


async def recv_json(ws: ClientConnection) -> Any:
    with anyio.fail_after(DEADLINE):
        return orjson.loads(await ws.recv())


async def synced(ws: ClientConnection) -> list[Any]:
    """Ping and read until the pong: the session is subscribed. Returns what came before it."""
    await ws.send('{"op":"ping","id":"sync"}')
    before: list[Any] = []
    while True:
        msg = await recv_json(ws)
        if isinstance(msg, dict) and msg.get("op") == "pong" and msg.get("id") == "sync":
            return before
        before.append(msg)


def ws_settings(broker: FakeBroker, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "source": "ws",
        "upstream": broker.url,
        "format": "seed",
        "reconnect_min": 0.02,
        "reconnect_max": 0.1,
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def candlecast_process(*args: str, **env: str) -> AsyncIterator[tuple[str, list[str]]]:
    """``python -m candlecast`` as operators run it, ``env`` as its ``CANDLECAST_*`` variables;
    yields its address and every line it writes (stdout and stderr), live."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CANDLECAST_")}
    environ.update({f"CANDLECAST_{k.upper()}": v for k, v in env.items()})
    cmd = [sys.executable, "-m", "candlecast", "--host", "127.0.0.1", "--port", str(port), *args]
    lines: list[str] = []
    async with await anyio.open_process(cmd, env=environ) as proc, anyio.create_task_group() as tg:
        assert proc.stdout is not None and proc.stderr is not None
        started = anyio.Event()

        async def drain(stream: Any) -> None:
            buffered = BufferedByteReceiveStream(stream)
            try:
                while True:
                    line = (await buffered.receive_until(b"\n", 1 << 20)).decode("utf-8", "backslashreplace")
                    lines.append(line)
                    if "Uvicorn running on" in line:  # logged once it listens
                        started.set()
            except (anyio.EndOfStream, anyio.IncompleteRead):
                return

        tg.start_soon(drain, proc.stdout)
        tg.start_soon(drain, proc.stderr)
        with anyio.fail_after(DEADLINE):
            await started.wait()
        try:
            yield f"127.0.0.1:{port}", lines
        finally:
            proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(DEADLINE):
                await proc.wait()
