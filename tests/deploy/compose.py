"""Driving compose.yaml for real: the Compose v2 CLI that scripts/compose-test names in
``CANDLECAST_COMPOSE`` (its private engine, the project, compose.yaml and compose.test.yaml),
a stack's lifetime (up until healthy, down), its containers' logs and metrics, and the relay
broker the scale tests drive.

Without ``CANDLECAST_COMPOSE`` there is no engine: the tests skip locally and fail under
``CI=true`` (tests/conftest.py's rule for system binaries).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import orjson
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from websockets.asyncio.client import ClientConnection

from tests.conftest import DEADLINE, IN_CI
from tests.integration.harness import client, recv_json, seed, synced
from tests.support import free_port

#: The environment variable scripts/compose-test sets: the compose command line, shell-quoted.
COMPOSE_ENV = "CANDLECAST_COMPOSE"
#: nginx of the scale profile, as compose.test.yaml publishes it.
SCALE_NGINX = "127.0.0.1:8081"
#: How long `up --wait` may take: the healthchecks run every 10 s (5 s for Redis).
UP_DEADLINE = 120.0


def compose_cli() -> list[str]:
    """The compose command line to run; skip (locally) or fail (CI) when there is no engine."""
    value = os.environ.get(COMPOSE_ENV, "")
    if not value:
        message = (
            "no container engine for tests/deploy: scripts/compose-test runs them (as root: it starts "
            f"its own dockerd, builds the stand-ins and the image, and sets {COMPOSE_ENV})"
        )
        if IN_CI:
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    return shlex.split(value)


def report(what: str, seconds: float) -> None:
    """Note a timing for scripts/compose-test's summary (and the test's own output)."""
    line = f"{what}: {seconds:.1f} s"
    print(line)
    path = os.environ.get("CANDLECAST_COMPOSE_REPORT")
    if path:
        with open(path, "a") as out:
            out.write(line + "\n")


class Stack:
    """One compose project, with the given profiles, driven through the CLI."""

    def __init__(self, cli: list[str], profiles: Sequence[str], env: dict[str, str]) -> None:
        self.cli = [*cli, *(arg for p in profiles for arg in ("--profile", p))]
        self.env = {**os.environ, **env}

    async def run(self, *args: str, check: bool = True) -> str:
        """``compose ARGS``; its stdout. Raises (with stderr) when it fails and ``check`` is set."""
        proc = await anyio.run_process([*self.cli, *args], env=self.env, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"compose {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr.decode()}")
        return proc.stdout.decode()

    async def up(self, *services: str) -> float:
        """Start ``services`` (and what they depend on) and wait until every container is running
        and, where it has a healthcheck, healthy (compose's ``--wait`` watches the engine's health
        states, which the healthchecks themselves poll: no event exists for them). The seconds it
        took."""
        started = time.monotonic()
        with anyio.fail_after(UP_DEADLINE):
            await self.run("up", "--detach", "--wait", "--no-build", "--pull", "never", *services)
        return time.monotonic() - started

    async def down(self) -> None:
        await self.run("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False)

    async def containers(self) -> dict[str, dict[str, Any]]:
        """Every container of the project, running or not, by service name."""
        out = await self.run("ps", "--all", "--format", "json")
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        return {row["Service"]: row for row in rows}

    async def python(self, service: str, code: str) -> str:
        """Run ``python -c CODE`` in ``service``'s running container (as its own user); stdout."""
        return await self.run("exec", "-T", service, "python", "-c", code)

    async def get(self, service: str, path: str) -> tuple[int, str]:
        """GET ``path`` from candlecast's own port inside ``service`` (its loopback): status, body."""
        code = (
            "import urllib.error, urllib.request\n"
            "try:\n"
            f"    r = urllib.request.urlopen('http://127.0.0.1:8000{path}', timeout=5)\n"
            "except urllib.error.HTTPError as e:\n"
            "    r = e\n"
            "print(r.status); print(r.read().decode())\n"
        )
        status, _, body = (await self.python(service, code)).partition("\n")
        return int(status), body

    async def metric(self, service: str, name: str) -> float:
        """One sample of ``name`` from ``service``'s /metrics."""
        _, text = await self.get(service, "/metrics")
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"{name} not in {service}'s /metrics")

    async def logs(self) -> str:
        return await self.run("logs", "--no-color", "--tail", "40", check=False)


