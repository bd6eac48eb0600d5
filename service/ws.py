"""The ``/ws`` endpoint: one client session.

Runs in the event loop, one task per connection (uvicorn's), plus a writer task in the
session's task group. The session:

1. checks the Origin and the token *before* accepting (refused: HTTP 403), then accepts;
2. parses the query (bad: an error frame, then close 1008);
3. subscribes to the hub (full: close 1013; shutting down: close 1001);
4. runs the writer (hub stream -> socket) in a task group while the host task reads control
   messages; either ending cancels the other;
5. unsubscribes, then closes with the code the hub chose (1013 slow, 1001 shutdown, 1008
   abuse), unless the client is already gone. The close is shielded and bounded, so
   cancellation cannot skip it and a dead peer cannot hold the task; a 1013 waits longer
   (unshielded) for a stalled client's socket to take the close frame.
"""

from __future__ import annotations

import hmac
import logging
import time

import anyio
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from .hub import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_TRY_AGAIN,
    Hub,
    HubClosed,
    HubFull,
    Reply,
    Snapshot,
    State,
    Subscriber,
    Update,
)
from .metrics import Stats
from .protocol import MAX_ERRORS, ProtocolError, error_frame, parse_command, parse_query, pong_frame, reply_frame
from .settings import Settings

log = logging.getLogger(__name__)

#: Most candles in one ``batch=1`` array frame.
MAX_BATCH = 1000
#: Longest a session waits to send its close frame.
CLOSE_TIMEOUT = 1.0
#: Longest a session waits for a stalled client's socket to take its 1013 close frame.
SLOW_CLOSE_TIMEOUT = 30.0


def token_ok(settings: Settings, query_token: str | None, authorization: str | None) -> bool:
    """Whether the request carries one of the configured tokens (always true with none set)."""
    if not settings.tokens:
        return True
    offered = query_token
    if offered is None and authorization and authorization.lower().startswith("bearer "):
        offered = authorization[7:].strip()
    if not offered:
        return False
    return any(hmac.compare_digest(offered.encode(), t.encode()) for t in settings.tokens)


def origin_ok(settings: Settings, origin: str | None) -> bool:
    """Whether the Origin header is allowed (any, or none, when no origins are configured)."""
    return not settings.origins or (origin is not None and origin in settings.origins)


