"""Helpers for the scale-out tests: a real redis-server on a loopback port, candlecast processes
by role (in-process or as subprocesses), a broker that sends to every connection, and the
backplane's log lines as events."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
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
        self.ready_at = 0.0  # monotonic time of its last "Ready to accept connections" line

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
        self.ready_at = time.monotonic()

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
    """Settings of an ingest (reading ``upstream`` in the seed format) or an edge. The broker's
    reconnect pacing stays at its defaults: the backplane's Redis retry does not depend on it."""
    values: dict[str, Any] = {"role": role, "redis_url": redis, "lease_ttl": 1.0}
    if role == "ingest":
        values.update(source="ws", format="seed")
    values.update(overrides)
    return Settings(**values)


class Lines(logging.Handler):
    """The backplane's log records, as they are written; :meth:`wait_for` awaits one (event
    loop only: in-process roles log from it)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._changed = anyio.Event()

    @property
    def lines(self) -> list[str]:
        return [r.getMessage() for r in self.records]

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self._changed.set()

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    async def wait_for(self, text: str, n: int = 1) -> None:
        with anyio.fail_after(DEADLINE):
            while self.count(text) < n:
                self._changed = anyio.Event()
                await self._changed.wait()


@contextmanager
def backplane_log() -> Iterator[Lines]:
    """Every record of ``candlecast.backplane`` (info included) while inside."""
    logger = logging.getLogger("candlecast.backplane")
    handler = Lines()
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


#: What an edge logs when Redis holds no stream yet and it follows it from its first entry.
FOLLOWING = "following it from 0-0"


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