@asynccontextmanager
async def stack(
    *services: str, profiles: Sequence[str] = (), env: dict[str, str] | None = None
) -> AsyncIterator[Stack]:
    """The project up with ``services`` until the block ends, then down (containers, network);
    its last log lines are printed when the block fails. Notes the time to healthy."""
    s = Stack(compose_cli(), profiles, env or {})
    await s.down()  # whatever an interrupted run left
    try:
        took = await s.up(*services)
        report(f"time to healthy ({' '.join(profiles) or 'default'} profile, up {' '.join(services)})", took)
        yield s
    except BaseException:
        with anyio.CancelScope(shield=True):
            print(await s.logs())
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await s.down()


class LogFollower:
    """``compose logs --follow`` of one service, read line by line."""

    def __init__(self, stream: BufferedByteReceiveStream) -> None:
        self.stream = stream

    async def wait_for(self, text: bytes) -> bytes:
        """Read until a line containing ``text``; that line."""
        with anyio.fail_after(DEADLINE):
            while True:
                line = await self.stream.receive_until(b"\n", 1 << 20)
                if text in line:
                    return line


@asynccontextmanager
async def follow(s: Stack, service: str) -> AsyncIterator[LogFollower]:
    """Follow ``service``'s log (from its container's start) until the block ends."""
    cmd = [*s.cli, "logs", "--follow", "--no-color", "--no-log-prefix", service]
    async with await anyio.open_process(cmd, env=s.env, stderr=subprocess.STDOUT) as proc:
        assert proc.stdout is not None
        try:
            yield LogFollower(BufferedByteReceiveStream(proc.stdout))
        finally:
            proc.terminate()
            with anyio.CancelScope(shield=True):
                await proc.wait()


class Relay:
    """The control side of relay.py: send candles to the ingest that leads, await connections."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, *messages: Any) -> int:
        """Send ``messages`` to every open feed connection; how many there were."""
        await self.ws.send(orjson.dumps({"op": "send", "messages": list(messages)}).decode())
        reply = await recv_json(self.ws)
        assert reply["op"] == "sent", reply
        return int(reply["feeds"])

    async def wait_connections(self, n: int) -> None:
        """Until ``n`` ingest connections have reached the broker in all."""
        await self.ws.send(orjson.dumps({"op": "wait", "connections": n}).decode())
        reply = await recv_json(self.ws)
        assert reply["op"] == "connected" and reply["total"] >= n, reply


@asynccontextmanager
async def scale_stack() -> AsyncIterator[tuple[Stack, Relay]]:
    """The scale profile (Redis, two ingests reading the relay, two edges, nginx on
    127.0.0.1:8081) with the leading ingest connected to the relay."""
    port = free_port()
    async with stack("nginx-scale", profiles=["scale"], env={"CANDLECAST_TEST_RELAY_PORT": str(port)}) as s:
        async with follow(s, "relay") as log:
            await log.wait_for(b"relay listening")
        async with client(f"ws://127.0.0.1:{port}/control") as ws:
            relay = Relay(ws)
            await relay.wait_connections(1)
            await warm(s, relay)
            yield s, relay


async def warm(s: Stack, relay: Relay) -> None:
    """Until a first candle has reached a client on each edge, so that each scenario starts from
    a live stack with no client left over (clients connected before the very first candle are
    tests/integration/test_scale.py's case)."""
    async with AsyncExitStack() as stack:
        # Watchers held open until both edges have one (least_conn, but per nginx worker: the
        # recipe's upstream has no shared zone); a bounded number of tries.
        watchers: list[ClientConnection] = []
        for _ in range(8):
            watchers.append(await stack.enter_async_context(client(f"ws://{SCALE_NGINX}/ws?symbols=WARM")))
            await synced(watchers[-1])
            if min([await s.metric(edge, "candlecast_clients") for edge in ("edge-a", "edge-b")]) > 0:
                break
        else:
            raise AssertionError("nginx sent 8 dashboards to the same edge")
        assert await relay.send(seed("WARM", 0)) == 1
        for ws in watchers:
            with anyio.fail_after(DEADLINE):
                while not any(c.get("s") == "WARM" for c in _items(orjson.loads(await ws.recv()))):
                    pass


def _items(msg: Any) -> list[dict[str, Any]]:
    return msg if isinstance(msg, list) else [msg]
