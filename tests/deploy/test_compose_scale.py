"""compose.yaml's ``scale`` profile, for real: Redis, two ingests (one leads, one waits on the
lease) reading the relay broker, two edges, nginx balancing dashboards over them on
127.0.0.1:8081. The relay numbers every candle (``ot``/``time``), so a loss, a duplicate or a
reordering shows; containers are killed and restarted through the engine."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import DEADLINE
from tests.deploy.compose import SCALE_NGINX as NGINX
from tests.deploy.compose import Stack, follow, report, scale_stack
from tests.integration.harness import client, seed, synced

SYMBOLS = ("AAA", "BBB", "CCC")
QUERY = f"symbols={','.join(SYMBOLS)}"
EDGES = ("edge-a", "edge-b")
#: compose.yaml's CANDLECAST_LEASE_TTL default: the standby takes over within it (+ a tenth).
LEASE_TTL = 5.0

pytestmark = pytest.mark.timeout(300)


def numbered(i: int) -> dict[str, Any]:
    """Candle ``i`` of a numbered run over three symbols: its own bar (``ot`` = ``i``)."""
    return seed(SYMBOLS[i % 3], i)


def candles(messages: list[Any]) -> list[dict[str, Any]]:
    """The candles among ``messages`` (a batch frame is a list), control replies left out."""
    out: list[dict[str, Any]] = []
    for m in messages:
        out.extend(m if isinstance(m, list) else [m])
    return [c for c in out if "op" not in c]


async def numbers(ws: ClientConnection, n: int) -> list[int]:
    """The ``ot`` of the next ``n`` candles; any control frame (a resync) fails the test."""
    out: list[int] = []
    with anyio.fail_after(DEADLINE):
        while len(out) < n:
            msg = orjson.loads(await ws.recv())
            assert not (isinstance(msg, dict) and "op" in msg), f"unexpected control frame {msg}"
            out.extend(c["ot"] for c in candles([msg]))
    return out


async def each(clients: list[ClientConnection], check: Callable[[ClientConnection], Any]) -> None:
    """Run ``check`` on every client at once."""
    async with anyio.create_task_group() as tg:
        for ws in clients:
            tg.start_soon(check, ws)


async def expect(ws: ClientConnection, want: list[int]) -> None:
    assert await numbers(ws, len(want)) == want


async def clients_per_edge(s: Stack) -> list[float]:
    return [await s.metric(edge, "candlecast_clients") for edge in EDGES]


async def resyncs(s: Stack) -> list[float]:
    return [await s.metric(edge, "candlecast_backplane_resyncs_total") for edge in EDGES]


async def test_fifty_clients_over_two_edges_behind_nginx_get_every_candle_in_order() -> None:
    n_clients, n_candles = 50, 300
    async with scale_stack() as (s, relay), AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(client(f"ws://{NGINX}/ws?{QUERY}")) for _ in range(n_clients)]
        for ws in clients:
            await synced(ws)
        per_edge = await clients_per_edge(s)
        assert sum(per_edge) == n_clients and min(per_edge) > 0, per_edge  # both edges serve
        assert await relay.send(*(numbered(i) for i in range(n_candles))) == 1  # one ingest reads

        async def every_candle(ws: ClientConnection) -> None:
            assert await numbers(ws, n_candles) == list(range(n_candles))

        await each(clients, every_candle)
        assert await resyncs(s) == [0, 0]


#: How long a reconnecting dashboard may wait: nginx gives up on the killed edge after its
#: proxy_connect_timeout (2 s, deploy/nginx-common.conf), with a margin for a loaded machine.
RECONNECT_WITHIN = 2.0 + 8.0


@pytest.mark.parametrize("handshake", [pytest.param(RECONNECT_WITHIN, id="promptly")])
async def test_an_edge_killed_its_dashboards_reconnect_through_nginx_to_the_other_and_get_every_bar(
    handshake: float,
) -> None:
    n_clients = 10
    async with scale_stack() as (s, relay), AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(client(f"ws://{NGINX}/ws?{QUERY}")) for _ in range(n_clients)]
        for ws in clients:
            await synced(ws)
        on_a, on_b = (int(n) for n in await clients_per_edge(s))
        assert on_a > 0 and on_b > 0
        await relay.send(*(numbered(i) for i in range(30)))
        await each(clients, lambda ws: expect(ws, list(range(30))))

        await s.run("kill", "edge-a")  # SIGKILL: its dashboards lose their connections
        closed: list[ClientConnection] = []
        all_closed = anyio.Event()

        async def dropped(ws: ClientConnection) -> None:
            await ws.wait_closed()
            closed.append(ws)
            if len(closed) == on_a:
                all_closed.set()

        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as tg:
                for ws in clients:
                    tg.start_soon(dropped, ws)
                await all_closed.wait()
                tg.cancel_scope.cancel()  # edge-b's clients stay open
        assert len(closed) == on_a  # exactly edge-a's, none of edge-b's
        assert (await s.containers())["edge-a"]["State"] != "running"

        # The dashboards reconnect, as the dashboard's client does: through nginx, with history.
        started = time.monotonic()
        survivors = [ws for ws in clients if ws not in closed]
        url = f"ws://{NGINX}/ws?{QUERY}&history=100"
        again = [await stack.enter_async_context(connect(url, proxy=None, open_timeout=handshake)) for _ in closed]
        report("reconnect through nginx after an edge was killed", time.monotonic() - started)
        for ws in again:
            snapshot = candles(await synced(ws))  # every bar so far, in order per symbol
            for k, sym in enumerate(SYMBOLS):
                assert [c["ot"] for c in snapshot if c["s"] == sym] == list(range(k, 30, 3))
        assert await s.metric("edge-b", "candlecast_clients") == n_clients  # all on the other edge now
        await relay.send(*(numbered(i) for i in range(30, 90)))  # then live
        await each([*survivors, *again], lambda ws: expect(ws, list(range(30, 90))))


async def test_the_leading_ingest_killed_the_standby_takes_over_within_the_lease_and_nothing_is_duplicated() -> None:
    async with scale_stack() as (s, relay), AsyncExitStack() as stack:
        statuses = {name: (await s.get(name, "/readyz"))[0] for name in ("ingest-a", "ingest-b")}
        leader = next(name for name, status in statuses.items() if status == 200)
        standby = next(name for name, status in statuses.items() if status == 503)
        clients = [await stack.enter_async_context(client(f"ws://{NGINX}/ws?{QUERY}")) for _ in range(4)]
        for ws in clients:
            await synced(ws)
        await relay.send(*(numbered(i) for i in range(100)))
        await each(clients, lambda ws: expect(ws, list(range(100))))

        async with follow(s, standby) as log:
            await s.run("kill", leader)  # SIGKILL: the lease is left to expire
            killed = time.monotonic()
            await relay.wait_connections(2)  # the standby connects to the broker
            took = time.monotonic() - killed
            report("standby ingest took over after the leader was killed", took)
            assert took < LEASE_TTL * 1.1 + 1.0
            await log.wait_for(b"took the lease")
        assert await relay.send(*(numbered(i) for i in range(100, 200))) == 1
        await relay.send(seed("AAA", 10_000))
        # Every candle after the takeover, and nothing twice before the marker.
        await each(clients, lambda ws: expect(ws, [*range(100, 200), 10_000]))
        assert await resyncs(s) == [0, 0]


async def test_redis_restarted_no_gap_and_no_duplicate_on_either_edge() -> None:
    async with scale_stack() as (s, relay), AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(client(f"ws://{NGINX}/ws?{QUERY}")) for _ in range(10)]
        for ws in clients:
            await synced(ws)
        assert min(await clients_per_edge(s)) > 0  # dashboards on both edges
        await relay.send(*(numbered(i) for i in range(100)))
        await each(clients, lambda ws: expect(ws, list(range(100))))

        await s.run("stop", "redis")  # it comes back empty: no persistence
        await relay.send(*(numbered(i) for i in range(100, 150)))  # the ingest buffers these
        await s.run("start", "redis")
        await relay.send(*(numbered(i) for i in range(150, 200)))
        await each(clients, lambda ws: expect(ws, list(range(100, 200))))
        assert await resyncs(s) == [0, 0]
