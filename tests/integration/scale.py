"""Helpers for the scale-out tests: a real redis-server on a loopback port, candlecast processes
by role (in-process or as subprocesses), and a broker that sends to every connection."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import orjson
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from redis.asyncio import Redis

from candlecast.settings import Settings
from tests.conftest import DEADLINE, require_binary
from tests.integration.harness import FakeBroker
from tests.support import free_port


class RedisServer:
    """A real redis-server without persistence on a loopback port; killable and restartable on
    the same port (it comes back empty)."""

    def __init__(self, binary: str, port: int) -> None:
        self.binary = binary
        self.port = port
        self.proc: Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Redis:
        return Redis.from_url(self.url)

    async def start(self) -> None:
        cmd = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = proc = await anyio.open_process(cmd, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        log = BufferedByteReceiveStream(proc.stdout)
        with anyio.fail_after(DEADLINE):  # redis logs this once it listens
            while b"Ready to accept connections" not in await log.receive_until(b"\n", 65536):
                pass

    async def kill(self) -> None:
        """SIGKILL: everything it held is gone."""
        if self.proc is not None:
            self.proc.kill()
            await self.proc.wait()
            await self.proc.aclose()
            self.proc = None


@asynccontextmanager
async def redis_server() -> AsyncIterator[RedisServer]:
    server = RedisServer(require_binary("redis-server"), free_port())
    await server.start()
    try:
        yield server
    finally:
        with anyio.CancelScope(shield=True):
            await server.kill()


def role_settings(role: str, redis: str, **overrides: Any) -> Settings:
    """Settings of an ingest (reading ``upstream`` in the seed format) or an edge."""
    values: dict[str, Any] = {
        "role": role,
        "redis_url": redis,
        "reconnect_min": 0.02,
        "reconnect_max": 0.1,
        "lease_ttl": 1.0,
    }
    if role == "ingest":
        values.update(source="ws", format="seed")
    values.update(overrides)
    return Settings(**values)


async def broadcast(broker: FakeBroker, *messages: Any) -> None:
    """Send each message on every open broker connection (an ingest and a role=all process)."""
    for conn in broker.connections:
        if conn.state.name == "OPEN":
            for msg in messages:
                await conn.send(orjson.dumps(msg).decode())


class Child:
    """``python -m candlecast`` as a subprocess, with its log."""

    def __init__(self, proc: Process, log: BufferedByteReceiveStream, port: int) -> None:
        self.proc = proc
        self.port = port
        self.log = log
        self.lines: list[bytes] = []

    async def wait_log(self, text: bytes) -> None:
        with anyio.fail_after(DEADLINE):
            while True:
                line = await self.log.receive_until(b"\n", 65536)
                self.lines.append(line)
                if text in line:
                    return

    async def rest(self) -> bytes:
        """The log to the end (after exit)."""
        out = b"\n".join(self.lines)
        try:
            while True:
                out += b"\n" + await self.log.receive_until(b"\n", 65536)
        except (anyio.EndOfStream, anyio.IncompleteRead):
            return out


@asynccontextmanager
async def child(*args: str) -> AsyncIterator[Child]:
    """A candlecast subprocess with ``args`` on a free port; killed at exit if still running."""
    port = free_port()
    cmd = [sys.executable, "-m", "candlecast", "--port", str(port), "--log-level", "info", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    async with await anyio.open_process(cmd, env=env, stderr=subprocess.STDOUT) as proc:
        assert proc.stdout is not None
        try:
            yield Child(proc, BufferedByteReceiveStream(proc.stdout), port)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
                with anyio.CancelScope(shield=True):
                    await proc.wait()
