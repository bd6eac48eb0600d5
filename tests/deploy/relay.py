"""The broker of the compose tests, run in a container of the candlecast image itself (which has
``websockets``) on the project's network: ingests connect to ``/feed``; the test drives
``/control`` (published on 127.0.0.1 only). Each control message is one JSON command:

- ``{"op": "send", "messages": [...]}``: send each message to every open feed connection;
  answers ``{"op": "sent", "feeds": <open feed connections>}``.
- ``{"op": "wait", "connections": n}``: answers ``{"op": "connected", "total": <feed
  connections ever>}`` once ``n`` feed connections have been seen in all (an event, no polling).

Runs on the container's one event loop; nothing is kept once a connection closes.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

PORT = 9000


class Relay:
    def __init__(self) -> None:
        self.feeds: set[ServerConnection] = set()
        self.total = 0
        self.changed = asyncio.Condition()

    async def handle(self, conn: ServerConnection) -> None:
        try:
            if conn.request is not None and conn.request.path == "/control":
                await self.control(conn)
            else:
                await self.feed(conn)
        except ConnectionClosed:  # the test or an ingest went away: nothing to clean up
            pass

    async def feed(self, conn: ServerConnection) -> None:
        async with self.changed:
            self.feeds.add(conn)
            self.total += 1
            self.changed.notify_all()
        try:
            await conn.wait_closed()
        finally:
            self.feeds.discard(conn)

    async def control(self, conn: ServerConnection) -> None:
        async for text in conn:
            command: dict[str, Any] = json.loads(text)
            if command["op"] == "send":
                feeds = list(self.feeds)
                for message in command["messages"]:
                    frame = json.dumps(message)
                    for feed in feeds:
                        await feed.send(frame)
                await conn.send(json.dumps({"op": "sent", "feeds": len(feeds)}))
            elif command["op"] == "wait":
                wanted = int(command["connections"])
                async with self.changed:
                    await self.changed.wait_for(lambda: self.total >= wanted)  # noqa: B023 (awaited here)
                await conn.send(json.dumps({"op": "connected", "total": self.total}))


async def main() -> None:
    relay = Relay()
    async with serve(relay.handle, "0.0.0.0", PORT, compression=None) as server:
        print(f"relay listening on {PORT}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