class StreamEndpoint:
    """The ``/ws`` route, as a plain ASGI app so the writer can hand the hub's prebuilt ASGI
    messages straight to the server's ``send`` (no per-frame wrapper); Starlette's
    :class:`WebSocket` still handles accept, receive and close."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await stream(WebSocket(scope, receive, send), send)


async def stream(websocket: WebSocket, send: Send) -> None:
    """One client session."""
    hub: Hub = websocket.state.hub
    settings: Settings = websocket.state.settings
    stats: Stats = websocket.state.stats
    headers = websocket.headers
    if not origin_ok(settings, headers.get("origin")) or not token_ok(
        settings, websocket.query_params.get("token"), headers.get("authorization")
    ):
        stats.rejected_clients += 1
        await websocket.close(CLOSE_POLICY)  # before accept: an HTTP 403
        return
    await websocket.accept()
    try:
        options = parse_query(websocket.query_params, max_history=settings.history)
    except ProtocolError as exc:
        stats.rejected_clients += 1
        await websocket.send_text(error_frame(exc))
        await _close(websocket, CLOSE_POLICY, exc.code)
        return
    scope = anyio.CancelScope()
    try:
        async with hub.subscribe(options.symbols, history=options.history, on_end=scope.cancel) as sub:
            with scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_writer, send, sub, options.batch, stats, tg.cancel_scope)
                    await _reader(websocket, hub, sub, stats)
                    tg.cancel_scope.cancel()
    except HubFull:
        stats.rejected_clients += 1
        await _close(websocket, CLOSE_TRY_AGAIN, "server full: too many clients")
        return
    except HubClosed:
        await _close(websocket, CLOSE_GOING_AWAY, "server shutting down")
        return
    # Unsubscribed by now: a client still being closed holds no queue, only its socket.
    if sub.close_code == CLOSE_TRY_AGAIN:
        await _close_slow(websocket, sub.close_reason)
    elif sub.close_code is not None:
        await _close(websocket, sub.close_code, sub.close_reason)


def _open(websocket: WebSocket) -> bool:
    return (
        websocket.client_state is not WebSocketState.DISCONNECTED
        and websocket.application_state is WebSocketState.CONNECTED
    )


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    """Send a close frame; shielded (it runs during cancellation too) and bounded."""
    if _open(websocket):
        with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await _send_close(websocket, code, reason)


async def _close_slow(websocket: WebSocket, reason: str) -> None:
    """Close a client that fell behind with 1013. uvicorn queues the close frame only once the
    client's socket drains below its high-water mark, so a client that reads nothing at all
    gets up to :data:`SLOW_CLOSE_TIMEOUT` to do so, then is dropped without one. Not shielded:
    a server shutdown cuts the wait short."""
    if _open(websocket):
        with anyio.move_on_after(SLOW_CLOSE_TIMEOUT):
            await _send_close(websocket, CLOSE_TRY_AGAIN, reason)


async def _send_close(websocket: WebSocket, code: int, reason: str) -> None:
    try:
        await websocket.close(code, reason[:120])
    except (WebSocketDisconnect, OSError, RuntimeError):
        pass  # the peer went away first


async def _reader(websocket: WebSocket, hub: Hub, sub: Subscriber, stats: Stats) -> None:
    """Control messages until the client disconnects or abuses the protocol."""
    errors = 0
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        try:
            cmd = parse_command(data)
        except ProtocolError as exc:
            stats.client_errors += 1
            errors += 1
            if errors > MAX_ERRORS:
                sub.end(CLOSE_POLICY, "too many bad messages")
                return
            sub.queue(Reply(error_frame(exc)))
            continue
        if cmd.op == "ping":
            sub.queue(Reply(pong_frame(time.time_ns() // 1_000_000, cmd.id)))
        elif cmd.op == "subscribe":
            # the reply goes first; the new symbols' snapshot follows it in the same queue
            sub.queue(Reply(reply_frame("subscribed", _after_subscribe(sub, cmd.symbols), cmd.id)))
            hub.add_symbols(sub, cmd.symbols)
        else:
            hub.remove_symbols(sub, cmd.symbols)
            sub.queue(Reply(reply_frame("unsubscribed", sub.symbols, cmd.id)))


def _after_subscribe(sub: Subscriber, symbols: tuple[str, ...]) -> frozenset[str] | None:
    return None if sub.symbols is None else sub.symbols | frozenset(symbols)


async def _writer(send: Send, sub: Subscriber, batch: bool, stats: Stats, cancel_scope: anyio.CancelScope) -> None:
    """Hub stream -> socket. Drains everything queued per wake-up (``sub.items`` of them, so no
    ``WouldBlock`` is raised on the hot path) without awaiting per item."""
    receive_nowait = sub.receive_nowait
    take = sub.take
    wait = sub.wait
    latency = stats.latency
    try:
        while True:
            await wait()
            last: Update | None = None
            texts: list[str] = []
            delivered = 0
            frames = 0
            while sub.items:
                item = receive_nowait()
                if type(item) is Update:
                    update = take(item)
                    last = update
                    delivered += 1
                    if batch:
                        texts.append(update.text)
                    else:
                        await send(update.message)
                        frames += 1
                elif type(item) is Snapshot:
                    delivered += len(item.updates)
                    if batch:
                        texts.extend(u.text for u in item.updates)
                    else:
                        for u in item.updates:
                            await send(u.message)
                        frames += len(item.updates)
                else:
                    assert type(item) is Reply
                    if texts:
                        frames += await _send_batch(send, texts)
                        texts = []
                    await send(item.message)
                if batch and len(texts) >= MAX_BATCH:
                    frames += await _send_batch(send, texts)
                    texts = []
            if not delivered and not frames and sub.state is State.ENDED:
                return  # ended by the hub; the session closes with the hub's code
            if texts:
                frames += await _send_batch(send, texts)
            stats.candles_out += delivered
            stats.frames_out += frames
            if last is not None:
                latency.observe(time.monotonic() - last.received)
    except anyio.EndOfStream:
        pass  # ended by the hub; the session closes with the hub's code
    except (WebSocketDisconnect, OSError):  # uvicorn raises ClientDisconnected, an OSError
        cancel_scope.cancel()  # the client is gone; stop reading too


async def _send_batch(send: Send, texts: list[str]) -> int:
    """Send ``texts`` as one JSON array frame per :data:`MAX_BATCH` (one object alone as is)."""
    if len(texts) == 1:
        await send({"type": "websocket.send", "text": texts[0]})
        return 1
    frames = 0
    for i in range(0, len(texts), MAX_BATCH):
        await send({"type": "websocket.send", "text": "[" + ",".join(texts[i : i + MAX_BATCH]) + "]"})
        frames += 1
    return frames
