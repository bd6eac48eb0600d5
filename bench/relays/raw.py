"""The practical ceiling in Python: no ASGI, the ``websockets`` server and ``broadcast()``.

One task reads the broker, normalizes each message and encodes it once with orjson, and
``websockets.broadcast`` writes that frame to every connected client (dropping none: it never
waits; a client whose buffer is full is simply written to later by the transport).

    python -m bench.relays.raw --port P --upstream ws://127.0.0.1:B/
"""

from __future__ import annotations

import argparse
import asyncio

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, broadcast, serve

from candlecast.formats.seed import parse_seed
from candlecast.model.candle import encode, parse

clients: set[ServerConnection] = set()


async def handler(conn: ServerConnection) -> None:
    clients.add(conn)
    try:
        await conn.wait_closed()
    finally:
        clients.discard(conn)


async def pump(url: str) -> None:
    async with connect(url, compression=None, proxy=None) as upstream:
        async for raw in upstream:
            for candle in parse(parse_seed, raw):
                broadcast(clients, encode(candle).decode())


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True)
    a = p.parse_args()
    async with serve(handler, "127.0.0.1", a.port, compression=None):
        await pump(a.upstream)


if __name__ == "__main__":
    asyncio.run(main())
