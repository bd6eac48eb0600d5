"""The naive design, as the mission statement describes it, for comparison only.

A broker-client thread fills a global ``queue.Queue``; each WebSocket route polls it with
``if not q.empty(): send(q.get_nowait())`` and ``await asyncio.sleep(0.1)``. Each message goes
to ONE client, and each client gets at most 10 messages a second.

    python -m bench.relays.naive --port P --upstream ws://127.0.0.1:B/
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import threading

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.sync.client import connect

from candlecast.formats.seed import parse_seed
from candlecast.model.candle import encode, parse

q: queue.Queue[str] = queue.Queue()


def broker_thread(url: str) -> None:
    with connect(url, compression=None, proxy=None) as conn:
        for raw in conn:
            for candle in parse(parse_seed, raw):
                q.put(encode(candle).decode())


async def route(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            if not q.empty():
                await websocket.send_text(q.get_nowait())
            await asyncio.sleep(0.1)
    except WebSocketDisconnect:
        pass


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True)
    a = p.parse_args()
    threading.Thread(target=broker_thread, args=(a.upstream,), daemon=True).start()
    app = Starlette(routes=[WebSocketRoute("/ws", route)])
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning", ws_per_message_deflate=False)


if __name__ == "__main__":
    main()
